#include "agent/disk_copy_source.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <cassert>
#include <cstring>

#include "wan/mig_streams.h"

namespace tideway::agent {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using proto::WriteOp;

namespace {
constexpr uint64_t kRunBlocks = proto::kMaxWriteLen / DirtyMap::kBlock;  // one REPL_WRITE
constexpr int kMessagesPerTurn = 32;  // then yield the io thread
constexpr uint64_t kMaxDiscard = uint64_t{1} << 30;
}  // namespace

proto::Result<std::shared_ptr<DiskCopySource>> DiskCopySource::create(asio::io_context& io, Setup setup) {
  assert(setup.session && !setup.disks.empty() && setup.incremental.size() == setup.disks.size());
  auto enc = WriteEncoder::create(setup.codec);
  if (!enc) return enc.error();
  return std::shared_ptr<DiskCopySource>(new DiskCopySource(io, std::move(setup), std::move(enc).value()));
}

DiskCopySource::DiskCopySource(asio::io_context& io, Setup setup, std::unique_ptr<WriteEncoder> enc)
    : io_(io), s_(std::move(setup)), encoder_(std::move(enc)) {
  progress_.active = true;
  bool any_full = false, any_incremental = false;
  for (size_t i = 0; i < s_.disks.size(); ++i) {
    progress_.disk_bytes += s_.disks[i]->size();
    (s_.incremental[i] ? any_incremental : any_full) = true;
  }
  progress_.mode = any_full && any_incremental ? "mixed" : any_incremental ? "incremental" : "full";
}

double DiskCopySource::ms() const { return std::chrono::duration<double, std::milli>(Clock::now() - started_).count(); }

void DiskCopySource::start(Ready ready) {
  assert(phase_ == Phase::kIdle);
  ready_ = std::move(ready);
  started_ = Clock::now();
  for (size_t i = 0; i < s_.disks.size(); ++i) {
    auto& d = *s_.disks[i];
    DirtyMap initial = s_.incremental[i] ? d.since_generation() : d.data_map();
    progress_.blocks_to_copy += initial.dirty_blocks();
    d.begin_copy(std::move(initial));
  }
  spdlog::info("migration {}: disk copy ({}): {} blocks of {} bytes", s_.migration, progress_.mode,
               progress_.blocks_to_copy, progress_.disk_bytes);
  phase_ = Phase::kBulk;
  pass_ = 1;
  pump();
}

void DiskCopySource::pump() {
  pump_posted_ = false;
  if (phase_ == Phase::kIdle || phase_ == Phase::kStopped) return;
  for (int n = 0; n < kMessagesPerTurn; ++n) {
    if (!send_held() || !send_mirrored()) return;  // on_writable resumes
    if (phase_ != Phase::kBulk && phase_ != Phase::kFinalPass) return;
    bool pass_done = false;
    if (!send_next_run(pass_done)) return;
    if (pass_done) end_pass();
  }
  if (!pump_posted_) {
    pump_posted_ = true;
    asio::post(io_, [w = weak_from_this()] {
      if (auto self = w.lock()) self->pump();
    });
  }
}

bool DiskCopySource::send_held() {
  while (!held_.empty()) {
    if (!s_.session->send(wan::kMigDiskStream, proto::MessageType::kReplWrite, held_.front())) return false;
    held_.pop_front();
  }
  return true;
}

bool DiskCopySource::send_mirrored() {
  VmDisk::Mirrored m;
  for (size_t i = 0; i < s_.disks.size(); ++i) {
    while (s_.disks[i]->take_mirrored(m)) {
      ++progress_.mirrored_writes;
      progress_.mirrored_bytes += m.length;
      // Split into what one REPL_WRITE carries; the ack of the last piece
      // completes the VM's write.
      for (uint64_t off = 0; off < m.length;) {
        const uint64_t max = m.op == WriteOp::kWrite ? proto::kMaxWriteLen : kMaxDiscard;
        const uint64_t n = std::min(max, m.length - off);
        auto data = m.op == WriteOp::kWrite ? std::span<const uint8_t>(m.data).subspan(off, n)
                                            : std::span<const uint8_t>();
        queue_write(i, m.op, proto::kWriteFua, m.offset + off, data, n);
        off += n;
      }
      awaiting_.push_back({seq_, i, m.id});
    }
  }
  return held_.empty();
}

bool DiskCopySource::send_next_run(bool& pass_done) {
  static thread_local std::vector<uint8_t> buf(proto::kMaxWriteLen);
  while (cursor_disk_ < s_.disks.size()) {
    auto& d = *s_.disks[cursor_disk_];
    uint64_t offset = 0, length = 0;
    if (!d.take_run(cursor_, kRunBlocks, offset, length)) {
      ++cursor_disk_;
      cursor_ = 0;
      continue;
    }
    cursor_ = offset + length;
    if (int e = d.read(offset, std::span<uint8_t>(buf.data(), length)); e != 0) {
      fail("reading " + d.path() + " at " + std::to_string(offset) + ": " + std::strerror(e));
      return false;
    }
    pass_blocks_ += length / DirtyMap::kBlock;
    progress_.blocks_sent += length / DirtyMap::kBlock;
    progress_.bytes_sent += length;
    queue_write(cursor_disk_, WriteOp::kWrite, 0, offset, std::span<const uint8_t>(buf.data(), length), length);
    return held_.empty();
  }
  pass_done = true;
  return true;
}

void DiskCopySource::queue_write(size_t disk, WriteOp op, uint32_t flags, uint64_t offset,
                                 std::span<const uint8_t> data, uint64_t length) {
  proto::ReplWrite w;
  w.writer = s_.migration;
  w.volume = static_cast<uint32_t>(disk);
  w.seq = ++seq_;
  w.op = op;
  w.flags = flags;
  w.offset = offset;
  w.length = static_cast<uint32_t>(length);
  std::vector<uint8_t> encoded;
  if (op == WriteOp::kWrite) {
    w.data = data;
    if (proto::repl_encodable(op, w.volume, offset, w.length)) {
      if (encoder_->encode(w.volume, offset, data, encoded)) {
        w.flags |= proto::kWriteEncoded;
        w.data = encoded;
      } else {
        encoder_->count_raw(op, w.length);
      }
    } else {
      encoder_->count_raw(op, w.length);
    }
  }
  auto payload = proto::encode_payload(w);
  progress_.wire_bytes += payload.size();
  progress_.codec = encoder_->stats();
  // Order is the disk stream's: nothing overtakes a held message.
  if (held_.empty() && s_.session->send(wan::kMigDiskStream, proto::MessageType::kReplWrite, payload)) return;
  held_.push_back(std::move(payload));
}

void DiskCopySource::end_pass() {
  uint64_t left = 0;
  for (const auto& d : s_.disks) left += d->pending_blocks();
  DiskPassRecord r;
  r.pass = pass_;
  r.blocks_sent = pass_blocks_;
  r.blocks_dirtied = left;
  r.wire_bytes = progress_.wire_bytes - pass_wire_base_;
  r.end_ms = ms();
  progress_.passes.push_back(r);
  spdlog::info("migration {}: disk pass {}: {} blocks sent, {} written meanwhile", s_.migration, pass_,
               pass_blocks_, left);
  pass_blocks_ = 0;
  pass_wire_base_ = progress_.wire_bytes;
  cursor_disk_ = 0;
  cursor_ = 0;
  ++pass_;
  if (phase_ == Phase::kBulk) {
    if (left > s_.converge_blocks && pass_ <= s_.max_passes) return;
    // From now on the VM's writes wait for the destination.
    phase_ = Phase::kFinalPass;
    for (auto& d : s_.disks)
      d->mirror_on([w = weak_from_this(), &io = io_] {
        asio::post(io, [w] {
          if (auto self = w.lock()) self->pump();
        });
      });
    return;
  }
  assert(phase_ == Phase::kFinalPass);
  for (auto& d : s_.disks) d->end_copy();
  phase_ = Phase::kFlushing;
  flush_seq_ = seq_;
  proto::ReplFlush f;
  f.writer = s_.migration;
  f.seq = flush_seq_;
  // Retention has room for a flush even when writes are held back: it is
  // tiny; if not, the ack never comes and the migration's timeouts act.
  if (!s_.session->send(wan::kMigDiskStream, f)) fail("the disk stream refused the final flush");
}

void DiskCopySource::on_ack(const proto::ReplAck& ack) {
  if (ack.writer != s_.migration || phase_ == Phase::kStopped) return;
  if (ack.seq > seq_) return fail("the destination acknowledged disk writes never sent");
  while (!awaiting_.empty() && awaiting_.front().seq <= ack.seq) {
    s_.disks[awaiting_.front().disk]->mirror_acked(awaiting_.front().mirror_id);
    awaiting_.pop_front();
  }
  if (phase_ == Phase::kFlushing && ack.seq >= flush_seq_) {
    phase_ = Phase::kMirroring;
    progress_.copy_ms = ms();
    spdlog::info("migration {}: disks copied in {:.0f} ms ({} blocks, {} bytes on the wire); mirroring writes",
                 s_.migration, progress_.copy_ms, progress_.blocks_sent, progress_.wire_bytes);
    if (ready_) std::exchange(ready_, nullptr)(proto::Result<void>{});
  }
}

bool DiskCopySource::settled() const {
  if (phase_ != Phase::kMirroring || !awaiting_.empty() || !held_.empty()) return false;
  for (const auto& d : s_.disks)
    if (d->mirror_queued()) return false;
  return true;
}

void DiskCopySource::fail(const std::string& why) {
  if (phase_ == Phase::kStopped) return;
  spdlog::warn("migration {}: disk copy failed: {}", s_.migration, why);
  stop();
  if (ready_) std::exchange(ready_, nullptr)(proto::Error{proto::Errc::kSystem, why});
}

void DiskCopySource::stop() {
  if (phase_ == Phase::kStopped) return;
  phase_ = Phase::kStopped;
  for (auto& d : s_.disks) {
    d->mirror_off();
    d->end_copy();
  }
  awaiting_.clear();
  held_.clear();
}

}  // namespace tideway::agent
