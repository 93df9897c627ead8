// The backup journal: appends and reads across segments, recovery (a torn
// tail of the last segment is cut, corruption anywhere else refuses to
// start and changes nothing), trimming, per-writer seq order.
#include <gtest/gtest.h>

#include <filesystem>

#include "replicator/journal.h"
#include "tests/replication/repl_test_util.h"

namespace tideway::testing {
namespace {

using replicator::Journal;
using replicator::JournalOptions;
using replicator::JournalPosition;

std::unique_ptr<Journal> open_ok(const JournalOptions& o) {
  auto j = Journal::open(o);
  if (!j) ADD_FAILURE() << "open " << o.dir << ": " << j.error().detail;
  return j ? std::move(j).value() : nullptr;
}

// Appends one batch and syncs it.
JournalPosition append_sync(Journal& j, const std::vector<OwnedWrite>& ws) {
  std::vector<uint8_t> batch;
  for (const auto& o : ws) proto::append_journal_record(o.w, batch);
  auto end = j.append(batch);
  EXPECT_TRUE(end) << (end ? "" : end.error().detail);
  auto s = j.sync();
  EXPECT_TRUE(s) << (s ? "" : s.error().detail);
  return end ? end.value() : JournalPosition{};
}

struct Seen {
  uint32_t writer;
  uint64_t seq;
  uint32_t length;
  std::vector<uint8_t> data;
  JournalPosition at;
};

std::vector<Seen> read_all(const Journal& j, JournalPosition from, JournalPosition limit,
                           JournalPosition* end_out = nullptr) {
  std::vector<Seen> out;
  auto end = j.read(from, limit, [&](const proto::JournalRecord& r, JournalPosition at) {
    out.push_back({r.write.writer, r.write.seq, r.write.length, {r.write.data.begin(), r.write.data.end()}, at});
    return true;
  });
  EXPECT_TRUE(end) << (end ? "" : end.error().detail);
  if (end_out && end) *end_out = end.value();
  return out;
}

void expect_records(const std::vector<Seen>& got, const std::vector<OwnedWrite>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].writer, want[i].w.writer) << i;
    EXPECT_EQ(got[i].seq, want[i].w.seq) << i;
    EXPECT_EQ(got[i].length, want[i].w.length) << i;
    EXPECT_EQ(got[i].data, want[i].data) << i;
  }
}

TEST(Journal, EmptyDirectoryStartsSegmentOne) {
  TempDir tmp;
  auto j = open_ok({tmp / "j", 1 << 20});
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().records, 0u);
  EXPECT_EQ(j->end(), (JournalPosition{1, 0}));
  EXPECT_EQ(j->segment_count(), 1u);
  EXPECT_EQ(segment_files(tmp / "j").size(), 1u);
  EXPECT_TRUE(read_all(*j, {0, 0}, j->end()).empty());
}

TEST(Journal, OpenWithoutDirectoryIsAnError) {
  auto j = Journal::open({"", 1 << 20});
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code, proto::Errc::kInvalid);
}

TEST(Journal, RoundTripAndReopen) {
  TempDir tmp;
  const JournalOptions o{tmp / "j", 1 << 20};
  std::vector<OwnedWrite> ws;
  for (uint64_t s = 1; s <= 20; ++s) ws.push_back(make_write(s % 2 ? 1 : 2, (s + 1) / 2, 100 + 10 * static_cast<uint32_t>(s)));
  JournalPosition end;
  {
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    append_sync(*j, {ws.begin(), ws.begin() + 5});
    end = append_sync(*j, {ws.begin() + 5, ws.end()});
    EXPECT_EQ(end, j->end());
    expect_records(read_all(*j, {1, 0}, end), ws);
  }
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  const auto& rec = j->recovery();
  EXPECT_EQ(rec.records, 20u);
  EXPECT_EQ(rec.torn_bytes, 0u);
  EXPECT_TRUE(rec.torn_reason.empty());
  EXPECT_EQ(rec.end, end);
  EXPECT_EQ(rec.first, (JournalPosition{1, 0}));
  EXPECT_EQ(rec.last_seq.at(1), 10u);
  EXPECT_EQ(rec.last_seq.at(2), 10u);
  EXPECT_EQ(j->end(), end);
  expect_records(read_all(*j, rec.first, rec.end), ws);
  // Appends continue after the recovered end.
  auto more = make_write(1, 11, 64);
  auto end2 = append_sync(*j, {more});
  EXPECT_GT(end2, end);
  auto all = read_all(*j, {1, 0}, end2);
  ASSERT_EQ(all.size(), 21u);
  EXPECT_EQ(all.back().seq, 11u);
  EXPECT_EQ(all.back().at, end);
}

