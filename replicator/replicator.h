// The backup-site service: accepts agents over the WAN channel, journals
// their writes with group commit, acks each writer cumulatively once its
// writes are durable, applies them to the backup volumes, and promotes a
// volume for recovery.
//
// Threading: intake, acks and status run on the io_context thread; the
// journal (GroupCommit) and the applier have a thread each.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "proto/messages.h"
#include "replicator/applier.h"
#include "replicator/group_commit.h"
#include "replicator/journal.h"
#include "replicator/volume_registry.h"
#include "replicator/write_decoder.h"
#include "wan/channel.h"

namespace tideway::replicator {

struct ReplicatorOptions {
  std::string data_dir;                  // journal/, volumes/, applied.json
  wan::ChannelOptions channel;           // streams are set by the replicator
  boost::asio::ip::tcp::endpoint listen;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t max_pending_bytes = 64ull << 20;  // journal queue (backpressure)
  std::chrono::milliseconds apply_sync_interval{1000};
  // Memory all writers' codec decoders may take together; an agent whose
  // codec needs more is refused with the reason. 0: the codec is not
  // offered (agents send raw writes).
  uint64_t codec_max_memory_bytes = 1ull << 30;
};

class Replicator {
 public:
  // Recovers the journal and checkpoint (a corrupt journal is an error:
  // nothing is changed). Call before the io_context runs, or on its thread.
  static proto::Result<std::unique_ptr<Replicator>> open(boost::asio::io_context& io, ReplicatorOptions opts);
  ~Replicator();
  void start();
  void stop();
  uint16_t port() const { return server_->port(); }

  // io thread:
  nlohmann::json status() const;
  // Stops intake for the volume's writer, applies everything journaled,
  // syncs, and reports the image to mount. `done` runs on the io thread.
  void promote(const std::string& name, std::function<void(nlohmann::json)> done);

 private:
  struct Writer {
    uint64_t received = 0;  // highest seq handed to the journal
    uint64_t durable = 0;   // highest seq journaled and synced (acked)
    uint64_t writes = 0, bytes = 0, duplicates = 0;
    bool promoted = false;
    // A write of this session could not be taken (codec): everything after
    // it is dropped until the agent attaches again.
    bool resync = false;
    uint64_t resync_dropped = 0, reattach_requests = 0;
    WriteDecoder decoder;
    std::weak_ptr<wan::Session> session;
    std::string peer;
  };

  Replicator(boost::asio::io_context& io, ReplicatorOptions opts) : io_(io), opts_(std::move(opts)) {}
  void on_session(const std::shared_ptr<wan::Session>& s);
  void on_attach(const std::shared_ptr<wan::Session>& s, const proto::ReplAttach& a);
  void on_write(const std::shared_ptr<wan::Session>& s, const proto::ReplWrite& w);
  // An encoded write could not be decoded: nothing of it is journaled.
  void on_decode_failure(const std::shared_ptr<wan::Session>& s, Writer& w, const proto::ReplWrite& m,
                         const std::string& why);
  uint64_t codec_memory() const;
  void on_durable(const DurableBatch& b);  // io thread
  void send_control(const std::shared_ptr<wan::Session>& s, const proto::Message& m);

  boost::asio::io_context& io_;
  const ReplicatorOptions opts_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<VolumeRegistry> volumes_;
  std::unique_ptr<Applier> applier_;
  std::unique_ptr<GroupCommit> commit_;
  std::shared_ptr<wan::ChannelServer> server_;
  std::map<uint32_t, Writer> writers_;
  std::thread promote_thread_;
  bool promoting_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tideway::replicator
