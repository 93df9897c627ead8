#include "agent/vm_manager.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/post.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "agent/garp.h"
#include "agent/holder_command.h"
#include "agent/qmp_commands.h"
#include "wan/mig_streams.h"

namespace tideway::agent {

namespace asio = boost::asio;
using nlohmann::json;
using proto::Errc;
using proto::Error;

namespace {
json fail(const std::string& why) { return {{"ok", false}, {"error", why}}; }
constexpr auto kQmpConnectTimeout = std::chrono::seconds(30);
}  // namespace

VmManager::VmManager(asio::io_context& io, std::string site, MigrationConfig config, wan::TlsOptions tls)
    : io_(io), site_(std::move(site)), config_(std::move(config)), tls_(std::move(tls)) {
  // Ids only need to differ between this agent's migrations, also across
  // restarts (a late message of an old migration is then ignored).
  next_migration_ = static_cast<uint32_t>(std::random_device{}()) | 1u;
  if (const char* f = std::getenv("TIDEWAY_FAULTS")) {
    std::stringstream list(f);
    for (std::string item; std::getline(list, item, ',');) {
      if (item == "drop-resumed") fault_drop_resumed_ = true;
      else if (!item.empty()) fault_error_ = "TIDEWAY_FAULTS: unknown fault \"" + item + "\" (known: drop-resumed)";
    }
  }
}

VmManager::~VmManager() { stop(); }

proto::Result<void> VmManager::start() {
  if (!fault_error_.empty()) return Error{Errc::kInvalid, fault_error_};
  if (fault_drop_resumed_)
    spdlog::warn("agent: FAULT INJECTION ON (TIDEWAY_FAULTS): incoming migrations will not confirm the switchover");
  if (config_.listen_port == 0) return {};
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(config_.listen_address, ec);
  if (ec) return Error{Errc::kInvalid, "migration listen address \"" + config_.listen_address + "\": " + ec.message()};
  try {
    server_ = wan::ChannelServer::create(io_, channel_options(0), {addr, config_.listen_port});
  } catch (const std::exception& e) {
    return Error{Errc::kSystem, std::string("migration listener: ") + e.what()};
  }
  server_->on_session([this](const std::shared_ptr<wan::Session>& s) { on_incoming_session(s); });
  server_->start();
  spdlog::info("agent: accepting migrations on {}:{}", config_.listen_address, server_->port());
  return {};
}

void VmManager::stop() {
  for (auto& [name, vm] : vms_) {
    if (vm.outgoing) vm.outgoing->cancel("the agent is stopping");
    if (vm.channel) vm.channel->stop();
  }
  if (server_) server_->stop();
  for (auto& t : garp_threads_)
    if (t.joinable()) t.join();
  garp_threads_.clear();
}

wan::ChannelOptions VmManager::channel_options(uint64_t rate) const {
  wan::ChannelOptions o;
  o.site = site_;
  o.tls = tls_;
  o.streams = wan::migration_streams(rate, config_.window_bytes);
  return o;
}

bool VmManager::handle(const std::string& cmd, const json& req, Reply& reply) {
  if (cmd == "vm-start") {
    vm_start(req, std::move(reply));
  } else if (cmd == "vm-stop") {
    vm_stop(req, std::move(reply));
  } else if (cmd == "vm-resume") {
    vm_resume(req, std::move(reply));
  } else if (cmd == "vm-dump") {
    vm_dump(req, std::move(reply));
  } else if (cmd == "vm-list") {
    json j = status();
    j["ok"] = true;
    reply(j);
  } else if (cmd == "migrate") {
    migrate(req, std::move(reply));
  } else if (cmd == "migrate-status" || cmd == "migrate-cancel") {
    const std::string name = req.value("vm", "");
    auto it = vms_.find(name);
    if (it == vms_.end()) {
      reply(fail("no VM \"" + name + "\" at site " + site_));
      return true;
    }
    Vm& vm = it->second;
    if (cmd == "migrate-cancel") {
      if (!vm.outgoing) {
        reply(fail("\"" + name + "\" is not migrating from this site"));
        return true;
      }
      vm.outgoing->cancel(req.value("reason", "cancelled by the operator"));
    }
    const MigrationProgress* p = vm.outgoing    ? &vm.outgoing->progress()
                                 : vm.incoming  ? &vm.incoming->progress()
                                 : vm.last_migration ? &*vm.last_migration
                                                     : nullptr;
    if (!p) {
      reply(fail("\"" + name + "\" has not been migrated"));
      return true;
    }
    json j = to_json(*p);
    j["ok"] = true;
    reply(j);
  } else {
    return false;
  }
  return true;
}

json VmManager::vm_json(const std::string& name, const Vm& vm) const {
  json j = {{"name", name}, {"state", vm.state}, {"memory_bytes", vm.spec.memory_bytes}};
  if (vm.qemu) {
    j["pid"] = vm.qemu->pid();
    j["run_dir"] = vm.qemu->run_dir();
  }
  if (vm.disks) {
    json disks = json::array();
    for (const auto& d : vm.disks->disks())
      disks.push_back({{"image", d->path()},
                       {"size", d->size()},
                       {"generation", d->generation()},
                       {"blocks_written_since", d->blocks_written_since()}});
    j["disks"] = disks;
  }
  if (vm.outgoing) j["migration"] = to_json(vm.outgoing->progress());
  else if (vm.incoming) j["migration"] = to_json(vm.incoming->progress());
  else if (vm.last_migration) j["migration"] = to_json(*vm.last_migration);
  return j;
}

std::shared_ptr<QemuVm> VmManager::qemu(const std::string& name) const {
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : it->second.qemu;
}

uint16_t VmManager::migration_port() const { return server_ ? server_->port() : 0; }

json VmManager::status() const {
  json vms = json::array();
  for (const auto& [name, vm] : vms_) vms.push_back(vm_json(name, vm));
  return {{"site", site_}, {"vms", vms}, {"migration_port", migration_port()}};
}

proto::Result<std::shared_ptr<QemuVm>> VmManager::launch(const VmSpec& spec, LaunchMode mode) {
  // Made on first use: an agent that only protects volumes never needs it.
  std::error_code ec;
  std::filesystem::create_directories(config_.run_dir, ec);
  if (ec) return Error{Errc::kSystem, "creating the VM run directory " + config_.run_dir + ": " + ec.message()};
  ::chmod(config_.run_dir.c_str(), 0700);
  QemuVmOptions o;
  o.qemu_binary = config_.qemu_binary;
  o.mode = mode;
  o.paused_after_incoming = mode == LaunchMode::kIncoming;  // runs only after the source's COMMIT
  o.run_dir = vm_dir(spec.name);
  return QemuVm::launch(io_, spec, o);
}

proto::Result<void> VmManager::attach_nics(const VmSpec& spec) {
  for (const auto& nic : spec.nics) {
    if (nic.bridge.empty()) continue;
    std::vector<std::string> argv = {"ip", "link", "set", "dev", nic.tap, "master", nic.bridge, "up"};
    auto r = run_command(argv);
    if (!r.exited(0)) return Error{Errc::kSystem, "attaching the VM's NIC: " + r.describe(argv)};
  }
  return {};
}

void VmManager::announce(const VmSpec& spec) {
  for (const auto& nic : spec.nics) {
    if (nic.bridge.empty() || nic.ip.empty()) continue;
    auto mac = proto::arp::parse_mac(nic.mac);
    auto ip = proto::arp::parse_ipv4(nic.ip);
    if (!mac || !ip) continue;  // checked when the spec was parsed
    GarpRequest g;
    g.iface = nic.bridge;
    g.mac = *mac;
    g.ip = *ip;
    const std::string tap = nic.tap, mac_text = nic.mac, name = spec.name;
    // The frame leaves through the bridge itself, which teaches the other
    // sites (through the VXLAN) but not this bridge: point this bridge's
    // entry at the VM's port directly.
    garp_threads_.emplace_back([g, tap, mac_text, name] {
      std::vector<std::string> argv = {"bridge", "fdb", "replace", mac_text, "dev", tap, "master", "dynamic"};
      if (auto r = run_command(argv); !r.exited(0))
        spdlog::warn("vm {}: {}", name, r.describe(argv));
      auto r = send_garp(g);
      if (!r) spdlog::warn("vm {}: gratuitous ARP: {}", name, r.error().detail);
      else spdlog::info("vm {}: gratuitous ARP sent on {} ({} frames)", name, g.iface, r->sent_at_ms.size());
    });
  }
}

void VmManager::watch_exit(const std::string& name, const std::shared_ptr<QemuVm>& q) {
  std::weak_ptr<QemuVm> weak = q;
  q->on_exit([this, name, weak](const ExitStatus& st) {
    auto it = vms_.find(name);
    if (it == vms_.end() || it->second.qemu != weak.lock()) return;
    spdlog::info("vm {}: QEMU exited ({})", name, st.describe());
    if (it->second.state != "migrated") it->second.state = "exited: " + st.describe();
    if (it->second.outgoing) it->second.outgoing->cancel("QEMU exited: " + st.describe());
    // No one uses the images now: their sidecars are written clean.
    if (it->second.disks && !it->second.incoming) it->second.disks->stop();
  });
}

void VmManager::vm_start(const json& req, Reply reply) {
  std::string text = req.value("spec", "");
  std::string origin = "request";
  if (text.empty() && req.contains("spec_file")) {
    origin = req.value("spec_file", "");
    std::ifstream in(origin);
    if (!in) return reply(fail("cannot read " + origin + ": " + std::strerror(errno)));
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  if (text.empty()) return reply(fail("vm-start needs \"spec\" (TOML text) or \"spec_file\""));
  auto spec = parse_vm_spec(text, origin);
  if (!spec) return reply(fail(spec.error().detail));
  auto it = vms_.find(spec->name);
  if (it != vms_.end() && it->second.qemu && !it->second.qemu->exited())
    return reply(fail("VM \"" + spec->name + "\" already runs here (" + it->second.state + ")"));
  if (spec->serial_log.empty()) spec->serial_log = vm_dir(spec->name) + "/serial.log";
  std::unique_ptr<ServedDisks> disks;
  if (auto images = ServedDisks::images_of(*spec, config_.disk_dir); !images.empty()) {
    auto d = ServedDisks::open(images, vm_dir(spec->name));
    if (!d) return reply(fail("disks of \"" + spec->name + "\": " + d.error().detail));
    disks = std::move(d).value();
    disks->fill_sockets(*spec);
  }
  auto q = launch(*spec, LaunchMode::kRun);
  if (!q) return reply(fail(q.error().detail));
  const std::string name = spec->name;
  Vm& vm = vms_[name];
  vm = Vm{};
  vm.spec_text = text;
  vm.spec = *spec;
  vm.disks = std::move(disks);
  vm.qemu = *q;
  vm.state = "starting";
  watch_exit(name, vm.qemu);
  vm.qemu->connect(
      [this, name, reply](proto::Result<void> r) {
        auto found = vms_.find(name);
        if (found == vms_.end()) return reply(fail("VM \"" + name + "\" vanished while starting"));
        Vm& v = found->second;
        if (r) {
          if (auto a = attach_nics(v.spec); !a) r = a.error();
        }
        if (!r) {
          v.state = "failed: " + r.error().detail;
          v.qemu->kill();
          return reply(fail(r.error().detail));
        }
        v.state = "running";
        json j = vm_json(name, v);
        j["ok"] = true;
        reply(j);
      },
      std::chrono::duration_cast<std::chrono::milliseconds>(kQmpConnectTimeout));
}

void VmManager::vm_stop(const json& req, Reply reply) {
  const std::string name = req.value("vm", "");
  auto it = vms_.find(name);
  if (it == vms_.end()) return reply(fail("no VM \"" + name + "\" at site " + site_));
  Vm& vm = it->second;
  if (vm.outgoing) return reply(fail("\"" + name + "\" is migrating: cancel the migration first"));
  if (vm.incoming) return reply(fail("\"" + name + "\" is arriving by migration; it can be stopped after"));
  if (!vm.qemu || vm.qemu->exited()) {
    vms_.erase(it);
    return reply(json{{"ok", true}, {"vm", name}, {"state", "removed"}});
  }
  vm.qemu->stop(std::chrono::milliseconds(3000), [this, name, reply](const ExitStatus& st) {
    vms_.erase(name);
    reply(json{{"ok", true}, {"vm", name}, {"state", "stopped"}, {"exit", st.describe()}});
  });
}

// --- outgoing ------------------------------------------------------------

void VmManager::migrate(const json& req, Reply reply) {
  auto opts = migrate_options_from_json(req);
  if (!opts) return reply(fail(opts.error().detail));
  auto it = vms_.find(opts->vm);
  if (it == vms_.end()) return reply(fail("no VM \"" + opts->vm + "\" at site " + site_));
  Vm& vm = it->second;
  if (vm.outgoing) return reply(fail("\"" + opts->vm + "\" is already migrating to " + vm.outgoing->progress().to));
  if (vm.state != "running" || !vm.qemu || vm.qemu->exited())
    return reply(fail("\"" + opts->vm + "\" is not running here (" + vm.state + ")"));
  if (opts->to == site_) return reply(fail("\"" + opts->vm + "\" already runs at site " + site_));
  auto site = config_.sites.find(opts->to);
  if (site == config_.sites.end()) {
    std::string known;
    for (const auto& [n, s] : config_.sites) known += (known.empty() ? "" : ", ") + n;
    return reply(fail("unknown site \"" + opts->to + "\" (this agent's [sites.NAME] tables: " +
                      (known.empty() ? "none" : known) + ")"));
  }
  std::shared_ptr<wan::ChannelClient> channel;
  try {
    channel = wan::ChannelClient::create(io_, channel_options(opts->rate_bytes_per_sec), site->second.address,
                                         site->second.port);
  } catch (const std::exception& e) {
    return reply(fail(std::string("migration channel: ") + e.what()));
  }
  MigrationSource::Setup s;
  s.options = *opts;
  s.migration = next_migration_++;
  s.site = site_;
  s.vm_spec = vm.spec_text;
  s.socket_path = vm_dir(opts->vm) + "/migrate-out.sock";
  s.peer_address = site->second.address;
  s.qmp = vm.qemu->qmp_ptr();
  s.session = channel->session();
  const VmSpec spec = vm.spec;
  s.send_local_garp = [this, spec] { announce(spec); };
  if (vm.disks) {
    s.disks = vm.disks->disks();
    for (const auto& d : vm.spec.disks)
      if (!d.image.empty()) s.disk_images.push_back(d.image);
  }
  auto src = MigrationSource::create(io_, std::move(s));
  if (!src) return reply(fail(src.error().detail));
  vm.outgoing = *src;
  vm.last_migration_options = *opts;
  vm.channel = channel;
  vm.state = "migrating";
  const std::string name = opts->vm;
  channel->start();
  vm.outgoing->start([this, name](const MigrationProgress& p) { outgoing_done(name, p); });
  json j = to_json(vm.outgoing->progress());
  j["ok"] = true;
  reply(j);
}

void VmManager::outgoing_done(const std::string& name, const MigrationProgress& p) {
  auto it = vms_.find(name);
  if (it == vms_.end()) return;
  Vm& vm = it->second;
  vm.last_migration = p;
  // Called from inside the source: release it on a later turn.
  asio::post(io_, [src = std::move(vm.outgoing)] {});
  switch (p.phase) {
    case MigrationPhase::kDone:
      // The VM runs at the destination: end the paused copy here.
      vm.state = "migrated to " + p.to;
      if (vm.last_migration_options.keep_source) vm.state += " (paused copy kept)";
      else if (vm.qemu && !vm.qemu->exited()) vm.qemu->stop(std::chrono::milliseconds(3000), [](const ExitStatus&) {});
      break;
    case MigrationPhase::kUnconfirmed: vm.state = "paused: migration to " + p.to + " unconfirmed"; break;
    default: vm.state = vm.qemu && !vm.qemu->exited() ? "running" : "exited"; break;
  }
  retire_channel(std::move(vm.channel));
}

// The last control message (COMMIT, CANCEL) must reach the peer before the
// channel goes: wait until the peer acknowledged it, a few seconds at most.
void VmManager::retire_channel(std::shared_ptr<wan::ChannelClient> channel, int tries) {
  if (!channel) return;
  if (tries <= 0 || channel->session()->retained_bytes(wan::kMigControlStream) == 0 ||
      channel->session()->state() == wan::SessionState::kClosed) {
    channel->stop();
    return;
  }
  auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
  t->async_wait([this, t, channel, tries](boost::system::error_code ec) {
    if (!ec) retire_channel(channel, tries - 1);
  });
}

void VmManager::vm_resume(const json& req, Reply reply) {
  const std::string name = req.value("vm", "");
  auto it = vms_.find(name);
  if (it == vms_.end()) return reply(fail("no VM \"" + name + "\" at site " + site_));
  Vm& vm = it->second;
  if (vm.outgoing || vm.incoming) return reply(fail("\"" + name + "\" is migrating: cancel the migration first"));
  if (!vm.qemu || vm.qemu->exited()) return reply(fail("\"" + name + "\" has no QEMU here (" + vm.state + ")"));
  auto qmp = vm.qemu->qmp_ptr();
  qmp->execute("cont", json::object(), [this, name, reply](proto::Result<json> r) {
    if (!r) return reply(fail("cont: " + r.error().detail));
    auto found = vms_.find(name);
    if (found != vms_.end()) {
      found->second.state = "running";
      announce(found->second.spec);
    }
    reply(json{{"ok", true}, {"vm", name}, {"state", "running"}});
  });
}

// Guest RAM to a file (QMP pmemsave), e.g. to compare a migrated VM's
// memory at both sites while both copies are paused.
void VmManager::vm_dump(const json& req, Reply reply) {
  const std::string name = req.value("vm", ""), file = req.value("file", "");
  auto it = vms_.find(name);
  if (it == vms_.end()) return reply(fail("no VM \"" + name + "\" at site " + site_));
  if (file.empty() || file.front() != '/') return reply(fail("vm-dump needs \"file\": an absolute path"));
  Vm& vm = it->second;
  if (!vm.qemu || vm.qemu->exited()) return reply(fail("\"" + name + "\" has no QEMU here (" + vm.state + ")"));
  const uint64_t size = vm.spec.memory_bytes;
  qmp::pmemsave(vm.qemu->qmp(), 0, size, file, [name, file, size, reply](proto::Result<void> r) {
    if (!r) return reply(fail("pmemsave: " + r.error().detail));
    reply(json{{"ok", true}, {"vm", name}, {"file", file}, {"bytes", size}});
  });
}

// --- incoming ------------------------------------------------------------

// One migration per session: the source dials a channel for each. The
// first message must be BEGIN; the rest is routed to its destination.
void VmManager::on_incoming_session(const std::shared_ptr<wan::Session>& session) {
  auto slot = std::make_shared<std::shared_ptr<MigrationDestination>>();
  std::weak_ptr<wan::Session> weak = session;
  session->on_message(wan::kMigControlStream, [this, weak, slot](proto::MessageType t, std::span<const uint8_t> p) {
    auto live = weak.lock();
    if (!live) return;
    auto m = proto::decode_payload(t, p);
    if (!m || !std::holds_alternative<proto::MigControl>(*m)) {
      spdlog::warn("migration from {}: undecodable control message: closing", live->peer_site());
      live->close();
      return;
    }
    const auto& c = std::get<proto::MigControl>(*m);
    if (*slot) {
      if (c.migration == (*slot)->migration()) (*slot)->on_control(c);
      return;
    }
    if (c.op != proto::MigOp::kBegin) return;  // a late message of a finished migration
    begin_incoming(live, c, slot);
  });
  session->on_message(wan::kMigMemoryStream, [slot](proto::MessageType, std::span<const uint8_t> p) {
    if (*slot) (*slot)->on_pages(p);
  });
  session->on_message(wan::kMigDiskStream, [slot](proto::MessageType t, std::span<const uint8_t> p) {
    if (*slot) (*slot)->on_disk(t, p);
  });
  session->on_state([slot](wan::SessionState st) {
    if (*slot) (*slot)->on_session_state(st);
  });
}

void VmManager::begin_incoming(const std::shared_ptr<wan::Session>& session, const proto::MigControl& c,
                               std::shared_ptr<std::shared_ptr<MigrationDestination>> slot) {
  auto refuse = [&](const std::string& why) {
    spdlog::warn("migration {} from {}: refused: {}", c.migration, session->peer_site(), why);
    const std::string text = json{{"reason", why}}.dump();
    proto::MigControl r;
    r.migration = c.migration;
    r.op = proto::MigOp::kCancel;
    r.detail = std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    session->send(wan::kMigControlStream, r);
  };
  auto j = json::parse(std::string(c.detail.begin(), c.detail.end()), nullptr, false);
  if (!j.is_object() || !j.contains("spec") || !j["spec"].is_string() || !j.contains("options"))
    return refuse("BEGIN without a VM description and options");
  auto opts = migrate_options_from_json(j["options"]);
  if (!opts) return refuse(opts.error().detail);
  const std::string spec_text = j["spec"].get<std::string>();
  auto spec = parse_vm_spec(spec_text, "the source's VM description");
  if (!spec) return refuse(spec.error().detail);
  if (opts->to != site_) return refuse("this is site " + site_ + ", not " + opts->to);
  if (auto it = vms_.find(spec->name); it != vms_.end()) {
    const Vm& v = it->second;
    if (v.incoming || v.outgoing || (v.qemu && !v.qemu->exited()))
      return refuse("a VM \"" + spec->name + "\" is already here (" + v.state + ")");
  }
  json accepted = json::object();
  std::unique_ptr<ServedDisks> disks;
  if (!ServedDisks::images_of(*spec, config_.disk_dir).empty()) {
    auto d = prepare_incoming_disks(*spec, j, accepted);
    if (!d) return refuse(d.error().detail);
    disks = std::move(d).value();
  }
  const std::string name = spec->name;
  Vm& vm = vms_[name];
  vm = Vm{};
  vm.spec_text = spec_text;
  vm.spec = *spec;
  vm.disks = std::move(disks);
  vm.state = "incoming";
  vm.last_migration_options = *opts;
  MigrationDestination::Setup s;
  s.migration = c.migration;
  s.site = site_;
  s.source_site = j.value("site", session->peer_site());
  s.options = *opts;
  s.vm_spec = spec_text;
  s.session = session;
  s.fault_drop_resumed = fault_drop_resumed_;
  if (vm.disks) s.disks = vm.disks->disks();
  s.accepted_detail = accepted;
  s.launch = [this, o = *opts](const std::string& text, MigrationDestination::LaunchDone done) {
    launch_incoming(text, o, std::move(done));
  };
  const VmSpec sp = *spec;
  s.send_garp = [this, sp] { announce(sp); };
  s.discard_vm = [this, name] {
    auto it = vms_.find(name);
    if (it != vms_.end() && it->second.qemu) it->second.qemu->kill();
  };
  auto dst = MigrationDestination::create(io_, std::move(s));
  if (!dst) {
    vms_.erase(name);
    return refuse(dst.error().detail);
  }
  vm.incoming = *dst;
  *slot = *dst;
  spdlog::info("migration {} of {} from {}: accepted", c.migration, name, session->peer_site());
  vm.incoming->start([this, name](const MigrationProgress& p) {
    auto it = vms_.find(name);
    if (it == vms_.end()) return;
    Vm& v = it->second;
    v.last_migration = p;
    asio::post(io_, [d = std::move(v.incoming)] {});
    if (p.phase == MigrationPhase::kDone) {
      v.state = v.last_migration_options.paused ? "paused" : "running";
      return;
    }
    // Rolled back: the VM never ran here, so once its QEMU is gone the
    // entry goes too (the source keeps the report).
    v.state = "rolled back: " + p.error;
    auto drop = [this, name, weak = std::weak_ptr<QemuVm>(v.qemu)] {
      auto f = vms_.find(name);
      if (f != vms_.end() && !f->second.incoming && f->second.qemu == weak.lock()) vms_.erase(f);
    };
    if (!v.qemu || v.qemu->exited()) return asio::post(io_, drop);
    // Posted: the exit handlers run inside the QemuVm the erase would free.
    v.qemu->on_exit([this, drop](const ExitStatus&) { asio::post(io_, drop); });
  });
}

void VmManager::launch_incoming(const std::string& spec_text, const MigrateOptions& options,
                                MigrationDestination::LaunchDone done) {
  auto spec = parse_vm_spec(spec_text, "the source's VM description");
  if (!spec) return done(spec.error());
  const std::string name = spec->name;
  // The source's log path is the source's: ours lives in our run dir.
  spec->serial_log = vm_dir(name) + "/serial.log";
  if (auto found = vms_.find(name); found != vms_.end() && found->second.disks)
    found->second.disks->fill_sockets(*spec);
  auto q = launch(*spec, LaunchMode::kIncoming);
  if (!q) return done(q.error());
  auto it = vms_.find(name);
  if (it == vms_.end()) {
    (*q)->kill();
    return done(Error{Errc::kSystem, "the incoming VM's entry vanished"});
  }
  it->second.qemu = *q;
  it->second.spec = *spec;
  watch_exit(name, *q);
  auto qemu = *q;
  const std::string sock = vm_dir(name) + "/migrate-in.sock";
  // Transport qemu: QEMU listens on the migration address itself, on a port
  // the kernel picks (query-migrate tells which; the source hears it in
  // ACCEPTED). Otherwise on a unix socket this agent writes into.
  const bool tcp = options.transport == MigrationTransport::kQemu;
  const std::string& host = config_.listen_address;
  const std::string uri = tcp ? "tcp:" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":0"
                              : "unix:" + sock;
  const bool xbzrle = options.xbzrle;
  qemu->connect(
      [this, name, qemu, sock, uri, tcp, xbzrle, done](proto::Result<void> r) {
        if (!r) return done(r.error());
        if (auto found = vms_.find(name); found != vms_.end())
          if (auto a = attach_nics(found->second.spec); !a) return done(a.error());
        ::unlink(sock.c_str());
        auto qmp = qemu->qmp_ptr();
        json caps = {{"capabilities",
                      {{{"capability", "events"}, {"state", true}}, {{"capability", "xbzrle"}, {"state", xbzrle}}}}};
        qmp->execute("migrate-set-capabilities", caps, [qmp, sock, uri, tcp, done](proto::Result<json> set) {
          if (!set) return done(Error{Errc::kSystem, "migrate-set-capabilities: " + set.error().detail});
          qmp->execute("migrate-incoming", {{"uri", uri}}, [qmp, sock, uri, tcp, done](proto::Result<json> incoming) {
            if (!incoming) return done(Error{Errc::kSystem, "migrate-incoming " + uri + ": " + incoming.error().detail});
            if (!tcp) return done(IncomingVm{qmp, sock, 0});
            qmp->execute("query-migrate", json::object(), [qmp, uri, done](proto::Result<json> answer) {
              if (!answer) return done(Error{Errc::kSystem, "query-migrate: " + answer.error().detail});
              auto info = parse_query_migrate(*answer);
              if (!info) return done(info.error());
              if (info->listen_ports.empty())
                return done(Error{Errc::kSystem, "QEMU does not say where it listens (" + uri + ")"});
              done(IncomingVm{qmp, "", info->listen_ports.front()});
            });
          });
        });
      },
      std::chrono::duration_cast<std::chrono::milliseconds>(kQmpConnectTimeout));
}

proto::Result<std::unique_ptr<ServedDisks>> VmManager::prepare_incoming_disks(const VmSpec& spec, const json& begin,
                                                                              json& accepted) {
  auto images = ServedDisks::images_of(spec, config_.disk_dir);
  const json list = begin.value("disks", json::array());
  if (!list.is_array() || list.size() != images.size())
    return Error{Errc::kInvalid, "BEGIN describes " + std::to_string(list.is_array() ? list.size() : 0) +
                                     " disk(s), the VM has " + std::to_string(images.size())};
  for (size_t i = 0; i < images.size(); ++i) {
    if (!list[i].is_object() || !list[i].contains("size") || !list[i]["size"].is_number_unsigned())
      return Error{Errc::kInvalid, "BEGIN: disk " + std::to_string(i) + " without a size"};
    images[i].create_bytes = list[i]["size"].get<uint64_t>();
  }
  auto served = ServedDisks::open(images, vm_dir(spec.name));
  if (!served) return served.error();
  json disks = json::array();
  for (size_t i = 0; i < images.size(); ++i) {
    auto& d = *(*served)->disks()[i];
    if (d.size() != images[i].create_bytes)
      return Error{Errc::kInvalid, "the image " + d.path() + " here has " + std::to_string(d.size()) +
                                       " bytes, the source's " + std::to_string(images[i].create_bytes)};
    const std::string theirs = list[i].value("generation", std::string());
    // Incremental only onto the very bytes the source's generation names:
    // same generation, and nothing written here since.
    const bool incremental = !theirs.empty() && d.generation() == theirs && d.blocks_written_since() == 0;
    if (!incremental) {
      if (int e = d.volume().punch(0, d.size()); e != 0)
        return Error{Errc::kSystem, "clearing " + d.path() + ": " + std::strerror(e)};
    }
    // Until COMMIT this copy is partial: no generation survives a crash.
    if (auto r = d.drop_generation(); !r) return r.error();
    spdlog::info("incoming {}: disk {} ({} bytes): {} copy", spec.name, d.path(), d.size(),
                 incremental ? "incremental" : "full");
    disks.push_back({{"incremental", incremental}});
  }
  accepted["disks"] = disks;
  return served;
}

}  // namespace tideway::agent
