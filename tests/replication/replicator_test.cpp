// The replicator end to end, in one process: a Replicator (backup site) in
// a temp data_dir and an agent's ReplicationLink + WriteLog +
// ProtectedVolume (primary) on a temp file, over a plaintext channel on
// 127.0.0.1. Each side has its own io thread.
//
// The checker: after promotion the backup image must equal the primary
// byte for byte, and no seq the agent saw acknowledged may be missing from
// the backup after a restart (durable_seq >= every ack ever received). The
// UnsafeControl test shows the checker catches a lost write.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <future>

#include "agent/local_volume.h"
#include "agent/protected_volume.h"
#include "agent/replication_link.h"
#include "agent/write_log.h"
#include "replicator/replicator.h"
#include "tests/replication/repl_test_util.h"
#include "tests/wan/channel_harness.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using agent::AttachState;
using agent::Mode;
using nlohmann::json;

constexpr uint32_t kWriter = 7;
constexpr uint32_t kVolume = 1;
constexpr uint64_t kVolSize = 8ull << 20;
const std::string kName = "vm1-disk";

// Compares two images. Empty when equal, else what differs (4 KiB blocks).
std::string compare_images(const std::string& primary, const std::string& backup) {
  const auto a = read_bytes(primary), b = read_bytes(backup);
  if (a.size() != b.size())
    return "size differs: primary " + std::to_string(a.size()) + ", backup " + std::to_string(b.size());
  uint64_t blocks = 0;
  std::string first;
  for (size_t off = 0; off < a.size(); off += 4096) {
    const size_t n = std::min<size_t>(4096, a.size() - off);
    if (std::memcmp(a.data() + off, b.data() + off, n) == 0) continue;
    if (blocks++ < 5) first += " " + std::to_string(off);
  }
  if (blocks == 0) return "";
  return std::to_string(blocks) + " blocks of 4 KiB differ, first at offsets" + first;
}

class ReplicatorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    stop_agent();
    close_replicator();
  }

  replicator::ReplicatorOptions repl_options() {
    replicator::ReplicatorOptions o;
    o.data_dir = data_dir;
    o.channel = base_options("backup");
    o.channel.tls.plaintext_for_tests = true;
    o.listen = asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port);
    o.segment_bytes = 512 * 1024;            // several segments: rollover and trimming run
    o.max_pending_bytes = 4ull << 20;
    o.apply_sync_interval = apply_interval;
    return o;
  }

  // Opens the replicator on data_dir (the same port after the first time).
  proto::Result<void> open_replicator() {
    auto r = repl_io.call([&]() -> proto::Result<void> {
      auto opened = replicator::Replicator::open(repl_io.io(), repl_options());
      if (!opened) return opened.error();
      rep = std::move(opened).value();
      rep->start();
      return {};
    });
    if (r) port = rep->port();
    return r;
  }

  void close_replicator() {
    if (rep) repl_io.call([&] {
        rep.reset();
        return 0;
      });
  }

  json repl_status() {
    return repl_io.call([&] { return rep->status(); });
  }

  // The backup volume's durable seq as the replicator reports it.
  uint64_t backup_durable_seq() {
    auto st = repl_status();
    for (auto& v : st["volumes"])
      if (v["name"] == kName && v.contains("durable_seq")) return v["durable_seq"].get<uint64_t>();
    return 0;
  }

  std::shared_ptr<agent::ReplicationLink> make_link(const std::shared_ptr<agent::WriteLog>& wlog,
                                                    const std::string& name, uint64_t size) {
    return agent_io.call([&] {
      auto o = base_options("primary");
      o.tls.plaintext_for_tests = true;
      auto l = agent::ReplicationLink::create(agent_io.io(), o, "127.0.0.1", port);
      l->start();
      l->add(wlog, {agent::LinkVolume{kVolume, name, size}}, nullptr);
      return l;
    });
  }

  void start_agent(Mode mode) {
    auto local = agent::LocalVolume::open(primary_path, kVolSize);
    ASSERT_TRUE(local) << local.error().detail;
    log = std::make_shared<agent::WriteLog>(kWriter, 64ull << 20, wan::system_clock());
    link = make_link(log, kName, kVolSize);
    pv = std::make_unique<agent::ProtectedVolume>(std::move(local).value(), log, kVolume, mode);
  }

  void stop_agent() {
    if (log) log->close();
    if (link) agent_io.call([&] {
        link->stop();
        link.reset();
        return 0;
      });
  }

  AttachState attach_state(const std::shared_ptr<agent::ReplicationLink>& l, uint32_t writer) {
    return agent_io.call([&] { return l->attach_state(writer); });
  }

  // One write through the tap; returns its completion status (waits).
  int write(uint64_t offset, std::span<const uint8_t> data, bool fua = false) {
    std::promise<int> p;
    auto f = p.get_future();
    pv->write(offset, data, fua, [&p](int e) { p.set_value(e); });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) return ETIMEDOUT;
    return f.get();
  }

  int discard(uint64_t offset, uint64_t length) {
    std::promise<int> p;
    auto f = p.get_future();
    pv->discard(offset, length, [&p](int e) { p.set_value(e); });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) return ETIMEDOUT;
    return f.get();
  }

  // A random write or discard; writes of up to 192 KiB (some above 64 KiB
  // cross a 32 KiB frame many times; rarely above 1 MiB to split).
  int random_io(std::mt19937_64& rng) {
    const uint64_t kind = rng() % 20;
    if (kind == 0) {
      const uint64_t len = 1 + rng() % (256 * 1024);
      return discard(rng() % (kVolSize - len), len);
    }
    const size_t len = kind == 1 ? proto::kMaxWriteLen + 1 + rng() % 4096 : 1 + rng() % (192 * 1024);
    std::vector<uint8_t> d(len);
    uint64_t x = rng() | 1;
    for (auto& b : d) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
    return write(rng() % (kVolSize - len), d, rng() % 10 == 0);
  }

  bool wait_all_committed(std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    return wait_until([&] { return log->committed() == log->pending(); }, limit);
  }

  json promote(const std::string& name = kName) {
    auto p = std::make_shared<std::promise<json>>();
    auto f = p->get_future();
    repl_io.call([&] {
      rep->promote(name, [p](json j) { p->set_value(std::move(j)); });
      return 0;
    });
    if (f.wait_for(std::chrono::seconds(60)) != std::future_status::ready) return json{{"ok", false}, {"error", "timeout"}};
    return f.get();
  }

  std::string backup_image() const { return data_dir + "/volumes/" + kName + ".img"; }
  std::string last_segment() const {
    auto segs = segment_files(data_dir + "/journal");
    return segs.empty() ? "" : segs.back();
  }

  TempDir tmp;
  const std::string data_dir = tmp / "backup";
  const std::string primary_path = tmp / "primary.img";
  IoThread repl_io, agent_io;
  uint16_t port = 0;
  std::chrono::milliseconds apply_interval{50};
  std::unique_ptr<replicator::Replicator> rep;
  std::shared_ptr<agent::WriteLog> log;
  std::shared_ptr<agent::ReplicationLink> link;
  std::unique_ptr<agent::ProtectedVolume> pv;
};

// The basic path: writes (small, large, FUA, discards) become durable acks,
// and the promoted image equals the primary.
TEST_F(ReplicatorTest, PipelinedWritesAreAckedAndPromotedImageMatches) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  ASSERT_TRUE(wait_until([&] { return attach_state(link, kWriter) == AttachState::kAttached; }));
  for (int i = 0; i < 300; ++i) ASSERT_EQ(random_io(rng), 0) << "io " << i;
  const uint64_t pending = log->pending();
  EXPECT_GT(pending, 300u);  // some writes were split at 1 MiB
  ASSERT_TRUE(wait_all_committed()) << "committed " << log->committed() << " of " << pending;
  EXPECT_EQ(log->stats().unacked_bytes, 0u);
  EXPECT_EQ(backup_durable_seq(), pending);

  auto j = promote();
  ASSERT_TRUE(j["ok"].get<bool>()) << j.dump();
  EXPECT_EQ(j["durable_seq"].get<uint64_t>(), pending);
  EXPECT_EQ(j["applied_seq"].get<uint64_t>(), pending);
  EXPECT_EQ(j["image"].get<std::string>(), backup_image());
  EXPECT_EQ(compare_images(primary_path, backup_image()), "");
  // The journal was trimmed behind the applier (segments are 512 KiB).
  EXPECT_LE(repl_status()["journal"]["segments"].get<uint64_t>(), 3u) << repl_status().dump();
}

