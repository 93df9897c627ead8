#include "agent/migration_source.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

namespace tideway::agent {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using proto::MigOp;
using Clock = std::chrono::steady_clock;

namespace {
constexpr size_t kReadChunk = 512 * 1024;
constexpr int64_t kStopDowntimeMs = 60'000;       // "stop now": any remaining set fits
constexpr uint64_t kUnlimitedBandwidth = 1ull << 40;  // QEMU must not be the limit: the channel is
constexpr auto kTick = std::chrono::milliseconds(250);
}  // namespace

// Feeds the splitter's output into the page-stream encoder, taking a piece
// whenever one is full.
class MigrationSource::Sink : public proto::qemu::StreamSink {
 public:
  explicit Sink(MigrationSource& m) : m_(m) {}
  void opaque(std::span<const uint8_t> bytes) override {
    while (!bytes.empty()) {
      bytes = bytes.subspan(m_.encoder_->add_opaque(bytes));
      if (!bytes.empty()) m_.take_piece();
    }
  }
  void page(uint64_t key, std::span<const uint8_t> data) override {
    if (m_.encoder_->full()) m_.take_piece();
    m_.encoder_->add_page(key, data);
    ++m_.progress_.pages;
  }

 private:
  MigrationSource& m_;
};

proto::Result<std::shared_ptr<MigrationSource>> MigrationSource::create(asio::io_context& io, Setup setup) {
  assert(setup.qmp && setup.session);
  auto self = std::shared_ptr<MigrationSource>(new MigrationSource(io, std::move(setup)));
  auto enc = wan::codec::PageStreamEncoder::create(memory_codec_config(self->s_.options), self->s_.migration);
  if (!enc) return enc.error();
  self->encoder_ = std::move(enc).value();
  return self;
}

MigrationSource::MigrationSource(asio::io_context& io, Setup setup)
    : io_(io),
      s_(std::move(setup)),
      policy_(stop_policy_config(s_.options)),
      acceptor_(io),
      stream_(io),
      read_buf_(kReadChunk),
      ticker_(io) {
  progress_.vm = s_.options.vm;
  progress_.from = s_.site;
  progress_.to = s_.options.to;
  progress_.transport = transport_name(s_.options.transport);
  progress_.xbzrle = s_.options.xbzrle;
}

double MigrationSource::ms_since_start() const {
  return std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
}

void MigrationSource::start(DoneHandler done) {
  done_ = std::move(done);
  started_ = last_rate_at_ = Clock::now();
  auto weak = weak_from_this();
  s_.session->on_message(wan::kMigControlStream, [weak](proto::MessageType t, std::span<const uint8_t> p) {
    if (auto self = weak.lock()) self->on_control(t, p);
  });
  s_.session->on_writable(wan::kMigMemoryStream, [weak] {
    if (auto self = weak.lock()) {
      if (finished(self->progress_.phase)) return;
      if (self->send_pieces()) {
        self->read_stream();
        self->maybe_complete();
      }
    }
  });
  s_.session->on_writable(wan::kMigDiskStream, [weak] {
    if (auto self = weak.lock(); self && self->disk_) self->disk_->on_writable();
  });
  s_.session->on_state([weak](wan::SessionState st) {
    if (auto self = weak.lock()) self->on_session_state(st);
  });
  s_.qmp->on_event([weak](const std::string& e, const nlohmann::json& d) {
    if (auto self = weak.lock()) self->on_qmp_event(e, d);
  });
  nlohmann::json disks = nlohmann::json::array();
  for (size_t i = 0; i < s_.disks.size(); ++i)
    disks.push_back({{"image", s_.disk_images.at(i)},
                     {"size", s_.disks[i]->size()},
                     {"generation", s_.disks[i]->generation()}});
  send_control(MigOp::kBegin, {{"vm", s_.options.vm},
                               {"site", s_.site},
                               {"spec", s_.vm_spec},
                               {"options", to_json(s_.options)},
                               {"disks", disks}});
  tick();
}

void MigrationSource::send_control(MigOp op, const nlohmann::json& detail) {
  const std::string text = detail.is_null() ? std::string() : detail.dump();
  proto::MigControl c;
  c.migration = s_.migration;
  c.op = op;
  c.iteration = progress_.iteration;
  if (!progress_.iterations.empty()) {
    const auto& last = progress_.iterations.back();
    c.pages_sent = last.pages_sent;
    c.pages_dirtied = last.pages_dirtied;
    c.pages_remaining = last.pages_remaining;
  }
  c.detail = std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  // Control has its own retention budget; a refusal means the peer has been
  // unreachable for a long time, which the WAN timeout turns into a rollback.
  if (!s_.session->send(wan::kMigControlStream, c))
    spdlog::warn("migrate {}: control message {} not queued (channel full)", s_.options.vm, int(op));
}

void MigrationSource::on_control(proto::MessageType type, std::span<const uint8_t> payload) {
  if (finished(progress_.phase)) return;
  auto m = proto::decode_payload(type, payload);
  if (m && std::holds_alternative<proto::ReplAck>(*m)) {
    if (!disk_) return roll_back("a disk ack from the destination, but no disk is being copied");
    disk_->on_ack(std::get<proto::ReplAck>(*m));
    progress_.disk = disk_->progress();
    return maybe_complete();
  }
  if (!m || !std::holds_alternative<proto::MigControl>(*m)) {
    roll_back("undecodable control message from the destination");
    return;
  }
  const auto& c = std::get<proto::MigControl>(*m);
  if (c.migration != s_.migration) return;  // an older migration's late message
  const std::string detail(c.detail.begin(), c.detail.end());
  switch (c.op) {
    case MigOp::kAccepted:
      if (progress_.phase == MigrationPhase::kConnecting) {
        auto j = nlohmann::json::parse(detail, nullptr, false);
        if (s_.options.transport == MigrationTransport::kQemu) {
          const int port = j.is_object() && j.contains("qemu_port") && j["qemu_port"].is_number_integer()
                               ? j["qemu_port"].get<int>() : 0;
          if (port < 1 || port > 65535) return roll_back("the destination did not say where its QEMU listens");
          qemu_port_ = port;
        }
        if (s_.disks.empty()) begin_qemu();
        else begin_disks(j);
      }
      break;
    case MigOp::kLoaded:
      if (progress_.phase != MigrationPhase::kSwitchover) {
        roll_back("destination reported the VM loaded before the stream was complete");
        break;
      }
      if (committed_) break;
      // From here on the source never resumes its copy on its own: the
      // destination may be running the VM.
      committed_ = true;
      committed_at_ = Clock::now();
      if (!s_.disks.empty()) disk_generation_ = VmDisk::new_generation();
      send_control(MigOp::kCommit, {{"disk_generation", disk_generation_}});
      break;
    case MigOp::kResumed:
      if (!committed_) {
        roll_back("destination reported the VM resumed before COMMIT");
        break;
      }
      progress_.switchover_ms = std::chrono::duration<double, std::milli>(Clock::now() - paused_at_).count();
      // Our images equal the destination's as of the switchover: a later
      // return needs only what the VM writes there from now on.
      for (auto& d : s_.disks)
        if (auto r = d->set_generation(disk_generation_); !r)
          spdlog::warn("migrate {}: {}: the next return copies the whole disk", s_.options.vm, r.error().detail);
      finish(MigrationPhase::kDone);
      break;
    case MigOp::kCancel: {
      auto j = nlohmann::json::parse(detail, nullptr, false);
      const std::string reason = j.is_object() ? j.value("reason", std::string("cancelled")) : detail;
      // After COMMIT only the destination's own word that it did not resume
      // the VM lets the source take it back.
      committed_ = false;
      roll_back("destination: " + (reason.empty() ? std::string("cancelled") : reason));
      break;
    }
    default:
      spdlog::warn("migrate {}: unexpected control op {} from the destination", s_.options.vm, int(c.op));
  }
}

void MigrationSource::on_session_state(wan::SessionState st) {
  if (finished(progress_.phase)) return;
  switch (st) {
    case wan::SessionState::kConnected: disconnected_since_.reset(); break;
    case wan::SessionState::kConnecting:
      if (!disconnected_since_) disconnected_since_ = Clock::now();
      break;
    case wan::SessionState::kReset:
      if (committed_) return unconfirmed("the destination lost the migration's session after COMMIT");
      roll_back("the destination lost the migration's session");
      break;
    case wan::SessionState::kClosed:
      if (committed_) return unconfirmed("the channel to the destination closed after COMMIT");
      roll_back("the channel to the destination closed");
      break;
  }
}

void MigrationSource::begin_disks(const nlohmann::json& accepted) {
  progress_.phase = MigrationPhase::kDisk;
  DiskCopySource::Setup d;
  d.migration = s_.migration;
  d.disks = s_.disks;
  d.codec = disk_codec_config(s_.options);
  d.session = s_.session;
  const auto* list = accepted.is_object() && accepted.contains("disks") && accepted["disks"].is_array()
                         ? &accepted["disks"] : nullptr;
  if (!list || list->size() != s_.disks.size())
    return roll_back("the destination did not say how it takes the VM's " + std::to_string(s_.disks.size()) +
                     " disk(s)");
  for (const auto& x : *list) d.incremental.push_back(x.is_object() && x.value("incremental", false));
  auto src = DiskCopySource::create(io_, std::move(d));
  if (!src) return roll_back("disk copy: " + src.error().detail);
  disk_ = std::move(src).value();
  auto weak = weak_from_this();
  disk_->start([weak](proto::Result<void> r) {
    auto self = weak.lock();
    if (!self || finished(self->progress_.phase)) return;
    self->progress_.disk = self->disk_->progress();
    if (!r) return self->roll_back("disk copy: " + r.error().detail);
    self->begin_qemu();
  });
}

void MigrationSource::begin_qemu() {
  progress_.phase = MigrationPhase::kMemory;
  memory_started_ = Clock::now();
  if (s_.options.transport == MigrationTransport::kQemu) {
    // QEMU's own stream, source QEMU to destination QEMU over TCP: nothing
    // passes through this agent, so there is no stream of ours to end.
    stream_ended_ = true;
    const bool v6 = s_.peer_address.find(':') != std::string::npos;
    return start_qemu_migration("tcp:" + (v6 ? "[" + s_.peer_address + "]" : s_.peer_address) + ":" +
                                std::to_string(qemu_port_));
  }
  boost::system::error_code ec;
  ::unlink(s_.socket_path.c_str());
  acceptor_.open(local(), ec);
  if (!ec) acceptor_.bind(local::endpoint(s_.socket_path), ec);
  if (!ec) acceptor_.listen(1, ec);
  if (ec) {
    roll_back("cannot listen on " + s_.socket_path + ": " + ec.message());
    return;
  }
  accept_stream();
  start_qemu_migration("unix:" + s_.socket_path);
}

void MigrationSource::start_qemu_migration(const std::string& uri) {
  auto self = shared_from_this();
  auto fail_or = [self](const char* what, std::function<void()> next) {
    return [self, what, next](proto::Result<nlohmann::json> r) {
      if (finished(self->progress_.phase)) return;
      if (!r) return self->roll_back(std::string(what) + ": " + r.error().detail);
      next();
    };
  };
  const bool qemu_transport = s_.options.transport == MigrationTransport::kQemu;
  nlohmann::json caps = {{"capabilities",
                          {{{"capability", "events"}, {"state", true}},
                           {{"capability", "xbzrle"}, {"state", s_.options.xbzrle}}}}};
  // Smart stop holds QEMU at 1 ms and raises the limit to stop; otherwise
  // QEMU's own default of 300 ms decides.
  const int64_t downtime = s_.options.smart_stop ? 1 : 300;
  nlohmann::json params = {{"downtime-limit", downtime}};
  // Through the agents the channel is the limit, never QEMU. QEMU's own
  // transport has no channel: --rate becomes its max-bandwidth, and
  // without one QEMU keeps its shipped default (128 MiB/s in 7.2).
  if (!qemu_transport) params["max-bandwidth"] = kUnlimitedBandwidth;
  else if (s_.options.rate_bytes_per_sec > 0) params["max-bandwidth"] = s_.options.rate_bytes_per_sec;
  s_.qmp->execute("migrate-set-capabilities", caps, fail_or("migrate-set-capabilities", [self, params, uri, fail_or] {
    self->s_.qmp->execute("migrate-set-parameters", params, fail_or("migrate-set-parameters", [self, uri, fail_or] {
      self->s_.qmp->execute("migrate", {{"uri", uri}}, fail_or("migrate", [] {}));
    }));
  }));
}

// QEMU's counters are the only record of what its own transport sent: the
// bytes it wrote to the socket (RAM, XBZRLE-encoded or not, with headers).
void MigrationSource::take_qemu_counters(const MigrationInfo& info) {
  if (s_.options.transport != MigrationTransport::kQemu || !info.ram) return;
  progress_.stream_bytes = std::max(progress_.stream_bytes, info.ram->transferred);
  progress_.wire_bytes = progress_.stream_bytes;
  progress_.zero_pages = info.ram->duplicate;
  progress_.pages = info.ram->normal + info.ram->duplicate;
  if (info.xbzrle) {
    progress_.xbzrle_pages = info.xbzrle->pages;
    progress_.xbzrle_bytes = info.xbzrle->bytes;
    progress_.xbzrle_cache_misses = info.xbzrle->cache_miss;
    progress_.pages += info.xbzrle->pages;
  }
}

void MigrationSource::poll_qemu_counters() {
  auto self = shared_from_this();
  s_.qmp->execute("query-migrate", nlohmann::json::object(), [self](proto::Result<nlohmann::json> r) {
    if (!r || finished(self->progress_.phase)) return;
    if (auto info = parse_query_migrate(*r)) self->take_qemu_counters(*info);
    else spdlog::warn("migrate {}: {}", self->s_.options.vm, info.error().detail);
  });
}

void MigrationSource::accept_stream() {
  auto self = shared_from_this();
  acceptor_.async_accept(stream_, [self](boost::system::error_code ec) {
    if (finished(self->progress_.phase)) return;
    if (ec) return self->roll_back("QEMU's stream did not connect: " + ec.message());
    self->acceptor_.close();
    ::unlink(self->s_.socket_path.c_str());
    self->read_stream();
  });
}

void MigrationSource::read_stream() {
  if (reading_ || stream_ended_ || !pieces_.empty() || !stream_.is_open() || finished(progress_.phase)) return;
  reading_ = true;
  auto self = shared_from_this();
  stream_.async_read_some(asio::buffer(read_buf_), [self](boost::system::error_code ec, size_t n) {
    self->reading_ = false;
    if (finished(self->progress_.phase)) return;
    if (n > 0) self->on_stream_bytes(n);
    if (ec == asio::error::eof) return self->on_stream_end();
    if (ec) return self->roll_back("reading QEMU's stream: " + ec.message());
    if (self->send_pieces()) self->read_stream();
  });
}

void MigrationSource::on_stream_bytes(size_t n) {
  progress_.stream_bytes += n;
  Sink sink(*this);
  auto r = splitter_.feed(std::span<const uint8_t>(read_buf_.data(), n), sink);
  if (!r) return roll_back("QEMU's stream: " + r.error().detail);
  progress_.zero_pages = splitter_.stats().zero_pages;
  if (!encoder_->empty()) take_piece();
}

void MigrationSource::on_stream_end() {
  stream_ended_ = true;
  if (!encoder_->empty()) take_piece();
  if (send_pieces()) maybe_complete();
}

void MigrationSource::take_piece() {
  std::vector<uint8_t> payload;
  auto r = encoder_->take(payload);
  if (!r) return roll_back("encoding pages: " + r.error().detail);
  progress_.wire_bytes += payload.size();
  progress_.codec = encoder_->stats();
  pieces_.push_back(std::move(payload));
}

bool MigrationSource::send_pieces() {
  while (!pieces_.empty()) {
    if (!s_.session->send(wan::kMigMemoryStream, proto::MessageType::kMigPages, pieces_.front())) return false;
    pieces_.pop_front();
  }
  return true;
}

void MigrationSource::on_qmp_event(const std::string& event, const nlohmann::json& data) {
  if (finished(progress_.phase)) return;
  if (event == "MIGRATION_PASS") {
    on_pass(data.value("pass", 0u));
  } else if (event == "STOP" && progress_.phase == MigrationPhase::kMemory) {
    // The VM paused for the last iteration: the destination announces the
    // VM's MAC/IP now (DESIGN 3, step 4).
    paused_at_ = Clock::now();
    progress_.phase = MigrationPhase::kStopAndCopy;
    garp_moved_ = true;
    send_control(MigOp::kStopAndCopy);
  } else if (event == "MIGRATION") {
    const std::string status = data.value("status", "");
    if (status == "completed") {
      qemu_completed_ = true;
      auto self = shared_from_this();
      s_.qmp->execute("query-migrate", nlohmann::json::object(), [self](proto::Result<nlohmann::json> r) {
        auto info = r ? parse_query_migrate(*r) : proto::Result<MigrationInfo>(r.error());
        if (info && info->downtime_ms) self->progress_.downtime_ms = static_cast<double>(*info->downtime_ms);
        if (info) self->take_qemu_counters(*info);
        self->maybe_complete();
      });
    } else if (status == "failed" || status == "cancelled") {
      roll_back("QEMU reports the migration " + status);
    }
  }
}

void MigrationSource::on_pass(uint32_t pass) {
  auto self = shared_from_this();
  s_.qmp->execute("query-migrate", nlohmann::json::object(), [self, pass](proto::Result<nlohmann::json> r) {
    if (finished(self->progress_.phase) || !r) return;
    auto info = parse_query_migrate(*r);
    if (!info) return spdlog::warn("migrate {}: {}", self->s_.options.vm, info.error().detail);
    if (!info->ram) return;
    // XBZRLE pages count in neither normal nor duplicate.
    const uint64_t done_pages =
        info->ram->normal + info->ram->duplicate + (info->xbzrle ? info->xbzrle->pages : 0);
    self->take_qemu_counters(*info);
    const uint64_t remaining = info->ram->remaining / proto::kPageSize;
    // QEMU raises MIGRATION_PASS at each dirty-bitmap sync, i.e. at the
    // start of pass N: pass N-1 has ended, and what the sync found
    // (remaining) was dirtied while it ran.
    if (pass >= 2) {
      IterationRecord it;
      it.iteration = pass - 1;
      it.pages_sent = done_pages - std::min(done_pages, self->pass_pages_base_);
      it.pages_dirtied = remaining;
      it.pages_remaining = remaining;
      it.wire_bytes = self->progress_.wire_bytes - self->pass_wire_base_;
      it.end_ms = self->ms_since_start();
      self->progress_.iterations.push_back(it);
      self->send_control(MigOp::kIterationEnd);
      wan::IterationStats st;
      st.iteration = it.iteration;
      st.pages_sent = it.pages_sent;
      st.pages_dirtied = it.pages_dirtied;
      st.pages_remaining = it.pages_remaining;
      st.elapsed = Clock::now() - self->started_;
      auto d = self->policy_.after_iteration(st);
      if (d.stop && !self->stop_requested_) self->stop_now(d.reason);
    }
    self->pass_ = pass;
    self->progress_.iteration = pass;
    self->pass_pages_base_ = done_pages;
    self->pass_wire_base_ = self->progress_.wire_bytes;
  });
}

void MigrationSource::stop_now(const std::string& reason) {
  stop_requested_ = true;
  progress_.stop_reason = reason;
  spdlog::info("migrate {}: stop-and-copy after iteration {}: {}", s_.options.vm, pass_, reason);
  auto self = shared_from_this();
  s_.qmp->execute("migrate-set-parameters", {{"downtime-limit", kStopDowntimeMs}},
                  [self](proto::Result<nlohmann::json> r) {
                    if (!r && !finished(self->progress_.phase))
                      self->roll_back("raising downtime-limit: " + r.error().detail);
                  });
}

void MigrationSource::maybe_complete() {
  if (complete_sent_ || !stream_ended_ || !qemu_completed_ || !pieces_.empty() || finished(progress_.phase)) return;
  // The VM is paused: once no mirrored write awaits its ack, the
  // destination's disks are exactly ours.
  if (disk_ && !disk_->settled()) return;
  complete_sent_ = true;
  progress_.phase = MigrationPhase::kSwitchover;
  if (paused_at_ == Clock::time_point{}) paused_at_ = Clock::now();
  send_control(MigOp::kComplete, {{"stream_bytes", encoder_->stream_offset()},
                                  {"disk_seq", disk_ ? disk_->sent_seq() : 0}});
}

void MigrationSource::tick() {
  if (finished(progress_.phase)) return;
  const auto now = Clock::now();
  const double dt = std::chrono::duration<double>(now - last_rate_at_).count();
  if (dt >= 1.0) {
    const uint64_t wire = progress_.wire_bytes + (disk_ ? disk_->progress().wire_bytes : 0);
    progress_.rate_bytes_per_sec = (wire - last_rate_bytes_) / dt;
    last_rate_bytes_ = wire;
    last_rate_at_ = now;
  }
  progress_.elapsed_ms = ms_since_start();
  if (disk_) progress_.disk = disk_->progress();
  if (s_.options.transport == MigrationTransport::kQemu && progress_.phase == MigrationPhase::kMemory)
    poll_qemu_counters();
  if (!progress_.iterations.empty() && progress_.rate_bytes_per_sec > 0) {
    const double ratio = progress_.stream_bytes ? double(progress_.wire_bytes) / progress_.stream_bytes : 1.0;
    progress_.eta_s = progress_.iterations.back().pages_remaining * double(proto::kPageSize) * ratio /
                      progress_.rate_bytes_per_sec;
  }
  if (committed_ && now - committed_at_ > s_.options.switchover_timeout + s_.options.wan_timeout)
    return unconfirmed("no RESUMED from the destination within " +
                       std::to_string((s_.options.switchover_timeout + s_.options.wan_timeout).count()) +
                       " s of COMMIT");
  if (!committed_ && disconnected_since_ && now - *disconnected_since_ > s_.options.wan_timeout)
    return roll_back("the WAN to " + s_.options.to + " has been down for " +
                     std::to_string(s_.options.wan_timeout.count()) + " s");
  if (!committed_ && progress_.phase == MigrationPhase::kSwitchover && now - paused_at_ > s_.options.switchover_timeout)
    return roll_back("the destination did not load the VM within " +
                     std::to_string(s_.options.switchover_timeout.count()) + " s");
  if (!stop_requested_ && progress_.phase == MigrationPhase::kMemory && now - memory_started_ > s_.options.max_time)
    stop_now("time cap of " + std::to_string(s_.options.max_time.count()) + " s reached");
  auto self = shared_from_this();
  ticker_.expires_after(kTick);
  ticker_.async_wait([self](boost::system::error_code ec) {
    if (!ec) self->tick();
  });
}

void MigrationSource::cancel(const std::string& why) { roll_back(why.empty() ? "cancelled by the operator" : why); }

void MigrationSource::roll_back(const std::string& why) {
  if (finished(progress_.phase)) return;
  if (committed_) return;  // the VM is the destination's now
  spdlog::warn("migrate {}: rolling back: {}", s_.options.vm, why);
  progress_.error = why;
  send_control(MigOp::kCancel, {{"reason", why}});
  // QEMU restarts the source VM itself after a cancelled or failed
  // migration; after a completed one (paused in postmigrate) it must be
  // told to continue.
  auto qmp = s_.qmp;
  auto garp = garp_moved_ ? s_.send_local_garp : std::function<void()>();
  qmp->execute("migrate_cancel", nlohmann::json::object(), [qmp, garp](proto::Result<nlohmann::json>) {
    qmp->execute("query-status", nlohmann::json::object(), [qmp, garp](proto::Result<nlohmann::json> r) {
      const bool running = r && r->value("running", false);
      auto after = [garp](proto::Result<nlohmann::json>) {
        if (garp) garp();
      };
      if (!running) qmp->execute("cont", nlohmann::json::object(), after);
      else after(nlohmann::json::object());
    });
  });
  finish(MigrationPhase::kRolledBack);
}

void MigrationSource::unconfirmed(const std::string& why) {
  if (finished(progress_.phase)) return;
  spdlog::error("migrate {}: {}: the VM stays paused here; check site {} before resuming it here (tideway vm resume)",
                s_.options.vm, why, s_.options.to);
  progress_.error = why + "; the VM is paused here and may be running at " + s_.options.to;
  finish(MigrationPhase::kUnconfirmed);
}

void MigrationSource::finish(MigrationPhase phase) {
  progress_.phase = phase;
  progress_.elapsed_ms = ms_since_start();
  progress_.codec = encoder_->stats();
  if (disk_) {
    // Mirroring ends: after a rollback the VM goes on here alone.
    disk_->stop();
    progress_.disk = disk_->progress();
  }
  ticker_.cancel();
  boost::system::error_code ec;
  acceptor_.close(ec);
  stream_.close(ec);
  ::unlink(s_.socket_path.c_str());
  pieces_.clear();
  spdlog::info("migrate {}: {} after {:.0f} ms{}", s_.options.vm, phase_name(phase), progress_.elapsed_ms,
               progress_.error.empty() ? "" : ": " + progress_.error);
  if (done_) {
    auto done = std::move(done_);
    done(progress_);
  }
}

}  // namespace tideway::agent
