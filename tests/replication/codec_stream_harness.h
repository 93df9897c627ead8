// Harness of the codec-on-the-replication-stream tests: a Replicator in a
// temp data_dir and an agent's ReplicationLink + WriteLog in one process
// over a plaintext channel on 127.0.0.1, each on its own io thread. Writes
// are issued straight into the WriteLog, so the test knows every seq's
// bytes and can check the journal record by record: every seq exactly
// once, byte for byte, never a codec batch.
#pragma once

#include <gtest/gtest.h>

#include <mutex>
#include <random>
#include <set>

#include "agent/replication_link.h"
#include "agent/write_log.h"
#include "replicator/replicator.h"
#include "tests/replication/repl_test_util.h"
#include "tests/wan/channel_harness.h"

namespace tideway::testing {

inline constexpr uint32_t kCodecWriter = 11;
inline constexpr uint32_t kCodecVolume = 3;
inline constexpr uint64_t kCodecVolSize = 64ull << 20;
inline const std::string kCodecVolName = "codec-disk";

struct IssuedWrite {
  proto::WriteOp op = proto::WriteOp::kWrite;
  uint64_t offset = 0;
  uint32_t length = 0;
  std::vector<uint8_t> data;
};

// Content with the redundancy the codec looks for: pages from a small pool
// (CBR hits), zero pages, fresh random pages; some writes unaligned (they
// go raw) and some discards.
class ContentGen {
 public:
  explicit ContentGen(uint64_t seed) : rng_(seed) {
    for (auto& p : pool_) p = random_page();
  }
  IssuedWrite next() {
    IssuedWrite w;
    const uint64_t kind = rng_() % 20;
    if (kind == 0) {  // discard
      w.op = proto::WriteOp::kDiscard;
      w.length = static_cast<uint32_t>(4096 * (1 + rng_() % 64));
      w.offset = 4096 * (rng_() % ((kCodecVolSize - w.length) / 4096));
      return w;
    }
    if (kind == 1) {  // unaligned: raw
      w.length = static_cast<uint32_t>(1 + rng_() % (64 * 1024));
      w.offset = rng_() % (kCodecVolSize - w.length);
      w.data.resize(w.length);
      for (auto& b : w.data) b = static_cast<uint8_t>(rng_());
      return w;
    }
    const uint32_t pages = kind == 2 ? proto::kMaxWriteLen / 4096 : static_cast<uint32_t>(1 + rng_() % 48);
    w.length = pages * 4096;
    w.offset = 4096 * (rng_() % ((kCodecVolSize - w.length) / 4096 + 1));
    w.data.reserve(w.length);
    for (uint32_t i = 0; i < pages; ++i) {
      const uint64_t pick = rng_() % 10;
      std::vector<uint8_t> page = pick < 6 ? pool_[rng_() % pool_.size()]
                                  : pick < 8 ? std::vector<uint8_t>(4096, 0)
                                             : random_page();
      w.data.insert(w.data.end(), page.begin(), page.end());
    }
    return w;
  }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::vector<uint8_t> random_page() {
    std::vector<uint8_t> p(4096);
    for (auto& b : p) b = static_cast<uint8_t>(rng_());
    return p;
  }
  std::mt19937_64 rng_;
  std::array<std::vector<uint8_t>, 24> pool_;
};

class CodecStreamTest : public ::testing::Test {
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
    o.listen = boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), port);
    o.segment_bytes = 1ull << 30;  // one segment: nothing is trimmed, the test reads it all
    o.max_pending_bytes = 4ull << 20;
    o.apply_sync_interval = std::chrono::milliseconds(50);
    o.codec_max_memory_bytes = codec_max_memory;
    return o;
  }

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

  void start_agent() {
    log = std::make_shared<agent::WriteLog>(kCodecWriter, 256ull << 20, wan::system_clock());
    link = agent_io.call([&] {
      auto o = base_options("primary");
      o.tls.plaintext_for_tests = true;
      auto l = agent::ReplicationLink::create(agent_io.io(), o, "127.0.0.1", port, link_opts);
      if (hook) l->set_batch_hook_for_tests(hook);
      l->start();
      l->add(log, {agent::LinkVolume{kCodecVolume, kCodecVolName, kCodecVolSize}}, nullptr);
      return l;
    });
  }

  void stop_agent() {
    if (log) log->close();
    if (link) agent_io.call([&] {
        link->stop();
        link.reset();
        return 0;
      });
  }

  // Issues the write into the log (as a tap would) and remembers its bytes.
  uint64_t issue(IssuedWrite w) {
    const uint64_t seq = log->issue(kCodecVolume, w.op, 0, w.offset, w.length, w.data);
    EXPECT_NE(seq, 0u);
    std::lock_guard lock(mu);
    issued[seq] = std::move(w);
    return seq;
  }

  bool wait_all_committed(std::chrono::milliseconds limit = std::chrono::seconds(90)) {
    return wait_until([&] { return log->committed() == log->pending(); }, limit);
  }

  nlohmann::json agent_codec() {
    return agent_io.call([&] { return link->codec_status(kCodecWriter); });
  }
  nlohmann::json repl_status() {
    return repl_io.call([&] { return rep->status(); });
  }
  nlohmann::json repl_codec() {
    const nlohmann::json st = repl_status();
    for (const auto& v : st["volumes"])
      if (v["name"] == kCodecVolName && v.contains("codec")) return v["codec"];
    return nullptr;
  }

  // Reads every journal record and checks it against what was issued.
  // Empty when the journal holds each issued seq exactly once, byte for
  // byte (all of them when `complete`); else the first problems.
  std::string check_journal(bool complete = true) {
    std::set<uint64_t> seen;
    std::string problems;
    int n = 0;
    auto problem = [&](const std::string& p) {
      if (n++ < 5) problems += p + "; ";
    };
    std::lock_guard lock(mu);
    for (const auto& seg : segment_files(data_dir + "/journal")) {
      const auto bytes = read_bytes(seg);
      size_t off = 0;
      while (off < bytes.size()) {
        auto rec = proto::decode_journal_record({bytes.data() + off, bytes.size() - off});
        if (!rec) {
          problem("undecodable record at " + std::to_string(off) + ": " + rec.error().detail);
          break;
        }
        off += rec->size;
        const auto& w = rec->write;
        const std::string at = "seq " + std::to_string(w.seq);
        auto it = issued.find(w.seq);
        if (w.writer != kCodecWriter || it == issued.end()) {
          problem(at + " was never issued");
          continue;
        }
        if (!seen.insert(w.seq).second) problem(at + " journaled twice");
        const IssuedWrite& e = it->second;
        if (w.volume != kCodecVolume || w.op != e.op || w.offset != e.offset || w.length != e.length ||
            w.flags != 0)
          problem(at + " has other fields than issued");
        if (!std::equal(w.data.begin(), w.data.end(), e.data.begin(), e.data.end()))
          problem(at + " has other bytes than issued");
      }
    }
    if (complete)
      for (const auto& [seq, w] : issued)
        if (!seen.count(seq)) problem("seq " + std::to_string(seq) + " missing");
    if (n > 5) problems += std::to_string(n) + " problems in all";
    return problems;
  }

  TempDir tmp;
  const std::string data_dir = tmp / "backup";
  IoThread repl_io, agent_io;
  uint16_t port = 0;
  uint64_t codec_max_memory = 1ull << 30;
  agent::ReplicationLinkOptions link_opts;
  agent::ReplicationLink::BatchHook hook;
  std::unique_ptr<replicator::Replicator> rep;
  std::shared_ptr<agent::WriteLog> log;
  std::shared_ptr<agent::ReplicationLink> link;
  std::mutex mu;
  std::map<uint64_t, IssuedWrite> issued;
};

}  // namespace tideway::testing
