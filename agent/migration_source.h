// The source half of a live migration of a QEMU VM (CloudNet, DESIGN 3):
// QEMU writes its migration stream into a unix socket this object owns; it
// is split (proto/qemu_stream) into pass-through bytes and RAM pages, the
// pages go through the WAN codec, and the pieces travel on the channel's
// memory stream to the destination agent, which rebuilds the stream for
// its QEMU. Smart stop (wan/smart_stop) decides when to stop iterating:
// QEMU is held at downtime-limit 1 ms and the limit is raised when the
// policy says stop.
//
// Switchover is a handshake, so the VM never runs at both sites and is
// never lost: the destination loads the stream into a paused VM and says
// LOADED; the source sends COMMIT and from then on never resumes its copy
// on its own; the destination resumes the VM and says RESUMED, and only
// then is the migration done (the owner may end the source's QEMU). Before
// COMMIT any failure (WAN down past the timeout, destination error, cancel)
// rolls back: QEMU's migration is cancelled and the VM runs on at the
// source. After COMMIT without RESUMED the phase is kUnconfirmed: the
// source's copy stays paused for the operator.
//
// With agent-served disks the disks go first (DiskCopySource): copied while
// the VM runs, then its writes mirrored synchronously, so the destination's
// disks are current at the switchover; COMPLETE waits until no mirrored
// write is unacknowledged. Both sides' images then share a generation, so
// a later migration back sends only the blocks written since.
//
// Threading: everything runs on the agent's io thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/disk_copy_source.h"
#include "agent/migration_options.h"
#include "agent/migration_progress.h"
#include "agent/qmp_client.h"
#include "agent/qmp_migration.h"
#include "proto/qemu_stream.h"
#include "wan/codec/page_stream.h"
#include "wan/mig_streams.h"
#include "wan/session.h"
#include "wan/smart_stop.h"

namespace tideway::agent {

class MigrationSource : public std::enable_shared_from_this<MigrationSource> {
 public:
  using DoneHandler = std::function<void(const MigrationProgress&)>;

  struct Setup {
    MigrateOptions options;
    uint32_t migration = 0;        // id, unique per source agent
    std::string site;              // our site
    std::string vm_spec;           // the VM's TOML description, sent to the destination
    std::string socket_path;       // where QEMU's outgoing stream connects
    std::string peer_address;      // the destination agent's host (transport qemu: its QEMU listens there)
    std::shared_ptr<QmpClient> qmp;
    std::shared_ptr<wan::Session> session;  // a channel to the destination agent
    std::function<void()> send_local_garp;  // after a rollback that moved the network
    // Agent-served disks, copied before the memory (DiskCopySource), with
    // their image names (the destination opens its copy by name).
    std::vector<std::shared_ptr<VmDisk>> disks;
    std::vector<std::string> disk_images;
  };

  static proto::Result<std::shared_ptr<MigrationSource>> create(boost::asio::io_context& io, Setup setup);
  void start(DoneHandler done);
  // Rolls back unless the switchover is already committed.
  void cancel(const std::string& why);
  const MigrationProgress& progress() const { return progress_; }

 private:
  class Sink;
  MigrationSource(boost::asio::io_context& io, Setup setup);

  void on_control(proto::MessageType type, std::span<const uint8_t> payload);
  void on_session_state(wan::SessionState s);
  void begin_disks(const nlohmann::json& accepted);
  void begin_qemu();
  void start_qemu_migration(const std::string& uri);
  void poll_qemu_counters();  // transport qemu: bytes from QEMU's own counters
  void take_qemu_counters(const MigrationInfo& info);  // no-op unless transport qemu
  void accept_stream();
  void read_stream();
  void on_stream_bytes(size_t n);
  void on_stream_end();
  void take_piece();
  bool send_pieces();  // false: blocked on the window
  void on_qmp_event(const std::string& event, const nlohmann::json& data);
  void on_pass(uint32_t pass);
  void stop_now(const std::string& reason);
  void maybe_complete();
  void send_control(proto::MigOp op, const nlohmann::json& detail = {});
  void tick();
  void roll_back(const std::string& why);
  void unconfirmed(const std::string& why);
  void finish(MigrationPhase phase);
  double ms_since_start() const;

  boost::asio::io_context& io_;
  Setup s_;
  MigrationProgress progress_;
  DoneHandler done_;
  std::unique_ptr<wan::codec::PageStreamEncoder> encoder_;
  std::shared_ptr<DiskCopySource> disk_;
  std::string disk_generation_;  // sent with COMMIT; ours too once RESUMED
  int qemu_port_ = 0;            // transport qemu: where the destination's QEMU listens
  proto::qemu::StreamSplitter splitter_;
  wan::StopPolicy policy_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::local::stream_protocol::socket stream_;
  std::vector<uint8_t> read_buf_;
  std::deque<std::vector<uint8_t>> pieces_;  // taken, not yet accepted by the channel (bounded by one read)
  boost::asio::steady_timer ticker_;
  std::chrono::steady_clock::time_point started_, memory_started_, paused_at_, last_rate_at_, committed_at_;
  uint64_t last_rate_bytes_ = 0;
  uint64_t pass_pages_base_ = 0, pass_wire_base_ = 0;
  uint32_t pass_ = 0;
  bool reading_ = false, stream_ended_ = false, qemu_completed_ = false, complete_sent_ = false;
  bool stop_requested_ = false, garp_moved_ = false, committed_ = false;
  std::optional<std::chrono::steady_clock::time_point> disconnected_since_;
};

}  // namespace tideway::agent
