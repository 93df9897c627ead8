#include "agent/agent.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <spdlog/spdlog.h>
#include <sstream>

#include "proto/crc32c.h"

namespace tideway::agent {

namespace asio = boost::asio;
using nlohmann::json;
using proto::Errc;
using proto::Error;

namespace {

// Each run of a protection numbers its writes from epoch << 40, above every
// seq of earlier runs, so the backup never mistakes a new write for a
// re-sent old one.
constexpr int kEpochShift = 40;

json fail(const std::string& why) { return {{"ok", false}, {"error", why}}; }

}  // namespace

uint32_t writer_id(const std::string& site, const std::string& name) {
  const std::string key = site + "/" + name;
  uint32_t id = proto::crc32c({reinterpret_cast<const uint8_t*>(key.data()), key.size()}) & 0x7fffffffu;
  return id == 0 ? 1 : id;
}

proto::Result<std::unique_ptr<Agent>> Agent::create(asio::io_context& io, AgentConfig config) {
  for (const std::string& d : {config.data_dir, config.data_dir + "/protections"})
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST)
      return Error{Errc::kSystem, "mkdir " + d + ": " + std::strerror(errno)};
  std::unique_ptr<Agent> a(new Agent(io, std::move(config)));
  DIR* dir = ::opendir((a->config_.data_dir + "/protections").c_str());
  std::vector<std::string> files;
  if (dir) {
    while (dirent* e = ::readdir(dir)) {
      std::string n = e->d_name;
      if (n.ends_with(".json")) files.push_back(n);
    }
    ::closedir(dir);
  }
  for (const auto& f : files) {
    std::ifstream in(a->config_.data_dir + "/protections/" + f);
    std::stringstream ss;
    ss << in.rdbuf();
    auto spec = spec_from_json(json::parse(ss.str(), nullptr, false));
    if (!spec) {
      spdlog::error("agent: ignoring {}: {}", f, spec.error().detail);
      continue;
    }
    auto p = std::make_unique<Protection>();
    p->spec = spec.value();
    if (auto r = a->start_protection(*p); !r) {
      p->error = r.error().detail;
      spdlog::error("agent: protection \"{}\" did not start: {}", p->spec.name, p->error);
    }
    a->protections_[p->spec.name] = std::move(p);
  }
  a->vms_ = std::make_unique<VmManager>(io, a->config_.site, a->config_.migration, a->config_.tls);
  if (auto r = a->vms_->start(); !r) return r.error();
  return a;
}

Agent::~Agent() { stop(); }

void Agent::stop() {
  for (auto& [name, p] : protections_) stop_protection(*p, /*remove_rule=*/false);
  for (auto& [name, l] : links_) l->stop();
  if (vms_) vms_->stop();
}

std::string Agent::spec_path(const std::string& name) const {
  return config_.data_dir + "/protections/" + name + ".json";
}

proto::Result<void> Agent::persist(const ProtectionSpec& s) const {
  const std::string path = spec_path(s.name), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << spec_to_json(s).dump(2) << "\n";
    if (!out.flush()) return Error{Errc::kSystem, "write " + tmp};
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Error{Errc::kSystem, "rename " + tmp + ": " + std::strerror(errno)};
  ::sync();  // the epoch must survive a crash, or a restart could reuse seqs
  return {};
}

std::shared_ptr<ReplicationLink> Agent::link_for(const std::string& backup) {
  if (auto it = links_.find(backup); it != links_.end()) return it->second;
  const BackupSite& site = config_.backups.at(backup);
  wan::ChannelOptions o;
  o.site = config_.site;
  o.tls = config_.tls;
  ReplicationLinkOptions lo;
  lo.codec = config_.codec;
  auto link = ReplicationLink::create(io_, o, site.address, site.port, lo);
  link->start();
  links_[backup] = link;
  return link;
}

