// A VM disk the agent serves (NBD) and can migrate: the image file, the
// record of blocks written since the image was last identical to a copy
// at another site (its generation), and the hooks a disk migration needs.
//
// Generations make the incremental return safe. When a migration's disk
// copy completes, both images hold the same bytes and get the same random
// generation id; from then on the running side marks what its VM writes.
// A later migration to a site whose image still has that generation and
// was not written since sends only the marked blocks. The generation and
// the map live in a sidecar (IMAGE.tideway.json, IMAGE.tideway-dirty)
// written on a clean close; while the VM runs the sidecar says "in use",
// so after a crash the map is not trusted and the next copy is full.
//
// Threading: the block calls come from the NBD server's thread, the rest
// from the agent's io thread; one mutex guards the maps and the mirror. A
// mirrored write completes on the thread that acks it.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/block_target.h"
#include "agent/dirty_map.h"
#include "agent/local_volume.h"
#include "proto/messages.h"
#include "proto/result.h"

namespace tideway::agent {

class VmDisk final : public BlockTarget {
 public:
  // Opens the image (creating it sparse at create_size if missing) and
  // reads its sidecar; then marks it in use.
  static proto::Result<std::unique_ptr<VmDisk>> open(const std::string& path, uint64_t create_size = 0);
  // Closes as close() would (errors logged).
  ~VmDisk() override;
  VmDisk(const VmDisk&) = delete;
  VmDisk& operator=(const VmDisk&) = delete;

  uint64_t size() const override { return volume_->size(); }
  int read(uint64_t offset, std::span<uint8_t> out) override { return volume_->read(offset, out); }
  void write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) override;
  void flush(IoDone done) override;
  void discard(uint64_t offset, uint64_t length, IoDone done) override;

  // The generation this image holds ("" = none: never copied, or not
  // trusted) and what was written since it.
  const std::string& generation() const { return generation_; }
  DirtyMap since_generation() const;  // a copy
  uint64_t blocks_written_since() const;  // its count, without the copy
  // This image now equals the peer's at generation `g`: the map restarts
  // empty. Persisted at once (still in use).
  proto::Result<void> set_generation(const std::string& g);
  // The image is about to be overwritten by an incoming copy: forget the
  // generation (persisted at once, so a crash mid-copy leaves none).
  proto::Result<void> drop_generation();
  // A fresh random generation id (16 hex digits).
  static std::string new_generation();

  // A migration's working set (copy passes): `initial`, plus every
  // block written until end_copy(). take_run() hands out runs of it.
  void begin_copy(DirtyMap initial);
  bool take_run(uint64_t from, uint64_t max_blocks, uint64_t& offset, uint64_t& length);
  uint64_t pending_blocks() const;
  void end_copy();
  // Every block of the image that holds data (holes are skipped).
  DirtyMap data_map() const;

  // Synchronous mirroring to a migration's destination. While on, each
  // write or discard is done locally, queued (with a copy of its data) for
  // take_mirrored(), and completes only at mirror_acked() of its id, or
  // when the mirror is turned off (with success: the local write stands).
  struct Mirrored {
    uint64_t id = 0;
    proto::WriteOp op = proto::WriteOp::kWrite;
    uint64_t offset = 0, length = 0;
    std::vector<uint8_t> data;  // kWrite only
  };
  // `notify` runs (on the writer's thread) after each queued write.
  void mirror_on(std::function<void()> notify);
  void mirror_off();
  bool take_mirrored(Mirrored& out);
  void mirror_acked(uint64_t id);
  // Writes queued or waiting for their ack.
  bool mirror_queued() const;

  // The local image, for the incoming copy's applier (its writes are not
  // the VM's: they mark nothing).
  LocalVolume& volume() { return *volume_; }
  const std::string& path() const { return volume_->path(); }

  // Saves the map and marks the sidecar clean. Idempotent.
  proto::Result<void> close();

 private:
  explicit VmDisk(std::unique_ptr<LocalVolume> v);
  // After a local write or discard: marks the maps; with the mirror on,
  // queues it and keeps `done` (true), else false.
  bool note_write(proto::WriteOp op, uint64_t offset, uint64_t length, std::span<const uint8_t> data, IoDone& done);
  proto::Result<void> write_sidecar(bool clean);
  std::string sidecar() const { return path() + ".tideway.json"; }
  std::string map_path() const { return path() + ".tideway-dirty"; }

  std::unique_ptr<LocalVolume> volume_;
  mutable std::mutex mu_;
  std::string generation_;
  DirtyMap since_;
  std::optional<DirtyMap> pending_;
  bool mirroring_ = false;
  std::function<void()> notify_;
  uint64_t next_id_ = 1;
  std::deque<Mirrored> mirror_out_;
  std::deque<std::pair<uint64_t, IoDone>> mirror_waiting_;
  bool closed_ = false;
};

}  // namespace tideway::agent
