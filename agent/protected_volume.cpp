#include "agent/protected_volume.h"

#include <algorithm>
#include <cerrno>

namespace tideway::agent {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kPipelined: return "pipelined";
    case Mode::kSync: return "sync";
    case Mode::kAsync: return "async";
  }
  return "?";
}

proto::Result<Mode> parse_mode(const std::string& s) {
  if (s == "pipelined") return Mode::kPipelined;
  if (s == "sync") return Mode::kSync;
  if (s == "async") return Mode::kAsync;
  return {proto::Errc::kInvalid, "unknown mode \"" + s + "\" (pipelined, sync or async)"};
}

ProtectedVolume::ProtectedVolume(std::unique_ptr<LocalVolume> local, std::shared_ptr<WriteLog> log, uint32_t volume,
                                 Mode mode)
    : local_(std::move(local)), log_(std::move(log)), volume_(volume), mode_(mode) {}

void ProtectedVolume::complete(uint64_t seq, int err, IoDone done) {
  if (err != 0 || seq == 0) {
    done(err != 0 ? err : EIO);
    return;
  }
  if (mode_ == Mode::kSync) {
    log_->when_committed(seq, std::move(done));
  } else {
    done(0);
  }
}

void ProtectedVolume::write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) {
  if (!in_range(offset, data.size()) || data.empty()) {
    done(EINVAL);
    return;
  }
  uint64_t seq = 0;
  int err = 0;
  {
    std::lock_guard lock(order_mu_);
    err = local_->pwrite_all(offset, data);
    // A failed local write is not replicated: the guest sees the error.
    for (size_t off = 0; err == 0 && off < data.size(); off += proto::kMaxWriteLen) {
      const size_t n = std::min<size_t>(proto::kMaxWriteLen, data.size() - off);
      seq = log_->issue(volume_, proto::WriteOp::kWrite, fua ? uint32_t{proto::kWriteFua} : 0u, offset + off,
                        static_cast<uint32_t>(n), data.subspan(off, n));
      if (seq == 0) err = EIO;
    }
  }
  // FUA: durable locally before completion (outside the order lock: a
  // fdatasync must not stall other writers).
  if (err == 0 && fua) err = local_->sync();
  complete(seq, err, std::move(done));
}

void ProtectedVolume::flush(IoDone done) {
  const uint64_t covered = log_->pending();  // every write completed before this call
  int err = local_->sync();
  if (err != 0) {
    done(err);
    return;
  }
  if (mode_ == Mode::kSync && covered > log_->committed()) {
    log_->when_committed(covered, std::move(done));
  } else {
    done(0);
  }
}

void ProtectedVolume::discard(uint64_t offset, uint64_t length, IoDone done) {
  if (!in_range(offset, length)) {
    done(EINVAL);
    return;
  }
  if (length == 0) {
    done(0);
    return;
  }
  uint64_t seq = 0;
  int err = 0;
  {
    std::lock_guard lock(order_mu_);
    err = local_->punch(offset, length);
    for (uint64_t off = 0; err == 0 && off < length; off += proto::kMaxWriteLen) {
      const uint64_t n = std::min<uint64_t>(proto::kMaxWriteLen, length - off);
      seq = log_->issue(volume_, proto::WriteOp::kDiscard, 0, offset + off, static_cast<uint32_t>(n), {});
      if (seq == 0) err = EIO;
    }
  }
  complete(seq, err, std::move(done));
}

}  // namespace tideway::agent
