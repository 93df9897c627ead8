// The agent's end of a protect channel to one backup site: announces each
// protected volume (REPL_ATTACH), ships every writer's retained writes in
// seq order (REPL_WRITE), and turns the replicator's cumulative acks into
// committed counters. After a reset (the replicator restarted and lost the
// session) it attaches again and re-sends everything not yet acked; the
// replicator drops what it already journaled.
//
// With the codec negotiated (kFeatCodec) page-aligned writes travel as
// codec batches, one encoder per writer (agent/write_encoder.h). Every
// attach starts a new codec epoch at both ends; a batch the replicator
// cannot decode makes it ask for a re-attach (REPL_ATTACHED kReattach).
//
// Threading: everything runs on the io_context thread, except wake(),
// which taps call (via WriteLog::on_issue) from any thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/write_encoder.h"
#include "agent/write_log.h"
#include "wan/channel.h"

namespace tideway::agent {

struct LinkVolume {
  uint32_t volume = 0;
  std::string name;  // the backup volume's name (valid_volume_name)
  uint64_t size = 0;
};

enum class AttachState { kAttaching, kAttached, kRefused };
const char* attach_state_name(AttachState s);

struct ReplicationLinkOptions {
  ReplicationCodecOptions codec;
  // Retention of the data stream (0: the channel's 64 MiB). Past it the
  // link waits for acks; tests shrink it to exercise that path.
  size_t data_retention_bytes = 0;
};

class ReplicationLink : public std::enable_shared_from_this<ReplicationLink> {
 public:
  using CommitHandler = std::function<void(uint32_t writer, uint64_t committed)>;

  // Throws std::runtime_error for unusable TLS material (as ChannelClient).
  static std::shared_ptr<ReplicationLink> create(boost::asio::io_context& io, wan::ChannelOptions opts,
                                                 std::string host, uint16_t port,
                                                 ReplicationLinkOptions link_opts = {});
  void start();
  void stop();

  // Starts shipping `log`'s writes for these volumes. `on_commit` runs on
  // the io thread each time the writer's committed counter advances.
  void add(std::shared_ptr<WriteLog> log, std::vector<LinkVolume> volumes, CommitHandler on_commit);
  void remove(uint32_t writer);

  // Any thread: new writes are waiting.
  void wake();

  AttachState attach_state(uint32_t writer) const;
  std::string refusal(uint32_t writer) const;
  nlohmann::json status() const;
  // The writer's codec counters (null when the codec is off).
  nlohmann::json codec_status(uint32_t writer) const;
  const std::shared_ptr<wan::Session>& session() const { return client_->session(); }

  // Tests only: sees (and may change) each codec batch after encoding,
  // before it is framed: corrupting one must not corrupt the backup.
  using BatchHook = std::function<void(uint32_t writer, uint64_t seq, std::vector<uint8_t>& batch)>;
  void set_batch_hook_for_tests(BatchHook h) { batch_hook_ = std::move(h); }

 private:
  struct Writer {
    std::shared_ptr<WriteLog> log;
    std::vector<LinkVolume> volumes;
    std::map<uint32_t, AttachState> attached;  // per volume
    std::string refusal;
    uint64_t next_send = 1;
    uint64_t sent_writes = 0, sent_bytes = 0;
    uint64_t reattach_requests = 0;
    CommitHandler on_commit;
    std::unique_ptr<WriteEncoder> encoder;  // null when the codec is off
    // An encoded REPL_WRITE payload the channel refused: the encoder has
    // moved past it, so it goes first and as is (never re-encoded).
    std::vector<uint8_t> held;
    uint64_t held_seq = 0;  // 0: nothing held
    uint32_t held_length = 0;
    std::vector<uint8_t> batch;  // encoding scratch, reused
    size_t attach_next = 0;      // volumes whose ATTACH is queued
  };

  ReplicationLink(boost::asio::io_context& io, std::shared_ptr<wan::ChannelClient> client,
                  ReplicationLinkOptions opts)
      : io_(io), client_(std::move(client)), opts_(std::move(opts)) {}
  void attach(Writer& w);
  // Attach again and re-send everything above committed (new codec epoch).
  void restart(Writer& w);
  // Queues the ATTACHes not queued yet. False: the stream is full.
  bool send_attaches(Writer& w);
  void pump();
  // Queues the write (encoded when possible). False: the stream is full.
  bool send_write(uint32_t id, Writer& w, const RetainedWrite& rw);
  void sent(Writer& w, uint64_t seq, uint32_t length);
  void on_message(proto::MessageType type, std::span<const uint8_t> payload);
  void on_state(wan::SessionState s);

  boost::asio::io_context& io_;
  std::shared_ptr<wan::ChannelClient> client_;
  const ReplicationLinkOptions opts_;
  std::map<uint32_t, Writer> writers_;
  BatchHook batch_hook_;
  std::atomic<bool> wake_posted_{false};
  bool blocked_ = false;  // waiting for on_writable
};

}  // namespace tideway::agent