// A crash mid-append leaves the last record cut at any byte: each cut is
// dropped on reopen, the records before it survive, and the journal takes
// appends again (which survive the next reopen).
TEST(Journal, TornTailAtEveryOffsetIsCutAndAppendsResume) {
  TempDir tmp;
  const std::string base = tmp / "base";
  std::vector<OwnedWrite> ws;
  for (uint64_t s = 1; s <= 4; ++s) ws.push_back(make_write(1, s, 150, 4096 * s, proto::WriteOp::kWrite, {1, 2}));
  JournalPosition last_start, full_end;
  {
    auto j = open_ok({base, 1 << 20});
    ASSERT_TRUE(j);
    last_start = append_sync(*j, {ws.begin(), ws.end() - 1});
    full_end = append_sync(*j, {ws.back()});
  }
  const auto seg = segment_files(base);
  ASSERT_EQ(seg.size(), 1u);
  const auto full = read_bytes(seg[0]);
  ASSERT_EQ(full.size(), full_end.offset);

  for (uint64_t cut = last_start.offset; cut < full_end.offset; ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::string dir = tmp / ("cut" + std::to_string(cut));
    std::filesystem::create_directory(dir);
    const std::string file = dir + "/" + std::filesystem::path(seg[0]).filename().string();
    write_bytes(file, {full.begin(), full.begin() + static_cast<ptrdiff_t>(cut)});
    {
      auto j = open_ok({dir, 1 << 20});
      ASSERT_TRUE(j);
      const auto& rec = j->recovery();
      EXPECT_EQ(rec.records, 3u);
      EXPECT_EQ(rec.torn_bytes, cut - last_start.offset);
      if (cut > last_start.offset) {
        EXPECT_FALSE(rec.torn_reason.empty());
      }
      EXPECT_EQ(rec.last_seq.at(1), 3u);
      EXPECT_EQ(j->end(), last_start);
      EXPECT_EQ(std::filesystem::file_size(file), last_start.offset) << "torn tail not cut off the file";
      // The writer re-sends seq 4 (never acked): it lands where the tear was.
      auto end = append_sync(*j, {ws.back()});
      EXPECT_EQ(end, full_end);
    }
    auto j = open_ok({dir, 1 << 20});
    ASSERT_TRUE(j);
    EXPECT_EQ(j->recovery().torn_bytes, 0u);
    expect_records(read_all(*j, {1, 0}, j->end()), ws);
    EXPECT_EQ(read_bytes(file), full);
    std::filesystem::remove_all(dir);
  }
}