// Sync mode: a write completes only once the backup acknowledged it.
TEST_F(ReplicatorTest, SyncWriteCompletesOnlyAfterTheAck) {
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kSync);
  std::vector<uint8_t> d(10000, 0xC3);
  for (int i = 0; i < 50; ++i) {
    const uint64_t expect_seq = log->pending() + 1;
    std::promise<std::pair<int, uint64_t>> p;
    auto f = p.get_future();
    pv->write(4096 * static_cast<uint64_t>(i), d, false, [&](int e) { p.set_value({e, log->committed()}); });
    ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    auto [err, committed] = f.get();
    ASSERT_EQ(err, 0);
    EXPECT_GE(committed, expect_seq) << "sync write " << i << " completed before its ack";
  }
  // A split write (3 pieces) completes after its last piece is acked.
  std::vector<uint8_t> big(2 * proto::kMaxWriteLen + 5, 0x11);
  const uint64_t last_seq = log->pending() + 3;
  std::promise<uint64_t> p;
  auto f = p.get_future();
  pv->write(0, big, true, [&](int e) { p.set_value(e == 0 ? log->committed() : 0); });
  ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_GE(f.get(), last_seq);
  // Flush in sync mode waits for everything before it.
  std::promise<int> fp;
  auto ff = fp.get_future();
  pv->flush([&](int e) { fp.set_value(e == 0 && log->committed() >= last_seq ? 0 : EIO); });
  ASSERT_EQ(ff.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(ff.get(), 0);
}

// Sync mode with the backup down: the write stays incomplete until a
// restarted replicator acknowledges it.
TEST_F(ReplicatorTest, SyncWriteWaitsAcrossReplicatorRestart) {
  LogCapture logs;
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kSync);
  std::vector<uint8_t> d(5000, 0x42);
  ASSERT_EQ(write(0, d), 0);
  close_replicator();
  std::promise<int> p;
  auto f = p.get_future();
  pv->write(8192, d, false, [&](int e) { p.set_value(e); });
  // Negative check (bounded): nothing can ack it while the backup is down.
  EXPECT_EQ(f.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "a sync write completed with the backup down";
  ASSERT_TRUE(open_replicator());
  ASSERT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(f.get(), 0);
  EXPECT_EQ(log->committed(), 2u);
  EXPECT_TRUE(wait_until([&] { return logs.contains("session reset"); }));
}

// The replicator is destroyed while writes flow and reopened on the same
// data_dir, twice: the link sees a reset, re-attaches, re-sends; nothing
// the agent saw acked is missing, and at the end backup == primary.
TEST_F(ReplicatorTest, RestartMidStreamLosesNothing) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  LogCapture logs;
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  constexpr int kIos = 900;
  std::atomic<int> done_ios{0}, io_errors{0};
  std::thread writer([&] {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < kIos; ++i) {
      if (random_io(rng) != 0) io_errors.fetch_add(1);
      done_ios.fetch_add(1);
    }
  });
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE("restart " + std::to_string(round));
    // Let some writes get acked, then kill the backup mid-stream.
    ASSERT_TRUE(wait_until([&] { return done_ios.load() >= round * kIos / 3 && log->committed() > 0; }));
    close_replicator();
    const uint64_t acked = log->committed();
    const uint64_t issued = log->pending();
    ASSERT_TRUE(open_replicator()) << "reopen";
    // Nothing acked was lost: the journal recovered every acked seq.
    EXPECT_GE(backup_durable_seq(), acked) << "the backup lost acknowledged writes";
    // Writes kept flowing during the outage (pipelined: local completion).
    std::fprintf(stderr, "restart %d: acked %llu, issued %llu at the kill\n", round,
                 static_cast<unsigned long long>(acked), static_cast<unsigned long long>(issued));
    ASSERT_TRUE(wait_until([&] { return log->committed() > issued; }, std::chrono::seconds(60)))
        << "no acks after the restart";
  }
  writer.join();
  EXPECT_EQ(io_errors.load(), 0);
  ASSERT_TRUE(wait_all_committed()) << "committed " << log->committed() << " of " << log->pending();
  EXPECT_TRUE(logs.contains("session reset")) << "the link never saw the reset";
  EXPECT_EQ(attach_state(link, kWriter), AttachState::kAttached);
  auto st = repl_status();
  std::fprintf(stderr, "status after: %s\n", st["volumes"].dump().c_str());
  auto j = promote();
  ASSERT_TRUE(j["ok"].get<bool>()) << j.dump();
  EXPECT_EQ(j["applied_seq"].get<uint64_t>(), log->pending());
  EXPECT_EQ(compare_images(primary_path, backup_image()), "");
}

