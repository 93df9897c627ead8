// The writer's log: pending/committed counters, retention until acked,
// backpressure on issue(), and commit waiters (sync mode).
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <future>
#include <mutex>
#include <thread>

#include "agent/write_log.h"
#include "tests/replication/repl_test_util.h"

namespace tideway::testing {
namespace {

using agent::WriteLog;
using proto::WriteOp;
using namespace std::chrono_literals;

std::vector<uint8_t> bytes_of(size_t n, uint8_t fill) { return std::vector<uint8_t>(n, fill); }

uint64_t issue_write(WriteLog& log, uint64_t offset, size_t n, uint8_t fill = 0x5A) {
  auto d = bytes_of(n, fill);
  return log.issue(1, WriteOp::kWrite, 0, offset, static_cast<uint32_t>(n), d);
}

TEST(WriteLog, IssueAssignsSeqsAndNextReturnsThemInOrder) {
  wan::ManualClock clock;
  WriteLog log(7, 4u << 20, clock);
  EXPECT_EQ(log.writer(), 7u);
  EXPECT_EQ(log.pending(), 0u);
  EXPECT_EQ(log.next(1), nullptr);
  for (uint64_t s = 1; s <= 10; ++s) {
    auto d = bytes_of(100 + s, static_cast<uint8_t>(s));
    EXPECT_EQ(log.issue(2, WriteOp::kWrite, s % 2 ? uint32_t{proto::kWriteFua} : 0u, 4096 * s, static_cast<uint32_t>(d.size()), d), s);
    clock.advance(1ms);
  }
  EXPECT_EQ(log.issue(2, WriteOp::kDiscard, 0, 0, 8192, {}), 11u);
  EXPECT_EQ(log.pending(), 11u);
  EXPECT_EQ(log.committed(), 0u);
  // Walk the retention as the shipper does.
  uint64_t next = 1, count = 0;
  while (auto w = log.next(next)) {
    EXPECT_EQ(w->seq, next);
    EXPECT_EQ(w->volume, 2u);
    if (w->seq <= 10) {
      EXPECT_EQ(w->length, 100 + w->seq);
      EXPECT_EQ(w->data, bytes_of(100 + w->seq, static_cast<uint8_t>(w->seq)));
      EXPECT_EQ(w->offset, 4096 * w->seq);
      EXPECT_EQ(w->flags, w->seq % 2 ? uint32_t{proto::kWriteFua} : 0u);
    } else {
      EXPECT_EQ(w->op, WriteOp::kDiscard);
      EXPECT_TRUE(w->data.empty());
    }
    next = w->seq + 1;
    ++count;
  }
  EXPECT_EQ(count, 11u);
  EXPECT_EQ(log.next(12), nullptr);
  // After acks, next() of an acked seq returns the first retained one.
  log.ack_through(4);
  auto w = log.next(2);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->seq, 5u);
  auto st = log.stats();
  EXPECT_EQ(st.unacked_writes, 7u);
  EXPECT_DOUBLE_EQ(st.oldest_unacked_ms, 6.0);  // seq 5 was issued 6 ms before now
}

TEST(WriteLog, AckFreesRetentionAndClampsBeyondPending) {
  wan::ManualClock clock;
  WriteLog log(1, 4u << 20, clock);
  for (int i = 0; i < 5; ++i) issue_write(log, 0, 1000);
  EXPECT_EQ(log.stats().unacked_bytes, 5000u);
  EXPECT_EQ(log.ack_through(2), 2u);
  auto st = log.stats();
  EXPECT_EQ(st.unacked_bytes, 3000u);
  EXPECT_EQ(st.unacked_writes, 3u);
  EXPECT_EQ(st.acked_total, 2u);
  // Older acks do nothing.
  EXPECT_EQ(log.ack_through(1), 2u);
  // An ack beyond what we issued (a previous life of this writer) is
  // clamped: committed never passes pending.
  EXPECT_EQ(log.ack_through(1000), 5u);
  EXPECT_EQ(log.committed(), 5u);
  EXPECT_EQ(log.pending(), 5u);
  st = log.stats();
  EXPECT_EQ(st.unacked_bytes, 0u);
  EXPECT_EQ(st.unacked_writes, 0u);
  EXPECT_EQ(st.oldest_unacked_ms, 0.0);
  // The next write gets seq 6 and is not considered committed.
  EXPECT_EQ(issue_write(log, 0, 10), 6u);
  EXPECT_EQ(log.committed(), 5u);
}

TEST(WriteLog, StartAtResumesCounters) {
  WriteLog log(1, 4u << 20, wan::system_clock());
  log.start_at(41);
  EXPECT_EQ(log.pending(), 41u);
  EXPECT_EQ(log.committed(), 41u);
  EXPECT_EQ(issue_write(log, 0, 10), 42u);
  EXPECT_EQ(log.next(1)->seq, 42u);
}

// Past max_retained_bytes, issue() blocks until an ack frees room.
TEST(WriteLog, IssueBlocksWhenFullAndResumesAfterAck) {
  WriteLog log(1, proto::kMaxWriteLen, wan::system_clock());
  EXPECT_EQ(issue_write(log, 0, proto::kMaxWriteLen / 2), 1u);
  EXPECT_EQ(issue_write(log, 0, proto::kMaxWriteLen / 2), 2u);  // exactly full
  std::atomic<uint64_t> third{0};
  std::thread t([&] { third = issue_write(log, 0, 4096); });
  // It blocks: the log counts it as blocked and assigns it no seq.
  ASSERT_TRUE(wait_until([&] { return log.stats().blocked_total == 1; })) << "issue() did not block";
  EXPECT_EQ(third.load(), 0u);
  EXPECT_EQ(log.pending(), 2u);
  log.ack_through(1);
  t.join();
  EXPECT_EQ(third.load(), 3u);
  EXPECT_EQ(log.pending(), 3u);
  EXPECT_EQ(log.stats().unacked_bytes, proto::kMaxWriteLen / 2 + 4096);
}

TEST(WriteLog, CloseWakesBlockedIssuerWithZero) {
  WriteLog log(1, proto::kMaxWriteLen, wan::system_clock());
  issue_write(log, 0, proto::kMaxWriteLen);
  auto fut = std::async(std::launch::async, [&] { return issue_write(log, 0, 1); });
  ASSERT_TRUE(wait_until([&] { return log.stats().blocked_total == 1; }));
  log.close();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready) << "close() left the issuer blocked";
  EXPECT_EQ(fut.get(), 0u);
  EXPECT_EQ(issue_write(log, 0, 1), 0u) << "issue after close";
  EXPECT_EQ(log.pending(), 1u);
}

