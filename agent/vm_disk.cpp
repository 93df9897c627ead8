#include "agent/vm_disk.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "wan/file_io.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

proto::Result<std::unique_ptr<VmDisk>> VmDisk::open(const std::string& path, uint64_t create_size) {
  auto v = LocalVolume::open(path, create_size);
  if (!v) return v.error();
  std::unique_ptr<VmDisk> d(new VmDisk(std::move(v).value()));
  // The sidecar is trusted only after a clean close, and only with a map
  // that loads: anything else means writes may be unaccounted for.
  std::ifstream in(d->sidecar());
  if (in) {
    auto j = nlohmann::json::parse(in, nullptr, false);
    const bool clean = j.is_object() && j.value("clean", false) && j.value("size", uint64_t{0}) == d->size();
    const std::string g = j.is_object() ? j.value("generation", std::string()) : std::string();
    if (clean && !g.empty()) {
      if (auto m = DirtyMap::load(d->map_path(), d->size())) {
        d->generation_ = g;
        d->since_ = std::move(m).value();
      } else {
        spdlog::warn("disk {}: generation {} dropped: {}", path, g, m.error().detail);
      }
    } else if (!g.empty()) {
      spdlog::warn("disk {}: generation {} dropped: not closed cleanly (the next copy is full)", path, g);
    }
  }
  if (auto r = d->write_sidecar(false); !r) return r.error();
  return d;
}

VmDisk::VmDisk(std::unique_ptr<LocalVolume> v) : volume_(std::move(v)), since_(volume_->size()) {}

VmDisk::~VmDisk() {
  if (auto r = close(); !r) spdlog::warn("disk {}: {}", path(), r.error().detail);
}

std::string VmDisk::new_generation() {
  std::random_device rd;
  const uint64_t g = (uint64_t{rd()} << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(g));
  return buf;
}

bool VmDisk::note_write(proto::WriteOp op, uint64_t offset, uint64_t length, std::span<const uint8_t> data,
                        IoDone& done) {
  std::lock_guard lock(mu_);
  since_.mark(offset, length);
  if (pending_) pending_->mark(offset, length);
  if (!mirroring_) return false;
  Mirrored m;
  m.id = next_id_++;
  m.op = op;
  m.offset = offset;
  m.length = length;
  m.data.assign(data.begin(), data.end());
  mirror_out_.push_back(std::move(m));
  mirror_waiting_.emplace_back(mirror_out_.back().id, std::move(done));
  if (notify_) notify_();
  return true;
}

void VmDisk::write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) {
  if (!in_range(offset, data.size())) return done(EINVAL);
  int e = volume_->pwrite_all(offset, data);
  if (e == 0 && fua) e = volume_->sync();
  if (e != 0) return done(e);
  if (!note_write(proto::WriteOp::kWrite, offset, data.size(), data, done)) done(0);
}

void VmDisk::flush(IoDone done) { done(volume_->sync()); }

void VmDisk::discard(uint64_t offset, uint64_t length, IoDone done) {
  if (!in_range(offset, length)) return done(EINVAL);
  if (int e = volume_->punch(offset, length); e != 0) return done(e);
  if (!note_write(proto::WriteOp::kDiscard, offset, length, {}, done)) done(0);
}

DirtyMap VmDisk::since_generation() const {
  std::lock_guard lock(mu_);
  return since_;
}

uint64_t VmDisk::blocks_written_since() const {
  std::lock_guard lock(mu_);
  return since_.dirty_blocks();
}

void VmDisk::begin_copy(DirtyMap initial) {
  assert(initial.disk_bytes() == size());
  std::lock_guard lock(mu_);
  pending_ = std::move(initial);
}

bool VmDisk::take_run(uint64_t from, uint64_t max_blocks, uint64_t& offset, uint64_t& length) {
  std::lock_guard lock(mu_);
  return pending_ && pending_->take_run(from, max_blocks, offset, length);
}

uint64_t VmDisk::pending_blocks() const {
  std::lock_guard lock(mu_);
  return pending_ ? pending_->dirty_blocks() : 0;
}

void VmDisk::end_copy() {
  std::lock_guard lock(mu_);
  pending_.reset();
}

DirtyMap VmDisk::data_map() const {
  DirtyMap m(size());
  uint64_t from = 0, start = 0, end = 0;
  while (volume_->next_data(from, start, end)) {
    m.mark(start, end - start);
    from = end;
  }
  return m;
}

void VmDisk::mirror_on(std::function<void()> notify) {
  std::lock_guard lock(mu_);
  mirroring_ = true;
  notify_ = std::move(notify);
}

void VmDisk::mirror_off() {
  std::deque<std::pair<uint64_t, IoDone>> waiting;
  {
    std::lock_guard lock(mu_);
    mirroring_ = false;
    notify_ = nullptr;
    mirror_out_.clear();
    waiting.swap(mirror_waiting_);
  }
  for (auto& [id, done] : waiting) done(0);
}

bool VmDisk::take_mirrored(Mirrored& out) {
  std::lock_guard lock(mu_);
  if (mirror_out_.empty()) return false;
  out = std::move(mirror_out_.front());
  mirror_out_.pop_front();
  return true;
}

bool VmDisk::mirror_queued() const {
  std::lock_guard lock(mu_);
  return !mirror_out_.empty() || !mirror_waiting_.empty();
}

void VmDisk::mirror_acked(uint64_t id) {
  std::vector<IoDone> done;
  {
    std::lock_guard lock(mu_);
    while (!mirror_waiting_.empty() && mirror_waiting_.front().first <= id) {
      done.push_back(std::move(mirror_waiting_.front().second));
      mirror_waiting_.pop_front();
    }
  }
  for (auto& d : done) d(0);
}

proto::Result<void> VmDisk::set_generation(const std::string& g) {
  {
    std::lock_guard lock(mu_);
    generation_ = g;
    since_.clear();
  }
  return write_sidecar(false);
}

proto::Result<void> VmDisk::drop_generation() { return set_generation(""); }

proto::Result<void> VmDisk::write_sidecar(bool clean) {
  nlohmann::json j;
  {
    std::lock_guard lock(mu_);
    j = {{"generation", generation_}, {"clean", clean}, {"size", size()}, {"dirty_blocks", since_.dirty_blocks()}};
  }
  const std::string text = j.dump() + "\n";
  if (int e = wan::write_file_atomic(sidecar(), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
      e != 0)
    return Error{Errc::kSystem, "write " + sidecar() + ": " + std::strerror(e)};
  return {};
}

proto::Result<void> VmDisk::close() {
  if (closed_) return {};
  closed_ = true;
  mirror_off();
  end_copy();
  if (int e = volume_->sync(); e != 0) return Error{Errc::kSystem, "fdatasync " + path() + ": " + std::strerror(e)};
  if (!generation_.empty()) {
    std::lock_guard lock(mu_);
    if (auto r = since_.save(map_path()); !r) return r;
  }
  return write_sidecar(!generation_.empty());
}

}  // namespace tideway::agent
