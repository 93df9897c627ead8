// How far the applier got: the journal position up to which every record
// is applied and synced to the backup volumes, and the last applied seq of
// each writer. Saved atomically (temp file, fsync, rename, dir fsync): after
// a crash it is either the old or the new checkpoint, both safe, because
// replaying a journal record onto a volume twice gives the same bytes.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "proto/result.h"
#include "replicator/journal.h"

namespace tideway::replicator {

struct Checkpoint {
  JournalPosition applied;                  // records before this are applied
  std::map<uint32_t, uint64_t> applied_seq;  // per writer
  bool operator==(const Checkpoint&) const = default;
};

// A missing file is the empty checkpoint; a malformed one is an error.
proto::Result<Checkpoint> load_checkpoint(const std::string& path);
proto::Result<void> save_checkpoint(const std::string& path, const Checkpoint& c);

}  // namespace tideway::replicator