proto::Result<void> Agent::start_protection(Protection& p) {
  ProtectionSpec& s = p.spec;
  if (!config_.backups.count(s.backup)) return Error{Errc::kInvalid, "unknown backup site \"" + s.backup + "\""};
  auto local = LocalVolume::open(s.volume, s.size);
  if (!local) return local.error();
  const uint64_t size = local.value()->size();
  ++s.epoch;
  if (auto r = persist(s); !r) return r.error();

  p.writer = writer_id(config_.site, s.name);
  p.log = std::make_shared<WriteLog>(p.writer, config_.max_unacked_bytes, wan::system_clock());
  p.log->start_at(s.epoch << kEpochShift);
  p.volume = std::make_unique<ProtectedVolume>(std::move(local).value(), p.log, 0, s.mode);
  p.link = link_for(s.backup);

  // Holder first, so nothing the application sends escapes unheld.
  if (!s.app_iface.empty()) {
    HolderRule rule{s.app_iface, "", s.queue, ""};
    if (auto r = install_holder_rule(rule); !r) return r.error();
    PacketHolderOptions ho;
    ho.queue_num = s.queue;
    ho.mode = s.mode == Mode::kPipelined ? HolderMode::kHold : HolderMode::kPass;
    auto log = p.log;
    auto h = PacketHolder::start(io_, ho, [log] { return log->pending(); });
    if (!h) return h.error();
    p.holder = std::move(h).value();
  }
  PacketHolder* holder = p.holder.get();
  p.link->add(p.log, {LinkVolume{0, s.name, size}}, [holder](uint32_t, uint64_t committed) {
    if (holder) holder->release(committed);
  });

  if (s.tap == TapKind::kFuse) {
    FuseExportOptions fo;
    fo.mountpoint = s.mount;
    auto f = FuseExport::start(*p.volume, fo);
    if (!f) return f.error();
    p.fuse = std::move(f).value();
  } else {
    p.nbd_io = std::make_unique<asio::io_context>();
    NbdServerOptions no;
    no.unix_path = s.nbd_socket;
    no.export_name = s.name;
    p.nbd = std::make_unique<NbdServer>(*p.nbd_io, *p.volume, no);
    if (auto r = p.nbd->start(); !r) return r.error();
    p.nbd_thread = std::thread([io = p.nbd_io.get()] {
      auto guard = asio::make_work_guard(*io);
      io->run();
    });
  }
  p.error.clear();
  spdlog::info("agent: protecting \"{}\" ({} tap, {} mode, backup {}, writer {}, seqs from {})", s.name,
               tap_name(s.tap), mode_name(s.mode), s.backup, p.writer, (s.epoch << kEpochShift) + 1);
  return {};
}

void Agent::stop_protection(Protection& p, bool remove_rule) {
  // Close the log first: writes still waiting for an ack (sync mode) fail
  // with EIO now. The taps' stop() waits for every completion they owe, and
  // those acks could only arrive on this thread, which stop() blocks.
  if (p.log) p.log->close();
  if (p.fuse) p.fuse->stop();
  if (p.nbd) p.nbd->stop();
  if (p.nbd_io) p.nbd_io->stop();
  if (p.nbd_thread.joinable()) p.nbd_thread.join();
  if (p.link && p.log) p.link->remove(p.writer);
  if (p.holder) p.holder->stop();  // held packets are dropped: fail-closed
  if (remove_rule && !p.spec.app_iface.empty()) {
    if (auto r = remove_holder_rule({p.spec.app_iface, "", p.spec.queue, ""}); !r)
      spdlog::warn("agent: could not remove the holder rule of \"{}\": {}", p.spec.name, r.error().detail);
  }
  p.fuse.reset();
  p.nbd.reset();
  p.holder.reset();
}

void Agent::handle(const json& req, wan::ControlServer::Reply reply) {
  const std::string cmd = req.at("cmd").get<std::string>();
  if (cmd == "status") {
    json j = status();
    j["ok"] = true;
    reply(j);
  } else if (cmd == "protect") {
    protect(req, std::move(reply));
  } else if (cmd == "unprotect") {
    unprotect(req, std::move(reply));
  } else if (!vms_->handle(cmd, req, reply)) {
    reply(fail("unknown command \"" + cmd +
               "\" (status, protect, unprotect, vm-start, vm-stop, vm-resume, vm-list, migrate, migrate-status, "
               "migrate-cancel)"));
  }
}

