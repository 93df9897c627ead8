// The VMs this agent runs (QEMU, from TOML descriptions) and their live
// migrations: outgoing (MigrationSource, over a channel this agent dials to
// the destination site's agent) and incoming (MigrationDestination, over
// sessions of the agent's migration listener). Control API commands:
// vm-start, vm-stop, vm-resume, vm-dump, vm-list, migrate, migrate-status,
// migrate-cancel.
//
// Threading: the agent's io thread, except the gratuitous ARP bursts, which
// sleep and run on threads of their own (joined at destruction).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/migration_config.h"
#include "agent/migration_destination.h"
#include "agent/migration_source.h"
#include "agent/qemu_vm.h"
#include "agent/served_disks.h"
#include "agent/vm_spec.h"
#include "wan/channel.h"
#include "wan/control_socket.h"

namespace tideway::agent {

class VmManager {
 public:
  using Reply = wan::ControlServer::Reply;

  VmManager(boost::asio::io_context& io, std::string site, MigrationConfig config, wan::TlsOptions tls);
  ~VmManager();
  VmManager(const VmManager&) = delete;
  VmManager& operator=(const VmManager&) = delete;

  // Starts the migration listener (when a port is configured).
  proto::Result<void> start();
  void stop();
  // False when `cmd` is not one of ours.
  bool handle(const std::string& cmd, const nlohmann::json& req, Reply& reply);
  nlohmann::json status() const;
  // The VM's QEMU here, or null (tests inspect it: pmemsave).
  std::shared_ptr<QemuVm> qemu(const std::string& name) const;
  // The migration listener's port (0: none); tests listen on port 0.
  uint16_t migration_port() const;

 private:
  struct Vm {
    std::string spec_text;
    VmSpec spec;
    // Before qemu: destroyed after it (QEMU gone, then its disks close).
    std::unique_ptr<ServedDisks> disks;
    std::shared_ptr<QemuVm> qemu;
    std::string state;  // starting, running, migrating, incoming, migrated, exited
    std::shared_ptr<MigrationSource> outgoing;
    std::shared_ptr<wan::ChannelClient> channel;
    std::shared_ptr<MigrationDestination> incoming;
    std::optional<MigrationProgress> last_migration;
    MigrateOptions last_migration_options;
  };

  void vm_start(const nlohmann::json& req, Reply reply);
  void vm_stop(const nlohmann::json& req, Reply reply);
  void migrate(const nlohmann::json& req, Reply reply);
  void outgoing_done(const std::string& name, const MigrationProgress& p);
  void retire_channel(std::shared_ptr<wan::ChannelClient> channel, int tries = 50);
  void vm_resume(const nlohmann::json& req, Reply reply);
  void vm_dump(const nlohmann::json& req, Reply reply);
  nlohmann::json vm_json(const std::string& name, const Vm& vm) const;
  proto::Result<std::shared_ptr<QemuVm>> launch(const VmSpec& spec, LaunchMode mode);
  proto::Result<void> attach_nics(const VmSpec& spec);
  void announce(const VmSpec& spec);  // gratuitous ARP for the VM's NICs, from here
  void watch_exit(const std::string& name, const std::shared_ptr<QemuVm>& q);
  wan::ChannelOptions channel_options(uint64_t rate_bytes_per_sec) const;
  std::string vm_dir(const std::string& name) const { return config_.run_dir + "/" + name; }

  void on_incoming_session(const std::shared_ptr<wan::Session>& session);
  void begin_incoming(const std::shared_ptr<wan::Session>& session, const proto::MigControl& c,
                      std::shared_ptr<std::shared_ptr<MigrationDestination>> slot);
  void launch_incoming(const std::string& spec_text, const MigrateOptions& options,
                       MigrationDestination::LaunchDone done);
  // The incoming VM's images: opened (created at the source's sizes), and
  // per disk whether the copy here is the source's generation (incremental)
  // or must be overwritten whole. Fills `accepted` for the source.
  proto::Result<std::unique_ptr<ServedDisks>> prepare_incoming_disks(const VmSpec& spec, const nlohmann::json& begin,
                                                                     nlohmann::json& accepted);

  boost::asio::io_context& io_;
  const std::string site_;
  const MigrationConfig config_;
  const wan::TlsOptions tls_;
  std::map<std::string, Vm> vms_;
  std::shared_ptr<wan::ChannelServer> server_;
  std::vector<std::thread> garp_threads_;
  uint32_t next_migration_;
  // Fault injection for tests, from TIDEWAY_FAULTS (comma list); never set
  // in production. "drop-resumed": an incoming VM runs after COMMIT but the
  // source is never told (exercises the unconfirmed switchover).
  bool fault_drop_resumed_ = false;
  std::string fault_error_;
};

}  // namespace tideway::agent
