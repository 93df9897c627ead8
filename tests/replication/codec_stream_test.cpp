// The WAN codec on the replication stream, end to end (agent link ->
// channel -> replicator -> journal): writes with repeated content arrive
// byte for byte and exactly once, the codec's counters show it worked,
// and every way the stream can restart (replicator restart, corrupt
// batch, backpressure) loses nothing and journals nothing corrupt.
// Randomized: each test prints its seed (TIDEWAY_SEED replays it).
#include <gtest/gtest.h>

#include <atomic>

#include "tests/replication/codec_stream_harness.h"

namespace tideway::testing {
namespace {

uint64_t u64(const nlohmann::json& j, const char* key) { return j.value(key, uint64_t{0}); }

// The basic path: the journal holds exactly the written bytes; zero pages
// and CBR hits were used; both ends counted the same batches.
TEST_F(CodecStreamTest, RepeatedContentRoundTripsAndTheCodecWorks) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  ContentGen gen(seed);
  ASSERT_TRUE(open_replicator());
  start_agent();
  for (int i = 0; i < 400; ++i) issue(gen.next());
  ASSERT_TRUE(wait_all_committed()) << "committed " << log->committed() << " of " << log->pending();
  EXPECT_EQ(check_journal(), "");

  const auto a = agent_codec(), r = repl_codec();
  std::fprintf(stderr, "agent codec: %s\nreplicator codec: %s\n", a.dump().c_str(), r.dump().c_str());
  EXPECT_TRUE(agent_io.call([&] { return link->status(); })["codec"].get<bool>());
  EXPECT_GT(u64(a, "encoded_writes"), 300u);
  EXPECT_GT(u64(a, "raw_writes"), 0u);  // the unaligned ones
  EXPECT_GT(u64(a["records_by_encoding"], "zero"), 0u);
  EXPECT_GT(u64(a["records_by_encoding"], "cbr"), 0u);
  EXPECT_GT(u64(a["sub_blocks"], "hit"), 0u);
  EXPECT_GT(a["ratio"].get<double>(), 1.5);
  EXPECT_GT(u64(a, "bytes_saved"), 0u);
  EXPECT_EQ(u64(r, "decoded_writes"), u64(a, "encoded_writes"));
  EXPECT_EQ(u64(r, "page_bytes"), u64(a, "page_bytes"));
  EXPECT_EQ(u64(r, "wire_bytes"), u64(a, "wire_bytes"));
  EXPECT_EQ(u64(r, "failures"), 0u);
  EXPECT_EQ(u64(a, "reattach_requests"), 0u);
}

// The replicator is destroyed mid-stream and reopened, twice: each time
// the agent sees a session reset, re-attaches with a new codec epoch and
// re-sends; the fresh decoder follows without a single failure, and the
// journal still holds every write exactly once.
TEST_F(CodecStreamTest, ReplicatorRestartsMidStreamLoseNothing) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  LogCapture logs;
  ContentGen gen(seed);
  ASSERT_TRUE(open_replicator());
  start_agent();
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE("restart " + std::to_string(round));
    const uint64_t target = log->pending() + 40;  // some of this round acked, likely not all
    for (int i = 0; i < 150; ++i) issue(gen.next());
    ASSERT_TRUE(wait_until([&] { return log->committed() >= target; }))
        << "committed " << log->committed() << "; link " << agent_io.call([&] { return link->status(); }).dump()
        << "; codec " << agent_codec().dump();
    close_replicator();
    for (int i = 0; i < 50; ++i) issue(gen.next());  // while the backup is down
    ASSERT_TRUE(open_replicator());
  }
  for (int i = 0; i < 100; ++i) issue(gen.next());
  ASSERT_TRUE(wait_all_committed()) << "committed " << log->committed() << " of " << log->pending();
  EXPECT_EQ(check_journal(), "");
  EXPECT_TRUE(logs.contains("session reset"));
  const auto a = agent_codec(), r = repl_codec();
  std::fprintf(stderr, "agent codec: %s\nreplicator codec: %s\n", a.dump().c_str(), r.dump().c_str());
  EXPECT_GE(u64(a, "epoch"), 3u) << "the encoder did not start a new epoch per reset";
  EXPECT_EQ(u64(r, "failures"), 0u) << r.dump();
  EXPECT_EQ(u64(a, "reattach_requests"), 0u);
  EXPECT_GT(u64(r, "decoded_writes"), 0u);
}

