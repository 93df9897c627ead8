#include "agent/migration_destination.h"

#include <spdlog/spdlog.h>

#include <cassert>

namespace tideway::agent {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using proto::MigOp;
using Clock = std::chrono::steady_clock;

namespace {
// The rebuilt stream QEMU has not read yet. QEMU loads pages far faster
// than a WAN delivers them, so reaching this means it is stuck.
constexpr size_t kMaxUnwritten = size_t{256} << 20;
constexpr size_t kCoalesce = size_t{1} << 20;
}  // namespace

proto::Result<std::shared_ptr<MigrationDestination>> MigrationDestination::create(asio::io_context& io, Setup setup) {
  assert(setup.session && setup.launch);
  auto self = std::shared_ptr<MigrationDestination>(new MigrationDestination(io, std::move(setup)));
  auto dec = wan::codec::PageStreamDecoder::create(memory_codec_config(self->s_.options), self->s_.migration);
  if (!dec) return dec.error();
  self->decoder_ = std::move(dec).value();
  if (!self->s_.disks.empty()) {
    DiskCopyDestination::Setup d;
    d.migration = self->s_.migration;
    d.disks = self->s_.disks;
    d.codec = disk_codec_config(self->s_.options);
    d.session = self->s_.session;
    std::weak_ptr<MigrationDestination> weak = self;
    d.on_error = [weak](const std::string& why) {
      if (auto me = weak.lock()) me->fail("disk copy: " + why, true);
    };
    auto disk = DiskCopyDestination::create(io, std::move(d));
    if (!disk) return disk.error();
    self->disk_ = std::move(disk).value();
  }
  return self;
}

MigrationDestination::MigrationDestination(asio::io_context& io, Setup setup)
    : io_(io), s_(std::move(setup)), qemu_(io), timeout_(io) {
  progress_.vm = s_.options.vm;
  progress_.from = s_.source_site;
  progress_.to = s_.site;
  progress_.transport = transport_name(s_.options.transport);
  progress_.xbzrle = s_.options.xbzrle;
}

void MigrationDestination::start(DoneHandler done) {
  done_ = std::move(done);
  started_ = Clock::now();
  auto self = shared_from_this();
  s_.launch(s_.vm_spec, [self](proto::Result<IncomingVm> vm) { self->launched(std::move(vm)); });
}

void MigrationDestination::launched(proto::Result<IncomingVm> vm) {
  if (finished(progress_.phase)) return;
  if (!vm) return fail("cannot start the incoming VM: " + vm.error().detail, true);
  vm_ = std::move(vm).value();
  auto weak = weak_from_this();
  vm_.qmp->on_event([weak](const std::string& e, const nlohmann::json& d) {
    if (auto self = weak.lock()) self->on_qmp_event(e, d);
  });
  progress_.phase = s_.disks.empty() ? MigrationPhase::kMemory : MigrationPhase::kDisk;
  if (s_.options.transport == MigrationTransport::kQemu) {
    // The source's QEMU sends straight to ours: nothing to relay here.
    if (vm_.tcp_port <= 0) return fail("the incoming VM listens on no TCP port", true);
    spdlog::info("incoming {}: QEMU's own transport: its QEMU listens on TCP port {} (plaintext, unauthenticated)",
                 s_.options.vm, vm_.tcp_port);
    nlohmann::json detail = s_.accepted_detail.is_object() ? s_.accepted_detail : nlohmann::json::object();
    detail["qemu_port"] = vm_.tcp_port;
    return send_control(MigOp::kAccepted, detail);
  }
  boost::system::error_code ec;
  qemu_.connect(local::endpoint(vm_.socket_path), ec);
  if (ec) return fail("cannot connect to the incoming VM's stream socket " + vm_.socket_path + ": " + ec.message(), true);
  connected_ = true;
  send_control(MigOp::kAccepted, s_.accepted_detail);
  write_more();
}

void MigrationDestination::send_control(MigOp op, const nlohmann::json& detail) {
  const std::string text = detail.is_null() ? std::string() : detail.dump();
  proto::MigControl c;
  c.migration = s_.migration;
  c.op = op;
  c.detail = std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  if (!s_.session->send(wan::kMigControlStream, c))
    spdlog::warn("incoming {}: control message {} not queued (channel full)", s_.options.vm, int(op));
}

void MigrationDestination::on_pages(std::span<const uint8_t> payload) {
  if (finished(progress_.phase)) return;
  if (s_.options.transport == MigrationTransport::kQemu)
    return fail("memory pages on the channel, but QEMU's own transport was agreed", true);
  auto m = proto::decode_payload(proto::MessageType::kMigPages, payload);
  if (!m) return fail("undecodable MIG_PAGES: " + m.error().detail, true);
  const auto& piece = std::get<proto::MigPages>(*m);
  std::vector<uint8_t> bytes;
  auto r = decoder_->decode(piece, bytes);
  if (!r) return fail("memory stream: " + r.error().detail, true);
  progress_.wire_bytes += payload.size();
  progress_.stream_bytes += bytes.size();
  progress_.pages = decoder_->pages();
  out_bytes_ += bytes.size();
  // Coalesce small pieces, but never into the buffer async_write is sending.
  const bool back_in_flight = writing_ && out_.size() == 1;
  if (!out_.empty() && !back_in_flight && out_.back().size() + bytes.size() <= kCoalesce)
    out_.back().insert(out_.back().end(), bytes.begin(), bytes.end());
  else
    out_.push_back(std::move(bytes));
  if (out_bytes_ > kMaxUnwritten) return fail("the incoming VM is not reading its migration stream", true);
  write_more();
}

void MigrationDestination::on_disk(proto::MessageType type, std::span<const uint8_t> payload) {
  if (finished(progress_.phase)) return;
  if (!disk_) return fail("disk data for a VM without agent-served disks", true);
  disk_->on_message(type, payload);
  progress_.disk.active = true;
  progress_.disk.bytes_sent = disk_->bytes_applied();
  progress_.disk.wire_bytes += payload.size();
  progress_.disk.codec = disk_->codec_stats();
}

void MigrationDestination::write_more() {
  if (writing_ || !connected_ || out_.empty() || finished(progress_.phase)) return;
  writing_ = true;
  auto self = shared_from_this();
  asio::async_write(qemu_, asio::buffer(out_.front()), [self](boost::system::error_code ec, size_t n) {
    self->writing_ = false;
    if (finished(self->progress_.phase)) return;
    if (ec) return self->fail("writing the incoming VM's stream: " + ec.message(), true);
    self->written_ += n;
    self->out_bytes_ -= n;
    self->out_.pop_front();
    self->write_more();
    self->maybe_loaded();
  });
}

void MigrationDestination::on_control(const proto::MigControl& c) {
  if (finished(progress_.phase)) return;
  const std::string detail(c.detail.begin(), c.detail.end());
  switch (c.op) {
    case MigOp::kIterationEnd: {
      progress_.iteration = c.iteration;
      IterationRecord it;
      it.iteration = c.iteration;
      it.pages_sent = c.pages_sent;
      it.pages_dirtied = c.pages_dirtied;
      it.pages_remaining = c.pages_remaining;
      it.end_ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
      progress_.iterations.push_back(it);
      break;
    }
    case MigOp::kStopAndCopy:
      progress_.phase = MigrationPhase::kStopAndCopy;
      if (s_.send_garp) s_.send_garp();
      break;
    case MigOp::kComplete: {
      auto j = nlohmann::json::parse(detail, nullptr, false);
      if (j.is_discarded() || !j.contains("stream_bytes") || !j["stream_bytes"].is_number_unsigned())
        return fail("COMPLETE without a stream length", true);
      expected_bytes_ = j["stream_bytes"].get<int64_t>();
      expected_disk_seq_ = j.value("disk_seq", int64_t{0});
      progress_.phase = MigrationPhase::kSwitchover;
      maybe_loaded();
      break;
    }
    case MigOp::kCommit: {
      if (!loaded_sent_) return fail("COMMIT before the VM was loaded", true);
      timeout_.cancel();
      if (!s_.disks.empty()) {
        // These images now equal the source's: the generation both keep.
        auto j = nlohmann::json::parse(detail, nullptr, false);
        const std::string g = j.is_object() ? j.value("disk_generation", std::string()) : std::string();
        for (auto& d : s_.disks)
          if (auto r = g.empty() ? d->drop_generation() : d->set_generation(g); !r)
            spdlog::warn("incoming {}: {}", s_.options.vm, r.error().detail);
        if (disk_) disk_->stop();
      }
      auto self = shared_from_this();
      if (s_.options.paused) {
        // The VM is ours, paused, as the operator asked.
        send_control(MigOp::kResumed, {{"paused", true}});
        progress_.switchover_ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
        return finish(MigrationPhase::kDone);
      }
      vm_.qmp->execute("cont", nlohmann::json::object(), [self](proto::Result<nlohmann::json> r) {
        if (finished(self->progress_.phase)) return;
        // Not running here: the source may take the VM back.
        if (!r) return self->fail("cont after COMMIT failed: " + r.error().detail, true);
        if (self->s_.fault_drop_resumed) spdlog::warn("incoming {}: fault injection: RESUMED not sent", self->s_.options.vm);
        else self->send_control(MigOp::kResumed);
        self->progress_.switchover_ms =
            std::chrono::duration<double, std::milli>(Clock::now() - self->started_).count();
        self->finish(MigrationPhase::kDone);
      });
      break;
    }
    case MigOp::kCancel: {
      auto j = nlohmann::json::parse(detail, nullptr, false);
      fail("source cancelled: " + (j.is_object() ? j.value("reason", std::string("no reason")) : detail), false);
      break;
    }
    default: break;
  }
}

void MigrationDestination::on_qmp_event(const std::string& event, const nlohmann::json& data) {
  if (finished(progress_.phase) || event != "MIGRATION") return;
  const std::string status = data.value("status", "");
  if (status == "completed") {
    qemu_loaded_ = true;
    maybe_loaded();
  } else if (status == "failed") {
    fail("the incoming VM could not load the stream (QEMU: failed)", true);
  }
}

void MigrationDestination::maybe_loaded() {
  if (loaded_sent_ || !qemu_loaded_ || expected_bytes_ < 0) return;
  if (written_ != static_cast<uint64_t>(expected_bytes_) || decoder_->stream_offset() != written_) {
    if (out_.empty() && !writing_)
      fail("QEMU finished loading, but the stream was " + std::to_string(written_) + " bytes of " +
               std::to_string(expected_bytes_),
           true);
    return;
  }
  // Every disk write the source sent is applied and durable here (acked:
  // the source waited for that before COMPLETE).
  if (disk_ && disk_->applied_seq() != static_cast<uint64_t>(expected_disk_seq_))
    return fail("the source's disks ended at write " + std::to_string(expected_disk_seq_) + ", this copy at " +
                    std::to_string(disk_->applied_seq()),
                true);
  loaded_sent_ = true;
  send_control(MigOp::kLoaded);
  // Without COMMIT the VM stays paused here; after the source's own
  // timeouts have surely rolled back, give the paused copy up.
  arm_timeout(s_.options.switchover_timeout + s_.options.wan_timeout + std::chrono::seconds(30),
              "no COMMIT from the source");
}

void MigrationDestination::arm_timeout(std::chrono::seconds after, std::string why) {
  auto self = shared_from_this();
  timeout_.expires_after(after);
  timeout_.async_wait([self, why](boost::system::error_code ec) {
    if (!ec) self->fail(why, true);
  });
}

void MigrationDestination::on_session_state(wan::SessionState st) {
  if (finished(progress_.phase)) return;
  if (st == wan::SessionState::kReset || st == wan::SessionState::kClosed) {
    if (loaded_sent_) return;  // waiting for COMMIT or the timeout: never run without it
    fail("the channel to the source was lost", false);
  }
}

void MigrationDestination::fail(const std::string& why, bool tell_source) {
  if (finished(progress_.phase)) return;
  spdlog::warn("incoming {}: rolled back: {}", s_.options.vm, why);
  progress_.error = why;
  if (tell_source) send_control(MigOp::kCancel, {{"reason", why}});
  finish(MigrationPhase::kRolledBack);
}

void MigrationDestination::finish(MigrationPhase phase) {
  progress_.phase = phase;
  progress_.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
  progress_.codec = decoder_->stats();
  if (disk_) disk_->stop();
  timeout_.cancel();
  boost::system::error_code ec;
  qemu_.close(ec);
  out_.clear();
  if (phase == MigrationPhase::kRolledBack && s_.discard_vm) s_.discard_vm();
  if (done_) {
    auto done = std::move(done_);
    done(progress_);
  }
}

}  // namespace tideway::agent
