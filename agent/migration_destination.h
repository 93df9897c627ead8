// The destination half of a live migration: takes MIG_PAGES pieces off the
// channel, rebuilds QEMU's byte-identical migration stream
// (wan/codec/page_stream) and writes it into the paused incoming VM. When
// QEMU has loaded the whole stream it reports LOADED to the source and
// waits: the VM runs here only after the source's COMMIT, so it never runs
// at both sites. Announces the VM's MAC/IP (gratuitous ARP) the moment the
// source pauses it for the last iteration.
//
// Threading: everything runs on the agent's io thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "agent/disk_copy_destination.h"
#include "agent/migration_options.h"
#include "agent/migration_progress.h"
#include "agent/qmp_client.h"
#include "wan/codec/page_stream.h"
#include "wan/mig_streams.h"
#include "wan/session.h"

namespace tideway::agent {

// A VM started paused with -incoming defer and told to listen
// (migrate-incoming) on `socket_path`, or, with transport qemu, on TCP
// `tcp_port` of the agent's migration address (QEMU's own stream).
struct IncomingVm {
  std::shared_ptr<QmpClient> qmp;
  std::string socket_path;
  int tcp_port = 0;
};

class MigrationDestination : public std::enable_shared_from_this<MigrationDestination> {
 public:
  using DoneHandler = std::function<void(const MigrationProgress&)>;
  using LaunchDone = std::function<void(proto::Result<IncomingVm>)>;

  struct Setup {
    uint32_t migration = 0;
    std::string site;         // ours
    std::string source_site;
    MigrateOptions options;
    std::string vm_spec;      // the source's TOML description of the VM
    std::shared_ptr<wan::Session> session;
    std::function<void(const std::string& spec, LaunchDone)> launch;
    std::function<void()> send_garp;   // the VM's MAC/IP now live here
    std::function<void()> discard_vm;  // roll back: stop the incoming VM
    // Fault injection for tests (TIDEWAY_FAULTS=drop-resumed at this
    // agent): run the VM after COMMIT but never send RESUMED, as if the
    // WAN failed right then. The source must not resume its copy.
    bool fault_drop_resumed = false;
    // Agent-served disks the source copies into (empty: none), and what
    // ACCEPTED tells the source about them (full or incremental copy).
    std::vector<std::shared_ptr<VmDisk>> disks;
    nlohmann::json accepted_detail;
  };

  static proto::Result<std::shared_ptr<MigrationDestination>> create(boost::asio::io_context& io, Setup setup);
  void start(DoneHandler done);
  // Messages of this migration, routed by the agent.
  void on_control(const proto::MigControl& c);
  void on_pages(std::span<const uint8_t> payload);
  void on_disk(proto::MessageType type, std::span<const uint8_t> payload);
  void on_session_state(wan::SessionState s);
  const MigrationProgress& progress() const { return progress_; }
  uint32_t migration() const { return s_.migration; }

 private:
  MigrationDestination(boost::asio::io_context& io, Setup setup);
  void launched(proto::Result<IncomingVm> vm);
  void write_more();
  void maybe_loaded();
  void on_qmp_event(const std::string& event, const nlohmann::json& data);
  void send_control(proto::MigOp op, const nlohmann::json& detail = {});
  void fail(const std::string& why, bool tell_source);
  void finish(MigrationPhase phase);
  void arm_timeout(std::chrono::seconds after, std::string why);

  boost::asio::io_context& io_;
  Setup s_;
  MigrationProgress progress_;
  DoneHandler done_;
  std::unique_ptr<wan::codec::PageStreamDecoder> decoder_;
  std::shared_ptr<DiskCopyDestination> disk_;
  int64_t expected_disk_seq_ = -1;  // from COMPLETE
  IncomingVm vm_;
  boost::asio::local::stream_protocol::socket qemu_;
  std::deque<std::vector<uint8_t>> out_;  // rebuilt stream waiting for QEMU
  size_t out_bytes_ = 0;
  bool writing_ = false, connected_ = false;
  uint64_t written_ = 0;
  int64_t expected_bytes_ = -1;  // from COMPLETE
  bool qemu_loaded_ = false, loaded_sent_ = false;
  boost::asio::steady_timer timeout_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace tideway::agent