// A crash while a batch was being written leaves a partial record (never
// acked) and junk at the end of the last segment: recovery drops them,
// nothing acked is lost, and replication continues.
TEST_F(ReplicatorTest, TornTailAfterCrashIsDroppedAndNothingAckedLost) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  LogCapture logs;
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  for (int i = 0; i < 80; ++i) ASSERT_EQ(random_io(rng), 0);
  ASSERT_TRUE(wait_all_committed());
  close_replicator();
  const uint64_t acked = log->committed();

  const std::string seg = last_segment();
  ASSERT_FALSE(seg.empty());
  const uint64_t good_size = std::filesystem::file_size(seg);
  // The next record, torn at a random point, then (sometimes) junk.
  auto next = make_write(kWriter, acked + 1, 1 + static_cast<uint32_t>(rng() % 70000), 0);
  next.w.volume = kVolume;
  auto rec = encode(next.w);
  rec.resize(1 + rng() % (rec.size() - 1));
  if (rng() % 2)
    for (int k = 0; k < 100; ++k) rec.push_back(static_cast<uint8_t>(rng()));
  append_bytes(seg, rec);
  std::fprintf(stderr, "appended %zu torn bytes to %s (%llu bytes)\n", rec.size(), seg.c_str(),
               static_cast<unsigned long long>(good_size));

  ASSERT_TRUE(open_replicator());
  EXPECT_EQ(std::filesystem::file_size(seg), good_size) << "the torn tail was not cut";
  EXPECT_TRUE(logs.contains("torn tail")) << "recovery did not report the torn tail";
  EXPECT_EQ(backup_durable_seq(), acked);
  // Replication continues after the cut.
  for (int i = 0; i < 40; ++i) ASSERT_EQ(random_io(rng), 0);
  ASSERT_TRUE(wait_all_committed());
  auto j = promote();
  ASSERT_TRUE(j["ok"].get<bool>()) << j.dump();
  EXPECT_EQ(compare_images(primary_path, backup_image()), "");
}

// Corruption in an earlier journal segment: the replicator refuses to
// start and changes nothing on disk.
TEST_F(ReplicatorTest, CorruptEarlierSegmentRefusesToStart) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  apply_interval = std::chrono::hours(1);  // no checkpoint, so no trimming
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  // Enough data for several 512 KiB segments.
  for (int i = 0; i < 60; ++i) ASSERT_EQ(random_io(rng), 0);
  ASSERT_TRUE(wait_all_committed());
  stop_agent();
  close_replicator();
  auto segs = segment_files(data_dir + "/journal");
  ASSERT_GE(segs.size(), 2u);
  auto bytes = read_bytes(segs.front());
  bytes[rng() % bytes.size()] ^= 0x01;
  write_bytes(segs.front(), bytes);
  const auto before = snapshot_dir(data_dir + "/journal");
  auto r = open_replicator();
  ASSERT_FALSE(r) << "a corrupt journal was accepted";
  EXPECT_NE(r.error().detail.find("journal corrupt"), std::string::npos) << r.error().detail;
  EXPECT_EQ(snapshot_dir(data_dir + "/journal"), before);
}

// Same name, different size: refused with the reason; nothing resized. A
// second writer claiming the name is refused too.
TEST_F(ReplicatorTest, AttachWithDifferentSizeIsRefused) {
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  ASSERT_TRUE(wait_until([&] { return attach_state(link, kWriter) == AttachState::kAttached; }));
  std::vector<uint8_t> d(4096, 0x77);
  ASSERT_EQ(write(0, d), 0);
  ASSERT_TRUE(wait_all_committed());

  auto log2 = std::make_shared<agent::WriteLog>(kWriter, 4ull << 20, wan::system_clock());
  auto link2 = make_link(log2, kName, 2 * kVolSize);
  ASSERT_TRUE(wait_until([&] { return attach_state(link2, kWriter) == AttachState::kRefused; }))
      << attach_state_name(attach_state(link2, kWriter));
  const std::string why = agent_io.call([&] { return link2->refusal(kWriter); });
  EXPECT_NE(why.find(std::to_string(kVolSize) + " bytes at the backup"), std::string::npos) << why;
  EXPECT_NE(why.find(std::to_string(2 * kVolSize)), std::string::npos) << why;
  // Its writes are not shipped, nothing is acked.
  auto seq = log2->issue(kVolume, proto::WriteOp::kWrite, 0, 0, 4096, std::vector<uint8_t>(4096, 0xEE));
  EXPECT_EQ(seq, 1u);

  auto log3 = std::make_shared<agent::WriteLog>(kWriter + 1, 4ull << 20, wan::system_clock());
  auto link3 = make_link(log3, kName, kVolSize);
  ASSERT_TRUE(wait_until([&] { return attach_state(link3, kWriter + 1) == AttachState::kRefused; }));
  const std::string why3 = agent_io.call([&] { return link3->refusal(kWriter + 1); });
  EXPECT_NE(why3.find("already held"), std::string::npos) << why3;

  EXPECT_EQ(std::filesystem::file_size(backup_image()), kVolSize);
  // Make sure the refused write never reached the image.
  ASSERT_TRUE(wait_all_committed());
  auto j = promote();
  ASSERT_TRUE(j["ok"].get<bool>()) << j.dump();
  EXPECT_EQ(compare_images(primary_path, backup_image()), "");
  EXPECT_EQ(log2->committed(), 0u);
  log2->close();
  log3->close();
  agent_io.call([&] {
    link2->stop();
    link3->stop();
    return 0;
  });
}

