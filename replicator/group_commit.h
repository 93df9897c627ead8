// Group commit: the intake hands over records; a journal thread writes
// whatever has accumulated as one batch, fdatasyncs it, and only then
// reports it durable (and the replicator acks). While one fdatasync runs
// the next batch fills, so the fsync rate adapts to the load by itself.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/messages.h"
#include "replicator/journal.h"

namespace tideway::replicator {

struct DurableBatch {
  std::map<uint32_t, uint64_t> last_seq;  // per writer, highest seq now durable
  JournalPosition end;                    // the journal is durable up to here
  uint64_t records = 0;
};

struct GroupCommitStats {
  uint64_t batches = 0, records = 0, bytes = 0;
  uint64_t pending_bytes = 0;
  double last_sync_ms = 0;
  std::string error;  // set once the journal failed: intake stops for good
};

class GroupCommit {
 public:
  using OnDurable = std::function<void(const DurableBatch&)>;
  // `on_durable` runs on the journal thread.
  GroupCommit(Journal& journal, uint64_t max_pending_bytes, OnDurable on_durable);
  ~GroupCommit();
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Queues the record. Blocks while `max_pending_bytes` wait (backpressure
  // down to TCP). False once the journal has failed.
  bool submit(const proto::ReplWrite& w);
  // Blocks until everything submitted before the call is durable and its
  // on_durable has returned. False if the journal failed or we stopped.
  bool flush();
  void stop();
  GroupCommitStats stats() const;

 private:
  void run();

  Journal& journal_;
  const uint64_t max_pending_;
  OnDurable on_durable_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, room_cv_;
  std::vector<uint8_t> pending_;                 // encoded records
  std::map<uint32_t, uint64_t> pending_last_;    // per writer
  uint64_t pending_records_ = 0;
  uint64_t submitted_ = 0, completed_ = 0;  // records handed in / durable
  std::condition_variable done_cv_;
  bool stop_ = false;
  bool finished_ = false;  // the journal thread has exited
  GroupCommitStats stats_;
  std::thread thread_;
};

}  // namespace tideway::replicator
