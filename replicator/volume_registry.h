// The backup volumes this replicator holds: DIR/NAME.img (sparse, the
// protected volume's size) and DIR/NAME.json (writer, volume, size), one
// pair per protected volume, created when an agent first attaches it.
//
// A later attach must match: same name for the same (writer, volume), same
// size. A mismatch is refused, never "fixed" by resizing or renaming, so
// two agents that picked the same ids cannot overwrite each other.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proto/messages.h"
#include "proto/result.h"

namespace tideway::replicator {

struct BackupVolume {
  uint32_t writer = 0;
  uint32_t volume = 0;
  std::string name;
  uint64_t size = 0;
  std::string path;  // the image
  int fd = -1;       // open read-write for the applier
};

class VolumeRegistry {
 public:
  static proto::Result<std::unique_ptr<VolumeRegistry>> open(const std::string& dir);
  ~VolumeRegistry();
  VolumeRegistry(const VolumeRegistry&) = delete;
  VolumeRegistry& operator=(const VolumeRegistry&) = delete;

  // Creates the volume or checks it against what is recorded.
  proto::Result<BackupVolume*> attach(const proto::ReplAttach& a);
  // Pointers stay valid for the registry's lifetime.
  BackupVolume* find(uint32_t writer, uint32_t volume) const;
  BackupVolume* find(const std::string& name) const;
  std::vector<BackupVolume*> all() const;

 private:
  explicit VolumeRegistry(std::string dir) : dir_(std::move(dir)) {}
  proto::Result<void> load();

  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::pair<uint32_t, uint32_t>, std::unique_ptr<BackupVolume>> volumes_;
};

}  // namespace tideway::replicator