struct Calls {
  std::mutex mu;
  std::map<uint64_t, std::vector<int>> results;  // waiter id -> results
  void record(uint64_t id, int err) {
    std::lock_guard lock(mu);
    results[id].push_back(err);
  }
  std::vector<int> of(uint64_t id) {
    std::lock_guard lock(mu);
    return results[id];
  }
};

TEST(WriteLog, WhenCommittedRunsOnceWithZeroAfterCommit) {
  WriteLog log(1, 4u << 20, wan::system_clock());
  for (int i = 0; i < 6; ++i) issue_write(log, 0, 10);
  Calls calls;
  for (uint64_t s = 1; s <= 6; ++s) log.when_committed(s, [&calls, s](int e) { calls.record(s, e); });
  log.when_committed(3, [&calls](int e) { calls.record(33, e); });  // two waiters on one seq
  for (uint64_t s = 1; s <= 6; ++s) EXPECT_TRUE(calls.of(s).empty()) << s;
  log.ack_through(3);
  for (uint64_t s = 1; s <= 3; ++s) EXPECT_EQ(calls.of(s), std::vector<int>{0}) << s;
  EXPECT_EQ(calls.of(33), std::vector<int>{0});
  for (uint64_t s = 4; s <= 6; ++s) EXPECT_TRUE(calls.of(s).empty()) << s;
  log.ack_through(3);  // again: nothing runs twice
  log.ack_through(6);
  for (uint64_t s = 1; s <= 6; ++s) EXPECT_EQ(calls.of(s), std::vector<int>{0}) << s;
  // Already committed: runs at once, with 0.
  log.when_committed(2, [&calls](int e) { calls.record(100, e); });
  EXPECT_EQ(calls.of(100), std::vector<int>{0});
  // close() later does not run finished waiters again.
  log.close();
  for (uint64_t s = 1; s <= 6; ++s) EXPECT_EQ(calls.of(s).size(), 1u) << s;
}

