// What `tideway protect` asks for: one protected instance (VM or container)
// with its volume, its tap, its network and its backup site. Persisted as
// JSON under the agent's data_dir so protection resumes after a restart.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/protected_volume.h"
#include "proto/result.h"

namespace tideway::agent {

enum class TapKind { kFuse, kNbd };

struct ProtectionSpec {
  std::string name;            // [A-Za-z0-9_.-]{1,64}: also the backup volume's name
  std::string backup;          // backup site, as named in the agent config
  std::string volume;          // backing file or block device
  uint64_t size = 0;           // create the file at this size if missing (0: must exist)
  TapKind tap = TapKind::kFuse;
  std::string mount;           // fuse: mount point (the file appears as MOUNT/disk.img)
  std::string nbd_socket;      // nbd: unix socket path
  Mode mode = Mode::kPipelined;
  std::string app_iface;       // interface toward the protected namespace ("" = no holder)
  uint16_t queue = 0;          // NFQUEUE number for the holder
  uint64_t epoch = 0;          // bumped at every start (seqs of each run are above the last)
};

// Validates every field; errors name the field and say what is expected.
proto::Result<ProtectionSpec> spec_from_json(const nlohmann::json& j);
nlohmann::json spec_to_json(const ProtectionSpec& s);
const char* tap_name(TapKind t);

}  // namespace tideway::agent