// Batches corrupted after encoding (below the channel's CRC, as a buggy
// encoder would) are refused: nothing of them is journaled, the replicator
// asks for a re-attach, and the writes arrive intact afterwards.
TEST_F(CodecStreamTest, CorruptBatchesAreRefusedAndTheStreamRecovers) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  LogCapture logs;
  ContentGen gen(seed);
  // Runs on the agent's io thread only.
  auto corrupted = std::make_shared<std::set<uint64_t>>();
  auto rng = std::make_shared<std::mt19937_64>(seed ^ 0x5eed);
  std::atomic<int> corruptions{0};
  hook = [corrupted, rng, &corruptions](uint32_t, uint64_t seq, std::vector<uint8_t>& batch) {
    // Three writes, once each: the content checksum, the header's magic,
    // and a random byte past the header.
    if (seq % 60 != 20 || seq > 200 || !corrupted->insert(seq).second) return;
    const size_t at = seq == 20 ? 56 : seq == 80 ? 0 : 64 + (*rng)() % (batch.size() - 64);
    batch[at] ^= static_cast<uint8_t>(1 + (*rng)() % 255);
    corruptions.fetch_add(1);
  };
  ASSERT_TRUE(open_replicator());
  start_agent();
  // Every write aligned, so seqs 20, 80, 140, 200 are encoded. Four
  // rounds of 60 writes, each committed before the next, so each corrupt
  // batch is decoded (not dropped behind an earlier failure).
  for (int i = 0; i < 300; ++i) {
    if (i % 60 == 0) {
      ASSERT_TRUE(wait_all_committed()) << "round " << i / 60;
    }
    IssuedWrite w = gen.next();
    if (w.op != proto::WriteOp::kWrite || w.length % 4096 != 0 || w.offset % 4096 != 0) {
      w.op = proto::WriteOp::kWrite;
      w.offset = 4096 * (gen.rng()() % 1024);
      w.length = 8192;
      w.data.assign(8192, static_cast<uint8_t>(i));
    }
    issue(std::move(w));
  }
  ASSERT_TRUE(wait_all_committed()) << "committed " << log->committed() << " of " << log->pending();
  EXPECT_EQ(check_journal(), "");
  const auto a = agent_codec(), r = repl_codec();
  std::fprintf(stderr, "agent codec: %s\nreplicator codec: %s\n", a.dump().c_str(), r.dump().c_str());
  EXPECT_EQ(corruptions.load(), 4);
  EXPECT_EQ(u64(r, "failures"), 4u) << r.dump();
  EXPECT_EQ(u64(r, "reattach_requests"), 4u);
  EXPECT_EQ(u64(a, "reattach_requests"), 4u);
  EXPECT_GT(u64(r, "rejected"), 0u);
  EXPECT_TRUE(logs.contains("not journaled")) << "no logged reason";
}

// A tiny retention limit: the channel refuses many encoded writes. Each
// refused batch is kept and sent first later, never re-encoded nor
// skipped: the decoder sees every batch in order, never a gap.
TEST_F(CodecStreamTest, RefusedBatchesAreKeptNotReencoded) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  ContentGen gen(seed);
  link_opts.data_retention_bytes = 48 * 1024;
  ASSERT_TRUE(open_replicator());
  start_agent();
  ASSERT_TRUE(wait_until([&] { return agent_io.call([&] { return link->attach_state(kCodecWriter); }) ==
                                      agent::AttachState::kAttached; }));
  for (int i = 0; i < 300; ++i) issue(gen.next());
  ASSERT_TRUE(wait_all_committed()) << "committed " << log->committed() << " of " << log->pending();
  EXPECT_EQ(check_journal(), "");
  const auto a = agent_codec(), r = repl_codec();
  std::fprintf(stderr, "agent codec: %s\nreplicator codec: %s\n", a.dump().c_str(), r.dump().c_str());
  EXPECT_GT(u64(a, "held"), 10u) << "the retention limit never refused a batch";
  EXPECT_EQ(u64(r, "failures"), 0u) << r.dump();
  EXPECT_EQ(u64(a, "encoded_writes"), u64(r, "decoded_writes"));
  EXPECT_EQ(u64(a, "reattach_requests"), 0u);
}

// A replicator whose codec budget is smaller than the agent's cache
// refuses the protection with the reason; nothing corrupt is journaled.
TEST_F(CodecStreamTest, CodecOverTheBackupsBudgetIsRefusedWithTheReason) {
  codec_max_memory = 16ull << 20;  // the agent's cache is 64 MiB
  ASSERT_TRUE(open_replicator());
  start_agent();
  IssuedWrite w;
  w.length = 4 * 4096;
  w.data.assign(w.length, 0x5a);
  issue(w);
  ASSERT_TRUE(wait_until([&] { return agent_io.call([&] { return link->attach_state(kCodecWriter); }) ==
                                      agent::AttachState::kRefused; }));
  const std::string why = agent_io.call([&] { return link->refusal(kCodecWriter); });
  EXPECT_NE(why.find("max_memory_mb"), std::string::npos) << why;
  EXPECT_NE(why.find("cache_mb"), std::string::npos) << why;
  EXPECT_EQ(log->committed(), 0u);
  EXPECT_EQ(check_journal(/*complete=*/false), "");
  EXPECT_EQ(u64(repl_codec(), "over_budget"), 1u);
  EXPECT_EQ(u64(repl_status()["codec"], "memory_bytes"), 0u);
}

// A replicator that does not offer the codec gets raw writes only.
TEST_F(CodecStreamTest, CodecNotOfferedMeansRawWrites) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  ContentGen gen(seed);
  codec_max_memory = 0;
  ASSERT_TRUE(open_replicator());
  start_agent();
  for (int i = 0; i < 60; ++i) issue(gen.next());
  ASSERT_TRUE(wait_all_committed());
  EXPECT_EQ(check_journal(), "");
  const auto a = agent_codec();
  EXPECT_FALSE(agent_io.call([&] { return link->status(); })["codec"].get<bool>());
  EXPECT_EQ(u64(a, "encoded_writes"), 0u);
  EXPECT_EQ(u64(a, "raw_writes") + u64(a, "discards_and_zeroes"), 60u);
}

}  // namespace
}  // namespace tideway::testing