TEST(WriteLog, WhenCommittedFailsWithEioAfterClose) {
  WriteLog log(1, 4u << 20, wan::system_clock());
  for (int i = 0; i < 4; ++i) issue_write(log, 0, 10);
  Calls calls;
  log.ack_through(1);
  log.when_committed(3, [&calls](int e) { calls.record(3, e); });
  log.when_committed(4, [&calls](int e) { calls.record(4, e); });
  log.close();
  EXPECT_EQ(calls.of(3), std::vector<int>{EIO});
  EXPECT_EQ(calls.of(4), std::vector<int>{EIO});
  // An ack after close does not run them again.
  log.ack_through(4);
  EXPECT_EQ(calls.of(3).size(), 1u);
  // Waiting after close: committed ones succeed, the rest fail at once.
  log.when_committed(1, [&calls](int e) { calls.record(10, e); });
  log.when_committed(40, [&calls](int e) { calls.record(40, e); });
  EXPECT_EQ(calls.of(10), std::vector<int>{0});
  EXPECT_EQ(calls.of(40), std::vector<int>{EIO});
}

// Threads: issuers (each registers a commit waiter per write, like sync mode)
// against an io thread that ships in order and acks random prefixes.
// Every waiter runs exactly once with 0, committed never passes pending,
// next() never skips or repeats a seq.
TEST(WriteLog, ConcurrentIssuersShipperAndAcks) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  WriteLog log(1, proto::kMaxWriteLen, wan::system_clock());  // the minimum: issuers block often
  constexpr int kThreads = 4, kPerThread = 300;
  std::atomic<uint64_t> completions{0}, bad{0};
  std::vector<std::thread> issuers;
  for (int t = 0; t < kThreads; ++t) {
    issuers.emplace_back([&, t] {
      std::mt19937_64 rng(seed + static_cast<uint64_t>(t));
      std::vector<std::future<int>> waits;
      for (int i = 0; i < kPerThread; ++i) {
        const size_t n = 1 + rng() % 65536;
        const uint64_t seq = issue_write(log, rng() % (1 << 20), n, static_cast<uint8_t>(t));
        if (seq == 0) {
          bad.fetch_add(1);
          return;
        }
        auto p = std::make_shared<std::promise<int>>();
        waits.push_back(p->get_future());
        auto once = std::make_shared<std::atomic<int>>(0);
        log.when_committed(seq, [&log, &bad, seq, once, p](int e) {
          if (once->fetch_add(1) != 0) {
            bad.fetch_add(1);  // ran twice
            return;
          }
          if (e == 0 && log.committed() < seq) bad.fetch_add(1);
          p->set_value(e);
        });
      }
      for (auto& f : waits) {
        if (f.get() != 0) bad.fetch_add(1);
        completions.fetch_add(1);
      }
    });
  }
  std::thread shipper([&] {
    std::mt19937_64 rng(seed ^ 0xABCDEF);
    uint64_t next = 1, shipped = 0;
    const uint64_t total = kThreads * kPerThread;
    while (shipped < total) {
      if (auto w = log.next(next)) {
        if (w->seq != next) bad.fetch_add(1);  // skipped a seq
        next = w->seq + 1;
        ++shipped;
      } else {
        std::this_thread::yield();
      }
      if (rng() % 4 == 0 && next > 1) {
        const uint64_t c = log.ack_through(log.committed() + rng() % (next - log.committed()));
        if (c > log.pending()) bad.fetch_add(1);
      }
    }
    log.ack_through(next - 1);
  });
  for (auto& t : issuers) t.join();
  shipper.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(completions.load(), uint64_t{kThreads * kPerThread});
  EXPECT_EQ(log.committed(), uint64_t{kThreads * kPerThread});
  EXPECT_EQ(log.stats().unacked_bytes, 0u);
  EXPECT_GT(log.stats().blocked_total, 0u) << "the test meant to exercise backpressure";
}

}  // namespace
}  // namespace tideway::testing