void Agent::protect(const json& req, wan::ControlServer::Reply reply) {
  json specj = req.value("spec", json::object());
  if (!specj.contains("backup") && config_.backups.size() == 1) specj["backup"] = config_.backups.begin()->first;
  specj.erase("epoch");
  auto spec = spec_from_json(specj);
  if (!spec) return reply(fail(spec.error().detail));
  if (spec->backup.empty()) return reply(fail("backup: this agent knows several backup sites; name one"));
  if (protections_.count(spec->name)) return reply(fail("\"" + spec->name + "\" is already protected"));
  for (auto& [n, p] : protections_) {
    if (p->spec.volume == spec->volume) return reply(fail(spec->volume + " is already protected by \"" + n + "\""));
    if (!spec->app_iface.empty() && p->spec.app_iface == spec->app_iface)
      return reply(fail("interface " + spec->app_iface + " is already held for \"" + n + "\""));
  }
  auto p = std::make_unique<Protection>();
  p->spec = spec.value();
  if (auto r = start_protection(*p); !r) {
    stop_protection(*p, /*remove_rule=*/true);
    ::unlink(spec_path(p->spec.name).c_str());
    return reply(fail(r.error().detail));
  }
  json j = protection_status(*p);
  protections_[p->spec.name] = std::move(p);
  reply({{"ok", true}, {"protection", j}});
}

void Agent::unprotect(const json& req, wan::ControlServer::Reply reply) {
  const std::string name = req.value("name", "");
  auto it = protections_.find(name);
  if (it == protections_.end()) return reply(fail("\"" + name + "\" is not protected here"));
  auto st = it->second->log ? it->second->log->stats() : WriteLogStats{};
  stop_protection(*it->second, /*remove_rule=*/true);
  ::unlink(spec_path(name).c_str());
  protections_.erase(it);
  reply({{"ok", true}, {"name", name}, {"unacked_writes_dropped", st.unacked_writes}});
}

json Agent::protection_status(const Protection& p) const {
  json j{{"name", p.spec.name}, {"mode", mode_name(p.spec.mode)}, {"backup", p.spec.backup},
         {"tap", tap_name(p.spec.tap)}, {"volume", p.spec.volume}, {"writer", p.writer}};
  j["tap_path"] = p.spec.tap == TapKind::kFuse ? p.spec.mount + "/disk.img" : p.spec.nbd_socket;
  if (!p.error.empty() || !p.log) {
    j["state"] = "failed";
    j["error"] = p.error;
    return j;
  }
  const auto st = p.log->stats();
  const AttachState as = p.link->attach_state(p.writer);
  std::string state = as == AttachState::kRefused ? "refused" : as == AttachState::kAttaching ? "attaching" : "protected";
  if (state == "protected" && p.link->session()->state() != wan::SessionState::kConnected) state = "disconnected";
  j["state"] = state;
  if (as == AttachState::kRefused) j["error"] = p.link->refusal(p.writer);
  // Counters relative to this run's first seq, so they read as write counts.
  const uint64_t base = p.spec.epoch << kEpochShift;
  j["pending"] = st.pending - base;
  j["committed"] = st.committed > base ? st.committed - base : 0;
  j["unacked_writes"] = st.unacked_writes;
  j["unacked_bytes"] = st.unacked_bytes;
  j["oldest_unacked_ms"] = st.oldest_unacked_ms;
  j["writes_blocked"] = st.blocked_total;
  if (p.holder) {
    const auto h = p.holder->stats();
    j["holder"] = {{"mode", holder_mode_name(h.mode)}, {"held", h.held},          {"held_bytes", h.held_bytes},
                   {"oldest_hold_ms", h.oldest_hold_ms}, {"max_hold_ms", h.max_hold_ms},
                   {"released", h.released_total}, {"passed", h.passed_total},  {"dropped", h.dropped_full},
                   {"kernel_lost", h.kernel_lost}};
  }
  j["link"] = p.link->status();
  j["codec"] = p.link->codec_status(p.writer);
  return j;
}

json Agent::status() const {
  json j{{"site", config_.site}, {"protections", json::array()}};
  for (auto& [n, p] : protections_) j["protections"].push_back(protection_status(*p));
  if (vms_) j["vms"] = vms_->status()["vms"];
  return j;
}

}  // namespace tideway::agent
