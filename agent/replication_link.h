// The agent's end of a protect channel to one backup site: announces each
// protected volume (REPL_ATTACH), ships every writer's retained writes in
// seq order (REPL_WRITE), and turns the replicator's cumulative acks into
// committed counters. After a reset (the replicator restarted and lost the
// session) it attaches again and re-sends everything not yet acked; the
// replicator drops what it already journaled.
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

class ReplicationLink : public std::enable_shared_from_this<ReplicationLink> {
 public:
  using CommitHandler = std::function<void(uint32_t writer, uint64_t committed)>;

  // Throws std::runtime_error for unusable TLS material (as ChannelClient).
  static std::shared_ptr<ReplicationLink> create(boost::asio::io_context& io, wan::ChannelOptions opts,
                                                 std::string host, uint16_t port);
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
  const std::shared_ptr<wan::Session>& session() const { return client_->session(); }

 private:
  struct Writer {
    std::shared_ptr<WriteLog> log;
    std::vector<LinkVolume> volumes;
    std::map<uint32_t, AttachState> attached;  // per volume
    std::string refusal;
    uint64_t next_send = 1;
    uint64_t sent_writes = 0, sent_bytes = 0;
    CommitHandler on_commit;
  };

  ReplicationLink(boost::asio::io_context& io, std::shared_ptr<wan::ChannelClient> client)
      : io_(io), client_(std::move(client)) {}
  void attach(Writer& w);
  void pump();
  void on_message(proto::MessageType type, std::span<const uint8_t> payload);
  void on_state(wan::SessionState s);

  boost::asio::io_context& io_;
  std::shared_ptr<wan::ChannelClient> client_;
  std::map<uint32_t, Writer> writers_;
  std::atomic<bool> wake_posted_{false};
  bool blocked_ = false;  // waiting for on_writable
};

}  // namespace tideway::agent