// A damaged byte inside the last record of the last segment (a write that
// was torn in the middle, not at the end) is cut too.
TEST(Journal, CorruptLastRecordOfLastSegmentIsCut) {
  TempDir tmp;
  const std::string dir = tmp / "j";
  std::vector<OwnedWrite> ws;
  for (uint64_t s = 1; s <= 3; ++s) ws.push_back(make_write(1, s, 200));
  JournalPosition last_start;
  {
    auto j = open_ok({dir, 1 << 20});
    ASSERT_TRUE(j);
    last_start = append_sync(*j, {ws.begin(), ws.end() - 1});
    append_sync(*j, {ws.back()});
  }
  auto seg = segment_files(dir);
  auto bytes = read_bytes(seg[0]);
  bytes[last_start.offset + 100] ^= 0x40;
  write_bytes(seg[0], bytes);
  auto j = open_ok({dir, 1 << 20});
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().records, 2u);
  EXPECT_NE(j->recovery().torn_reason.find("CRC"), std::string::npos) << j->recovery().torn_reason;
  EXPECT_EQ(j->end(), last_start);
}

// Builds a journal of several segments; returns the records.
std::vector<OwnedWrite> build_segments(const JournalOptions& o, int batches, int per_batch) {
  std::vector<OwnedWrite> all;
  auto j = open_ok(o);
  if (!j) return all;
  uint64_t seq = 0;
  for (int b = 0; b < batches; ++b) {
    std::vector<OwnedWrite> batch;
    for (int k = 0; k < per_batch; ++k) batch.push_back(make_write(1, ++seq, 100));
    append_sync(*j, batch);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

TEST(Journal, SegmentRolloverAndReadAcrossSegments) {
  TempDir tmp;
  const JournalOptions o{tmp / "j", 600};  // 4 records of 148 bytes: a new segment every batch or two
  auto ws = build_segments(o, 12, 3);
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  const auto files = segment_files(o.dir);
  EXPECT_GE(files.size(), 5u);
  EXPECT_EQ(j->segment_count(), files.size());
  // Every segment but the last is past the rollover threshold; a batch never spans two.
  for (size_t i = 0; i + 1 < files.size(); ++i) EXPECT_GE(std::filesystem::file_size(files[i]), 600u) << files[i];
  EXPECT_EQ(j->recovery().records, ws.size());

  JournalPosition end;
  auto all = read_all(*j, {0, 0}, j->end(), &end);
  expect_records(all, ws);
  EXPECT_EQ(end, j->end());
  // Positions are strictly increasing and read from any of them yields the rest.
  for (size_t i = 1; i < all.size(); ++i) ASSERT_LT(all[i - 1].at, all[i].at);
  for (size_t i = 0; i < all.size(); i += 5) {
    auto rest = read_all(*j, all[i].at, j->end());
    ASSERT_EQ(rest.size(), all.size() - i) << "from record " << i;
    EXPECT_EQ(rest.front().seq, all[i].seq);
  }
  // A limit in the middle stops there.
  auto head = read_all(*j, {0, 0}, all[20].at, &end);
  EXPECT_EQ(head.size(), 20u);
  EXPECT_EQ(end, all[20].at);
  // A visitor that refuses stops at the record it refused.
  size_t visited = 0;
  auto stop = j->read({0, 0}, j->end(), [&](const proto::JournalRecord& r, JournalPosition) {
    if (r.write.seq == 17) return false;
    ++visited;
    return true;
  });
  ASSERT_TRUE(stop);
  EXPECT_EQ(visited, 16u);
  EXPECT_EQ(stop.value(), all[16].at);
  // disk_bytes is the sum of the segments.
  uint64_t sum = 0;
  for (auto& f : files) sum += std::filesystem::file_size(f);
  EXPECT_EQ(j->disk_bytes(), sum);
}

TEST(Journal, TrimBeforeNeverDeletesTheLastSegment) {
  TempDir tmp;
  const JournalOptions o{tmp / "j", 600};
  auto ws = build_segments(o, 10, 3);
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  const auto files = segment_files(o.dir);
  ASSERT_GE(files.size(), 4u);
  const uint64_t last = j->end().segment;

  // Trim below the third segment: the first two files go.
  auto all = read_all(*j, {0, 0}, j->end());
  const uint64_t third = j->recovery().first.segment + 2;
  j->trim_before(third);
  EXPECT_EQ(segment_files(o.dir).size(), files.size() - 2);
  EXPECT_FALSE(std::filesystem::exists(files[0]));
  EXPECT_FALSE(std::filesystem::exists(files[1]));
  // Reading from the start skips to the first segment still there.
  auto rest = read_all(*j, {0, 0}, j->end());
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.front().at, (JournalPosition{third, 0}));
  EXPECT_EQ(rest.back().seq, ws.back().w.seq);

  // Trim "everything": the last segment stays, and appends continue.
  j->trim_before(UINT64_MAX);
  ASSERT_EQ(segment_files(o.dir).size(), 1u);
  EXPECT_EQ(j->segment_count(), 1u);
  EXPECT_EQ(j->end().segment, last);
  auto more = make_write(1, ws.back().w.seq + 1, 64);
  append_sync(*j, {more});
  j.reset();
  // A trimmed journal recovers from its first remaining segment.
  auto j2 = open_ok(o);
  ASSERT_TRUE(j2);
  EXPECT_EQ(j2->recovery().first.segment, last);
  EXPECT_EQ(j2->recovery().last_seq.at(1), more.w.seq);
}

// Corruption in a segment that is not the last cannot be a torn tail (the
// segment was complete and synced before the next one began): open fails,
// names the file, and changes no byte of any file.
TEST(Journal, CorruptionInEarlierSegmentRefusesAndChangesNothing) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  TempDir tmp;
  const JournalOptions o{tmp / "j", 600};
  build_segments(o, 8, 3);
  const auto files = segment_files(o.dir);
  ASSERT_GE(files.size(), 3u);

  for (int round = 0; round < 40; ++round) {
    const size_t victim = rng() % (files.size() - 1);  // never the last
    auto bytes = read_bytes(files[victim]);
    const auto original = bytes;
    std::string what;
    switch (rng() % 3) {
      case 0: {  // a flipped byte
        const size_t at = rng() % bytes.size();
        bytes[at] ^= static_cast<uint8_t>(1 + rng() % 255);
        what = "flip at " + std::to_string(at);
        break;
      }
      case 1: {  // cut short (lost its end)
        // Not at a record boundary (148-byte records): a segment cut
        // exactly between records is indistinguishable from a short one.
        size_t n = 1 + rng() % (bytes.size() - 1);
        if (n % 148 == 0) --n;
        bytes.resize(n);
        what = "truncated to " + std::to_string(n);
        break;
      }
      default: {  // garbage appended
        const size_t n = 1 + rng() % 64;
        for (size_t k = 0; k < n; ++k) bytes.push_back(static_cast<uint8_t>(rng()));
        what = "garbage of " + std::to_string(n);
        break;
      }
    }
    SCOPED_TRACE(files[victim] + ": " + what);
    write_bytes(files[victim], bytes);
    const auto before = snapshot_dir(o.dir);
    auto j = Journal::open(o);
    ASSERT_FALSE(j) << "corrupt journal opened";
    EXPECT_NE(j.error().detail.find(std::filesystem::path(files[victim]).filename().string()), std::string::npos)
        << j.error().detail;
    EXPECT_EQ(snapshot_dir(o.dir), before) << "a failed open changed the journal";
    write_bytes(files[victim], original);
  }
  // Restored: it opens again, with nothing lost.
  auto j = open_ok(o);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->recovery().records, 24u);
  EXPECT_EQ(j->recovery().torn_bytes, 0u);
}

