// The pieces of the codec on the replication stream: the ENCODED flag of
// REPL_WRITE and the re-attach status on the wire, the [codec] tables of
// both daemons, and the replicator's WriteDecoder against the agent's
// WriteEncoder (round trip, wrong pages, budget, restarts, corruption).
#include <gtest/gtest.h>

#include <random>

#include "agent/agent_config.h"
#include "agent/write_encoder.h"
#include "proto/messages.h"
#include "replicator/replicator_config.h"
#include "replicator/write_decoder.h"
#include "tests/test_seed.h"

namespace tideway::testing {
namespace {

using proto::ReplWrite;

std::vector<uint8_t> pages_of(uint32_t pages, uint64_t seed) {
  std::vector<uint8_t> d(size_t{pages} * 4096);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < d.size(); i += 4096) {
    const uint64_t kind = rng() % 3;  // zero, repeated, random pages
    for (size_t j = 0; j < 4096; ++j)
      d[i + j] = kind == 0 ? 0 : kind == 1 ? static_cast<uint8_t>(j * 7) : static_cast<uint8_t>(rng());
  }
  return d;
}

agent::RetainedWrite retained(uint64_t seq, uint32_t volume, uint64_t offset, std::vector<uint8_t> data) {
  agent::RetainedWrite w;
  w.seq = seq;
  w.volume = volume;
  w.offset = offset;
  w.length = static_cast<uint32_t>(data.size());
  w.data = std::move(data);
  return w;
}

// The REPL_WRITE as the link sends it: the batch in `data`.
ReplWrite encoded_write(const agent::RetainedWrite& rw, const std::vector<uint8_t>& batch) {
  ReplWrite m;
  m.writer = 1;
  m.volume = rw.volume;
  m.seq = rw.seq;
  m.flags = proto::kWriteEncoded;
  m.offset = rw.offset;
  m.length = rw.length;
  m.data = batch;
  return m;
}

std::unique_ptr<agent::WriteEncoder> make_encoder(
    const wan::codec::CodecConfig& c = agent::ReplicationCodecOptions::replication_codec_defaults()) {
  auto e = agent::WriteEncoder::create(c);
  EXPECT_TRUE(e) << e.error().detail;
  return std::move(e).value();
}

constexpr uint64_t kBudget = 1ull << 30;

// --- wire ------------------------------------------------------------------

TEST(ReplWriteEncoded, RoundTripsCanonically) {
  std::vector<uint8_t> batch(300, 0xab);
  ReplWrite m;
  m.writer = 5;
  m.volume = 2;
  m.seq = 9;
  m.flags = proto::kWriteEncoded | proto::kWriteFua;
  m.offset = 8192;
  m.length = 3 * 4096;
  m.data = batch;
  const auto bytes = proto::encode_payload(m);
  auto d = proto::decode_payload(proto::MessageType::kReplWrite, bytes);
  ASSERT_TRUE(d) << d.error().detail;
  const auto& x = std::get<ReplWrite>(d.value());
  EXPECT_EQ(x.length, m.length);
  EXPECT_EQ(x.flags, m.flags);
  ASSERT_EQ(x.data.size(), batch.size());
  EXPECT_TRUE(std::equal(x.data.begin(), x.data.end(), batch.begin()));
  EXPECT_EQ(proto::encode_payload(x), bytes);
}

TEST(ReplWriteEncoded, RefusesWhatCannotBeEncoded) {
  std::vector<uint8_t> batch(100, 1);
  auto base = [&] {
    ReplWrite m;
    m.writer = 1;
    m.volume = 1;
    m.seq = 1;
    m.flags = proto::kWriteEncoded;
    m.offset = 4096;
    m.length = 4096;
    m.data = batch;
    return proto::encode_payload(m);
  };
  auto decode = [](const std::vector<uint8_t>& b) { return proto::decode_payload(proto::MessageType::kReplWrite, b); };
  ASSERT_TRUE(decode(base()));
  // Field offsets: writer 0, volume 4, seq 8, vlen 16, op 17, flags 18,
  // offset 22, length 30, elen 34, data 38.
  auto patched = [&](size_t at, std::vector<uint8_t> v) {
    auto b = base();
    std::copy(v.begin(), v.end(), b.begin() + static_cast<long>(at));
    return b;
  };
  EXPECT_EQ(decode(patched(22, {1, 0x10})).error().code, proto::Errc::kMalformed);  // offset 4097
  EXPECT_EQ(decode(patched(30, {1, 0x10})).error().code, proto::Errc::kMalformed);  // length 4097
  EXPECT_EQ(decode(patched(17, {2})).error().code, proto::Errc::kMalformed);        // a discard
  EXPECT_EQ(decode(patched(18, {6})).error().code, proto::Errc::kMalformed);        // unknown flag bit 2
  EXPECT_EQ(decode(patched(34, {0, 0, 0, 0})).error().code, proto::Errc::kMalformed);   // empty batch
  EXPECT_EQ(decode(patched(34, {1, 0x20, 0x10, 0})).error().code, proto::Errc::kTooLarge);  // 1 MiB + 8 KiB + 1
  EXPECT_EQ(decode(patched(34, {101, 0, 0, 0})).error().code, proto::Errc::kTruncated);
  auto longer = base();
  longer.push_back(0);
  EXPECT_EQ(decode(longer).error().code, proto::Errc::kTrailingBytes);
  // Volume beyond the codec's address space.
  EXPECT_EQ(decode(patched(4, {0, 0, 1, 0})).error().code, proto::Errc::kMalformed);
}

TEST(ReplWriteEncoded, AddressesAreUniquePerVolumeAndSequential) {
  EXPECT_EQ(proto::repl_page_address(0, 4096), 4096u);
  EXPECT_NE(proto::repl_page_address(1, 0), proto::repl_page_address(0, 0));
  EXPECT_EQ(proto::repl_page_address(2, 8192) + 4096, proto::repl_page_address(2, 12288));
  EXPECT_TRUE(proto::repl_encodable(proto::WriteOp::kWrite, 65535, (1ull << 48) - 4096, 4096));
  EXPECT_FALSE(proto::repl_encodable(proto::WriteOp::kWrite, 65536, 0, 4096));
  EXPECT_FALSE(proto::repl_encodable(proto::WriteOp::kWrite, 0, 1ull << 48, 4096));
  EXPECT_FALSE(proto::repl_encodable(proto::WriteOp::kWriteZeroes, 0, 0, 4096));
}

TEST(ReplAttached, ReattachStatusRoundTripsAndUnknownIsRefused) {
  proto::ReplAttached a{3, 4, proto::AttachStatus::kReattach, 77, "codec batch refused"};
  auto bytes = proto::encode_payload(a);
  auto d = proto::decode_payload(proto::MessageType::kReplAttached, bytes);
  ASSERT_TRUE(d);
  EXPECT_EQ(std::get<proto::ReplAttached>(d.value()), a);
  bytes[8] = 3;  // status
  EXPECT_EQ(proto::decode_payload(proto::MessageType::kReplAttached, bytes).error().code, proto::Errc::kMalformed);
}

// --- configuration -----------------------------------------------------------

const std::string kTls = "[tls]\nplaintext_for_tests = true\n";
const std::string kAgentBase = "site = \"p\"\n[backup.dr]\naddress = \"10.0.0.1\"\n" + kTls;

TEST(CodecConfig, AgentDefaultsAndValues) {
  auto c = agent::parse_agent_config(kAgentBase, "t.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_TRUE(c->codec.enabled);
  EXPECT_EQ(c->codec.config.cache_bytes, 64ull << 20);
  EXPECT_EQ(c->codec.config.sub_blocks, 4u);
  EXPECT_EQ(c->codec.config.zstd_level, 1);
  EXPECT_EQ(c->codec.config.delta_store_bytes, 0u);
  c = agent::parse_agent_config(
      kAgentBase + "[codec]\nreplication = false\ncache_mb = 0\nsub_blocks = 8\nzstd_level = -3\ndelta_mb = 16\n",
      "t.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_FALSE(c->codec.enabled);
  EXPECT_EQ(c->codec.config.cache_bytes, 0u);
  EXPECT_EQ(c->codec.config.sub_blocks, 8u);
  EXPECT_EQ(c->codec.config.zstd_level, -3);
  EXPECT_EQ(c->codec.config.delta_store_bytes, 16ull << 20);
}

TEST(CodecConfig, AgentRefusesBadValuesWithTheKey) {
  const std::pair<const char*, const char*> bad[] = {
      {"sub_blocks = 3", "sub_blocks"},      {"sub_blocks = 16", "sub_blocks"},
      {"cache_mb = -1", "cache_mb"},         {"cache_mb = 1.5", "cache_mb"},
      {"cache_mb = 70000", "cache_mb"},      {"zstd_level = 20", "zstd_level"},
      {"delta_mb = \"64\"", "delta_mb"},     {"replication = \"yes\"", "replication"},
      {"cache = 64", "unknown key"},
  };
  for (auto [line, what] : bad) {
    auto c = agent::parse_agent_config(kAgentBase + "[codec]\n" + line + "\n", "t.toml");
    ASSERT_FALSE(c) << line;
    EXPECT_NE(c.error().detail.find(what), std::string::npos) << line << ": " << c.error().detail;
    EXPECT_NE(c.error().detail.find("t.toml"), std::string::npos) << c.error().detail;
  }
  auto c = agent::parse_agent_config("codec = 1\n" + kAgentBase, "t.toml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().detail.find("[codec]"), std::string::npos) << c.error().detail;
}

TEST(CodecConfig, ReplicatorMemoryLimit) {
  auto c = replicator::parse_replicator_config("site = \"dr\"\n" + kTls, "r.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_EQ(c->options.codec_max_memory_bytes, 1ull << 30);
  c = replicator::parse_replicator_config("site = \"dr\"\n" + kTls + "[codec]\nmax_memory_mb = 0\n", "r.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_EQ(c->options.codec_max_memory_bytes, 0u);
  for (const char* bad : {"max_memory_mb = -5", "max_memory_mb = \"1\"", "max_mb = 4"}) {
    auto r = replicator::parse_replicator_config("site = \"dr\"\n" + kTls + "[codec]\n" + bad + "\n", "r.toml");
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().detail.find("[codec]"), std::string::npos) << r.error().detail;
  }
}

// --- the replicator's decoder against the agent's encoder --------------------

TEST(WriteDecoder, DecodesWhatTheEncoderSent) {
  auto enc = make_encoder();
  replicator::WriteDecoder dec;
  std::vector<uint8_t> batch;
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    auto rw = retained(seq, 2, 4096 * (seq * 13 % 64), pages_of(1 + seq % 9, seq % 4));  // repeats content
    ASSERT_TRUE(enc->encode(rw, batch));
    auto out = dec.decode(encoded_write(rw, batch), kBudget);
    ASSERT_TRUE(out) << out.error().detail;
    ASSERT_TRUE(std::equal(out->begin(), out->end(), rw.data.begin(), rw.data.end())) << "seq " << seq;
  }
  EXPECT_GT(enc->stats().sub_hit, 0u);
  EXPECT_EQ(dec.status()["decoded_writes"], 20);
  EXPECT_GT(dec.memory_bytes(), 64ull << 20);
}

TEST(WriteDecoder, RefusesABatchOfOtherPages) {
  auto enc = make_encoder();
  replicator::WriteDecoder dec;
  std::vector<uint8_t> batch;
  auto rw = retained(1, 1, 8192, pages_of(2, 1));
  ASSERT_TRUE(enc->encode(rw, batch));
  auto m = encoded_write(rw, batch);
  m.offset = 4096;  // a batch that decodes, but for other addresses
  auto out = dec.decode(m, kBudget);
  ASSERT_FALSE(out);
  EXPECT_EQ(dec.last_error(), replicator::WriteDecodeError::kBadBatch);
  EXPECT_NE(out.error().detail.find("address"), std::string::npos) << out.error().detail;
  m = encoded_write(rw, batch);
  m.length = 3 * 4096;
  m.seq = 2;
  EXPECT_FALSE(dec.decode(m, kBudget));
}

TEST(WriteDecoder, BudgetIsCheckedBeforeAllocating) {
  auto enc = make_encoder();
  replicator::WriteDecoder dec;
  std::vector<uint8_t> batch;
  auto rw = retained(1, 1, 0, pages_of(1, 1));
  ASSERT_TRUE(enc->encode(rw, batch));
  auto out = dec.decode(encoded_write(rw, batch), 32ull << 20);
  ASSERT_FALSE(out);
  EXPECT_EQ(dec.last_error(), replicator::WriteDecodeError::kOverBudget);
  EXPECT_NE(out.error().detail.find("max_memory_mb"), std::string::npos) << out.error().detail;
  EXPECT_EQ(dec.memory_bytes(), 0u);
  EXPECT_TRUE(dec.decode(encoded_write(rw, batch), kBudget));
}

// A missing batch is a gap until both ends restart (agent: reset on attach;
// replicator: reset on accepting it); other state parameters are only
// accepted at such a restart.
TEST(WriteDecoder, GapsAndNewParametersNeedARestart) {
  auto enc = make_encoder();
  replicator::WriteDecoder dec;
  std::vector<uint8_t> batch;
  auto w1 = retained(1, 1, 0, pages_of(4, 1)), w2 = retained(2, 1, 0, pages_of(4, 2)),
       w3 = retained(3, 1, 0, pages_of(4, 3));
  ASSERT_TRUE(enc->encode(w1, batch));
  ASSERT_TRUE(dec.decode(encoded_write(w1, batch), kBudget));
  ASSERT_TRUE(enc->encode(w2, batch));  // lost
  ASSERT_TRUE(enc->encode(w3, batch));
  auto out = dec.decode(encoded_write(w3, batch), kBudget);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().detail.find("gap"), std::string::npos) << out.error().detail;
  enc->reset();
  dec.reset();
  ASSERT_TRUE(enc->encode(w2, batch));
  ASSERT_TRUE(dec.decode(encoded_write(w2, batch), kBudget));

  auto c = agent::ReplicationCodecOptions::replication_codec_defaults();
  c.cache_bytes = 8ull << 20;
  auto other = make_encoder(c);
  ASSERT_TRUE(other->encode(w3, batch));
  EXPECT_FALSE(dec.decode(encoded_write(w3, batch), kBudget));  // mid-stream
  dec.reset();
  auto ok = dec.decode(encoded_write(w3, batch), kBudget);
  ASSERT_TRUE(ok) << ok.error().detail;
  EXPECT_TRUE(std::equal(ok->begin(), ok->end(), w3.data.begin(), w3.data.end()));
}

// Random corruption of batches: never a crash, never wrong bytes. After a
// refusal the stream restarts (as the link does) and goes on.
TEST(WriteDecoder, CorruptBatchesNeverYieldWrongBytes) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  auto enc = make_encoder();
  replicator::WriteDecoder dec;
  std::vector<uint8_t> batch;
  int refused = 0;
  for (uint64_t seq = 1; seq <= 400; ++seq) {
    auto rw = retained(seq, 1, 4096 * (rng() % 512), pages_of(1 + rng() % 16, rng() % 6));
    ASSERT_TRUE(enc->encode(rw, batch));
    if (rng() % 3 == 0) {
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int f = 0; f < flips; ++f) batch[rng() % batch.size()] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    auto out = dec.decode(encoded_write(rw, batch), kBudget);
    if (out) {
      ASSERT_TRUE(std::equal(out->begin(), out->end(), rw.data.begin(), rw.data.end())) << "seq " << seq;
    } else {
      ++refused;
      enc->reset();
      dec.reset();
    }
  }
  EXPECT_GT(refused, 50);
  EXPECT_EQ(dec.status()["failures"].get<int>(), refused);
}

}  // namespace
}  // namespace tideway::testing
