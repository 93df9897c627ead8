// The agent daemon's core: its protections, the replication links to the
// backup sites, its VMs and their migrations (VmManager), and the control
// API (`protect`, `unprotect`, `status`, and VmManager's commands).
//
// Threading: everything here runs on the io_context thread (replication,
// holders, control). Taps have their own threads (FUSE loop, NBD io thread)
// and reach this only through ProtectedVolume / WriteLog.
#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "agent/agent_config.h"
#include "agent/fuse_export.h"
#include "agent/holder_rules.h"
#include "agent/nbd_server.h"
#include "agent/packet_holder.h"
#include "agent/protected_volume.h"
#include "agent/protection_spec.h"
#include "agent/replication_link.h"
#include "agent/vm_manager.h"
#include "agent/write_log.h"
#include "wan/control_socket.h"

namespace tideway::agent {

class Agent {
 public:
  // Starts every protection persisted under data_dir (a failing one is
  // reported in status, the others still start).
  static proto::Result<std::unique_ptr<Agent>> create(boost::asio::io_context& io, AgentConfig config);
  ~Agent();
  void stop();

  // The control API (io thread).
  void handle(const nlohmann::json& request, wan::ControlServer::Reply reply);
  nlohmann::json status() const;

 private:
  struct Protection {
    ProtectionSpec spec;
    uint32_t writer = 0;
    std::string error;  // why it is not running
    std::shared_ptr<WriteLog> log;
    std::unique_ptr<ProtectedVolume> volume;
    std::unique_ptr<boost::asio::io_context> nbd_io;
    std::unique_ptr<NbdServer> nbd;
    std::thread nbd_thread;
    std::unique_ptr<FuseExport> fuse;
    std::unique_ptr<PacketHolder> holder;
    std::shared_ptr<ReplicationLink> link;
  };

  Agent(boost::asio::io_context& io, AgentConfig config) : io_(io), config_(std::move(config)) {}
  proto::Result<void> start_protection(Protection& p);
  void stop_protection(Protection& p, bool remove_rule);
  std::shared_ptr<ReplicationLink> link_for(const std::string& backup);
  proto::Result<void> persist(const ProtectionSpec& s) const;
  std::string spec_path(const std::string& name) const;
  nlohmann::json protection_status(const Protection& p) const;
  void protect(const nlohmann::json& req, wan::ControlServer::Reply reply);
  void unprotect(const nlohmann::json& req, wan::ControlServer::Reply reply);

  boost::asio::io_context& io_;
  const AgentConfig config_;
  std::map<std::string, std::shared_ptr<ReplicationLink>> links_;
  std::map<std::string, std::unique_ptr<Protection>> protections_;
  std::unique_ptr<VmManager> vms_;
};

// A writer id stable for a site and protection name (never 0).
uint32_t writer_id(const std::string& site, const std::string& name);

}  // namespace tideway::agent