// Seq going backwards (or repeating) for one writer is corruption, even in
// the last segment: it must not be mistaken for a torn tail.
TEST(Journal, SeqNotIncreasingPerWriterIsAnError) {
  for (uint64_t bad_seq : {uint64_t{2}, uint64_t{3}}) {
    SCOPED_TRACE("bad seq " + std::to_string(bad_seq));
    TempDir tmp;
    const JournalOptions o{tmp / "j", 1 << 20};
    {
      auto j = open_ok(o);
      ASSERT_TRUE(j);
      // Interleaved writers are fine; writer 1 goes 1 2 3 then back.
      append_sync(*j, {make_write(1, 1, 64), make_write(2, 1, 64), make_write(1, 2, 64), make_write(2, 2, 64),
                       make_write(1, 3, 64)});
      append_sync(*j, {make_write(1, bad_seq, 64), make_write(1, 4, 64)});
    }
    const auto before = snapshot_dir(o.dir);
    auto j = Journal::open(o);
    ASSERT_FALSE(j);
    EXPECT_NE(j.error().detail.find("seq " + std::to_string(bad_seq) + " after 3"), std::string::npos)
        << j.error().detail;
    EXPECT_EQ(snapshot_dir(o.dir), before);
  }
}

// Randomized: batches of random records for three writers, random segment
// size; a random crash point (cut, or garbage after the end); reopen must
// keep exactly the records before the damage that were synced.
TEST(Journal, RandomizedAppendCrashRecover) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 15; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    TempDir tmp;
    const JournalOptions o{tmp / "j", 256 + rng() % 4096};
    std::vector<OwnedWrite> ws;
    std::vector<JournalPosition> ends;  // end after each record
    std::map<uint32_t, uint64_t> seqs;
    {
      auto j = open_ok(o);
      ASSERT_TRUE(j);
      const int batches = 1 + static_cast<int>(rng() % 30);
      for (int b = 0; b < batches; ++b) {
        std::vector<OwnedWrite> batch;
        const int n = 1 + static_cast<int>(rng() % 5);
        for (int k = 0; k < n; ++k) {
          const uint32_t w = 1 + static_cast<uint32_t>(rng() % 3);
          const auto op = rng() % 5 == 0 ? proto::WriteOp::kDiscard : proto::WriteOp::kWrite;
          batch.push_back(make_write(w, ++seqs[w], 1 + static_cast<uint32_t>(rng() % 700), rng() % 100000, op));
        }
        append_sync(*j, batch);
        ws.insert(ws.end(), batch.begin(), batch.end());
      }
      auto all = read_all(*j, {0, 0}, j->end());
      expect_records(all, ws);
      for (size_t i = 0; i + 1 < all.size(); ++i) ends.push_back(all[i + 1].at);
      ends.push_back(j->end());
    }
    // Crash: the last segment loses a random number of its bytes, or gets
    // junk after its end.
    auto files = segment_files(o.dir);
    auto last = read_bytes(files.back());
    const uint64_t last_no = ends.back().segment;
    size_t keep_records = ws.size();
    if (!last.empty() && rng() % 2 == 0) {
      const size_t cut = rng() % last.size();
      last.resize(cut);
      // Records that ended at or before the cut in the last segment survive.
      keep_records = 0;
      for (size_t i = 0; i < ends.size(); ++i)
        if (ends[i].segment < last_no || (ends[i].segment == last_no && ends[i].offset <= cut)) keep_records = i + 1;
    } else {
      const size_t n = 1 + rng() % 300;
      for (size_t k = 0; k < n; ++k) last.push_back(static_cast<uint8_t>(rng()));
    }
    write_bytes(files.back(), last);
    auto j = open_ok(o);
    ASSERT_TRUE(j);
    EXPECT_EQ(j->recovery().records, keep_records);
    expect_records(read_all(*j, {0, 0}, j->end()), {ws.begin(), ws.begin() + static_cast<ptrdiff_t>(keep_records)});
    // And it keeps going.
    auto more = make_write(9, 1, 33);
    append_sync(*j, {more});
    j.reset();
    auto j2 = open_ok(o);
    ASSERT_TRUE(j2);
    EXPECT_EQ(j2->recovery().records, keep_records + 1);
    EXPECT_EQ(j2->recovery().torn_bytes, 0u);
  }
}

}  // namespace
}  // namespace tideway::testing