// Two agents that picked the same writer id: the second one's attach is
// refused (wrong size), but the link ships its writes right behind the
// ATTACH, before the refusal arrives. They must not land in the first
// agent's backup volume.
TEST_F(ReplicatorTest, RefusedAgentCannotWriteIntoAnotherAgentsVolume) {
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  std::vector<uint8_t> d(4096, 0x77);
  ASSERT_EQ(write(0, d), 0);
  ASSERT_TRUE(wait_all_committed());

  auto log2 = std::make_shared<agent::WriteLog>(kWriter, 4ull << 20, wan::system_clock());
  // Issued before the link exists: shipped right after the ATTACH.
  for (int i = 0; i < 5; ++i)
    ASSERT_GT(log2->issue(kVolume, proto::WriteOp::kWrite, 0, 65536 * static_cast<uint64_t>(i), 4096,
                          std::vector<uint8_t>(4096, 0xEE)), 0u);
  auto link2 = make_link(log2, kName, 2 * kVolSize);
  ASSERT_TRUE(wait_until([&] { return attach_state(link2, kWriter) == AttachState::kRefused; }));
  // The first agent carries on; everything it wrote is acked.
  for (int i = 0; i < 10; ++i) ASSERT_EQ(write(4096 * (1 + static_cast<uint64_t>(i)), d), 0);
  ASSERT_TRUE(wait_all_committed());
  auto j = promote();
  ASSERT_TRUE(j["ok"].get<bool>()) << j.dump();
  EXPECT_EQ(compare_images(primary_path, backup_image()), "") << "a refused agent's writes reached the volume";
  EXPECT_EQ(log2->committed(), 0u) << "a refused agent's writes were acknowledged";
  log2->close();
  agent_io.call([&] {
    link2->stop();
    return 0;
  });
}

// The control ("unsafe mode"): the backup loses its journal, checkpoint
// and volume contents between two runs. The checker must notice: the
// acked-seq check and the image comparison both fail. If this test fails,
// the checks above prove nothing.
TEST_F(ReplicatorTest, UnsafeControlCheckerCatchesLostWrites) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  ASSERT_TRUE(open_replicator());
  start_agent(Mode::kPipelined);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(random_io(rng), 0);
  ASSERT_TRUE(wait_all_committed());
  close_replicator();
  const uint64_t acked = log->committed();
  ASSERT_GT(acked, 0u);

  // Unsafe: throw away what was acked.
  std::filesystem::remove_all(data_dir + "/journal");
  std::filesystem::remove(data_dir + "/applied.json");
  std::filesystem::resize_file(backup_image(), 0);
  std::filesystem::resize_file(backup_image(), kVolSize);

  ASSERT_TRUE(open_replicator());
  EXPECT_LT(backup_durable_seq(), acked) << "control: the durable-seq check cannot see the loss";
  for (int i = 0; i < 20; ++i) ASSERT_EQ(random_io(rng), 0);
  ASSERT_TRUE(wait_all_committed());
  auto j = promote();
  ASSERT_TRUE(j["ok"].get<bool>()) << j.dump();
  const std::string diff = compare_images(primary_path, backup_image());
  std::fprintf(stderr, "control: checker reports: %s\n", diff.c_str());
  EXPECT_NE(diff, "") << "control: the image checker did not catch the lost writes";
}

}  // namespace
}  // namespace tideway::testing
