// The applier: copies durable journal records onto the backup volumes in
// journal order, syncs the volumes, records a checkpoint and trims the
// journal behind it. It runs on its own thread and never holds up acks:
// the ack only waits for the journal (seeds/004 7.4.4: ack on log
// durability, apply later).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "replicator/checkpoint.h"
#include "replicator/journal.h"
#include "replicator/volume_registry.h"

namespace tideway::replicator {

struct ApplierOptions {
  std::string checkpoint_path;
  uint64_t sync_bytes = 64ull << 20;             // sync volumes after this much ...
  std::chrono::milliseconds sync_interval{1000};  // ... or this long
  // Once records are waiting, let more arrive before reading them back:
  // one journal read per round, not one per group-commit batch.
  std::chrono::milliseconds apply_delay{10};
};

struct ApplierStats {
  JournalPosition applied;                 // applied (maybe not yet synced)
  JournalPosition target;                  // durable end of the journal
  Checkpoint checkpoint;                   // applied and synced
  uint64_t records = 0, bytes = 0;
  std::string error;                       // the applier stopped on this
};

class Applier {
 public:
  Applier(Journal& journal, VolumeRegistry& volumes, ApplierOptions opts, Checkpoint start);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // The journal is durable up to `end`: apply up to there.
  void durable_to(JournalPosition end);
  // Blocks until everything durable so far is applied, synced and
  // checkpointed. False (with stats().error) if the applier failed.
  bool drain();
  void stop();
  ApplierStats stats() const;

 private:
  void run();
  bool apply(const proto::JournalRecord& r);
  bool sync_and_checkpoint();

  Journal& journal_;
  VolumeRegistry& volumes_;
  const ApplierOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_, drained_cv_;
  bool stop_ = false;
  uint64_t drain_requests_ = 0, drains_done_ = 0;
  ApplierStats stats_;
  // Applier thread only:
  std::set<int> dirty_fds_;
  std::map<uint32_t, uint64_t> applied_seq_;
  uint64_t bytes_since_sync_ = 0;
  std::chrono::steady_clock::time_point last_sync_;
  std::thread thread_;
};

}  // namespace tideway::replicator
