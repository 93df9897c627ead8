// The disk half of a migration: DirtyMap, VmDisk's generations and mirror,
// and DiskCopySource -> DiskCopyDestination over a real loopback channel
// (mutual TLS, the migration streams), with a writer thread standing in for
// the NBD server's: bulk passes under writes, mirroring, the incremental
// return, and malformed disk messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "agent/disk_copy_destination.h"
#include "agent/disk_copy_source.h"
#include "agent/dirty_map.h"
#include "agent/migration_options.h"
#include "agent/vm_disk.h"
#include "tests/wan/channel_harness.h"
#include "wan/mig_streams.h"

namespace tideway::agent {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/tw-diskcopy.XXXXXX";
    path = ::mkdtemp(t);
  }
  ~TempDir() { fs::remove_all(path); }
};

uint64_t seed_from_env() {
  const char* s = std::getenv("TW_SEED");
  return s ? std::strtoull(s, nullptr, 10) : std::random_device{}();
}

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// --- DirtyMap ------------------------------------------------------------

TEST(DirtyMap, MarksTakesRunsAndCounts) {
  DirtyMap m(10 * 4096 + 100);  // a partial last block
  EXPECT_EQ(m.blocks(), 11u);
  m.mark(4096 + 1, 2);          // block 1
  m.mark(3 * 4096, 3 * 4096);   // blocks 3..5
  m.mark(10 * 4096, 100);       // block 10
  EXPECT_EQ(m.dirty_blocks(), 5u);
  uint64_t off = 0, len = 0;
  ASSERT_TRUE(m.take_run(0, 256, off, len));
  EXPECT_EQ(off, 4096u);
  EXPECT_EQ(len, 4096u);
  ASSERT_TRUE(m.take_run(off + len, 2, off, len));  // capped at 2 blocks
  EXPECT_EQ(off, 3 * 4096u);
  EXPECT_EQ(len, 2 * 4096u);
  ASSERT_TRUE(m.take_run(off + len, 256, off, len));
  EXPECT_EQ(off, 5 * 4096u);
  ASSERT_TRUE(m.take_run(off + len, 256, off, len));
  EXPECT_EQ(off, 10 * 4096u);
  EXPECT_EQ(len, 100u);  // the disk ends inside the block
  EXPECT_FALSE(m.take_run(0, 256, off, len));
  EXPECT_TRUE(m.empty());
  m.mark_all();
  EXPECT_EQ(m.dirty_blocks(), 11u);
}

TEST(DirtyMap, SavesLoadsAndRefusesDamagedFiles) {
  TempDir t;
  const std::string p = t.path + "/map";
  DirtyMap m(1 << 20);
  m.mark(8192, 4096 * 7);
  ASSERT_TRUE(m.save(p));
  auto back = DirtyMap::load(p, 1 << 20);
  ASSERT_TRUE(back) << back.error().detail;
  EXPECT_EQ(back->dirty_blocks(), 7u);
  EXPECT_TRUE(back->test(2));
  EXPECT_FALSE(back->test(1));
  EXPECT_FALSE(DirtyMap::load(p, 2 << 20));  // another disk's size
  auto bytes = read_all(p);
  bytes[30] ^= 0x10;  // one bit in the map
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto bad = DirtyMap::load(p, 1 << 20);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().detail.find("checksum"), std::string::npos) << bad.error().detail;
  std::ofstream(p, std::ios::binary | std::ios::trunc) << "short";
  EXPECT_FALSE(DirtyMap::load(p, 1 << 20));
}

// --- VmDisk --------------------------------------------------------------

int write_sync(VmDisk& d, uint64_t off, std::span<const uint8_t> data) {
  std::promise<int> p;
  auto f = p.get_future();
  d.write(off, data, false, [&p](int e) { p.set_value(e); });
  return f.get();
}

TEST(VmDisk, GenerationAndMapSurviveACleanCloseOnly) {
  TempDir t;
  const std::string img = t.path + "/d.img";
  std::vector<uint8_t> block(4096, 0xab);
  {
    auto d = VmDisk::open(img, 1 << 20);
    ASSERT_TRUE(d) << d.error().detail;
    ASSERT_TRUE((*d)->set_generation("g1"));
    ASSERT_EQ(write_sync(**d, 5 * 4096, block), 0);
    ASSERT_TRUE((*d)->close());
  }
  {
    auto d = VmDisk::open(img);
    ASSERT_TRUE(d) << d.error().detail;
    EXPECT_EQ((*d)->generation(), "g1");
    const DirtyMap m = (*d)->since_generation();
    EXPECT_EQ(m.dirty_blocks(), 1u);
    EXPECT_TRUE(m.test(5));
    // While it is open the sidecar says "in use": an agent that crashed
    // now restarts with no generation (the next copy is full).
    auto crashed = VmDisk::open(img);
    ASSERT_TRUE(crashed);
    EXPECT_EQ((*crashed)->generation(), "");
  }
}

TEST(VmDisk, DataMapSkipsHoles) {
  TempDir t;
  auto d = VmDisk::open(t.path + "/d.img", 64 << 20);
  ASSERT_TRUE(d);
  std::vector<uint8_t> block(64 << 10, 1);
  ASSERT_EQ(write_sync(**d, 8 << 20, block), 0);
  const DirtyMap m = (*d)->data_map();
  EXPECT_GE(m.dirty_blocks(), 16u);
  EXPECT_LT(m.dirty_blocks(), 1024u) << "a sparse image must not be copied whole";
  EXPECT_TRUE(m.test((8 << 20) / 4096));
}

// --- copy over a channel ---------------------------------------------------

// Source and destination agents' halves on one io thread, over loopback.
struct CopyRig {
  testing::TestPki pki = testing::TestPki::create();
  IoThread io;
  std::shared_ptr<wan::ChannelServer> server;
  std::shared_ptr<wan::ChannelClient> client;
  std::shared_ptr<DiskCopyDestination> dst;
  std::shared_ptr<DiskCopySource> src;
  std::vector<std::shared_ptr<VmDisk>> dst_disks;
  std::string dst_error;
  MigrateOptions opts;
  uint32_t migration = 7;

  wan::ChannelOptions options(const std::string& site) {
    auto o = testing::base_options(site);
    o.streams = wan::migration_streams(0, 4u << 20);
    testing::use_certs(o, pki, pki.issue(site));
    return o;
  }

  void connect() {
    server = wan::ChannelServer::create(io.io(), options("b"),
                                        boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
    server->on_session([this](const std::shared_ptr<wan::Session>& s) {
      DiskCopyDestination::Setup d;
      d.migration = migration;
      d.disks = dst_disks;
      d.codec = disk_codec_config(opts);
      d.session = s;
      d.on_error = [this](const std::string& why) { dst_error = why; };
      dst = DiskCopyDestination::create(io.io(), std::move(d)).value();
      s->on_message(wan::kMigDiskStream, [this](proto::MessageType t, std::span<const uint8_t> p) {
        dst->on_message(t, p);
      });
    });
    io.call([&] {
      server->start();
      return 0;
    });
    client = wan::ChannelClient::create(io.io(), options("a"), "127.0.0.1", server->port());
    client->session()->on_message(wan::kMigControlStream, [this](proto::MessageType t, std::span<const uint8_t> p) {
      auto m = proto::decode_payload(t, p);
      if (m && std::holds_alternative<proto::ReplAck>(*m) && src) src->on_ack(std::get<proto::ReplAck>(*m));
    });
    client->session()->on_writable(wan::kMigDiskStream, [this] {
      if (src) src->on_writable();
    });
    io.call([&] {
      client->start();
      return 0;
    });
  }

  // Starts the copy; returns a future that holds once the destination has
  // every block (mirroring on).
  std::future<bool> start(std::vector<std::shared_ptr<VmDisk>> disks, std::vector<bool> incremental) {
    auto ready = std::make_shared<std::promise<bool>>();
    auto f = ready->get_future();
    io.call([&] {
      DiskCopySource::Setup s;
      s.migration = migration;
      s.disks = std::move(disks);
      s.incremental = std::move(incremental);
      s.codec = disk_codec_config(opts);
      s.session = client->session();
      src = DiskCopySource::create(io.io(), std::move(s)).value();
      src->start([ready](proto::Result<void> r) { ready->set_value(static_cast<bool>(r)); });
      return 0;
    });
    return f;
  }

  ~CopyRig() {
    io.call([&] {
      if (src) src->stop();
      if (client) client->stop();
      if (server) server->stop();
      return 0;
    });
    io.stop();
    pki.remove();
  }
};

// A guest's writes: random 4-16 KiB writes until stopped, each waiting for
// its completion (a mirrored write completes only at the destination's ack).
struct Writer {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0};
  std::atomic<int> errors{0};
  std::thread t;
  Writer(VmDisk& d, uint64_t seed, uint64_t span) {
    t = std::thread([this, &d, seed, span] {
      std::mt19937_64 rng(seed);
      std::vector<uint8_t> buf(16384);
      while (!stop) {
        const uint64_t blocks = 1 + rng() % 4;
        const uint64_t off = (rng() % (span / 4096 - blocks)) * 4096;
        for (auto& b : buf) b = static_cast<uint8_t>(rng());
        if (write_sync(d, off, std::span<const uint8_t>(buf).first(blocks * 4096)) != 0) ++errors;
        ++writes;
        std::this_thread::sleep_for(200us);
      }
    });
  }
  void finish() {
    stop = true;
    t.join();
  }
};

void fill_image(VmDisk& d, uint64_t seed, uint64_t bytes) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < bytes; off += buf.size()) {
    // A quarter of the megabytes repeat an earlier one (CBR hits), some are zero.
    const uint64_t kind = rng() % 8;
    if (kind == 0) std::fill(buf.begin(), buf.end(), 0);
    else if (kind > 2) for (auto& b : buf) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(d.volume().pwrite_all(off, buf), 0);
  }
}

TEST(DiskCopy, FullCopyUnderWritesThenMirrorLeavesIdenticalImagesAndIncrementalReturnSendsOnlyChanges) {
  const uint64_t seed = seed_from_env();
  SCOPED_TRACE("TW_SEED=" + std::to_string(seed));
  std::printf("TW_SEED=%llu\n", static_cast<unsigned long long>(seed));
  TempDir t;
  constexpr uint64_t kSize = 64 << 20, kData = 40 << 20;
  auto a = VmDisk::open(t.path + "/a.img", kSize).value();
  auto b = VmDisk::open(t.path + "/b.img", kSize).value();
  fill_image(*a, seed, kData);
  std::shared_ptr<VmDisk> sa(std::move(a)), sb(std::move(b));

  uint64_t first_wire = 0;
  {
    CopyRig rig;
    rig.dst_disks = {sb};
    rig.connect();
    Writer w(*sa, seed + 1, kData);  // writes during the bulk passes
    auto ready = rig.start({sa}, {false});
    ASSERT_EQ(ready.wait_for(120s), std::future_status::ready);
    ASSERT_TRUE(ready.get()) << rig.dst_error;
    // Mirroring: writes go on, each acked by the destination.
    std::this_thread::sleep_for(300ms);
    w.finish();
    EXPECT_EQ(w.errors, 0);
    ASSERT_TRUE(testing::eventually(rig.io, [&] { return rig.src->settled(); }));
    const DiskProgress p = rig.io.call([&] { return rig.src->progress(); });
    EXPECT_EQ(rig.dst_error, "");
    EXPECT_GT(p.mirrored_writes, 0u) << "no write was mirrored: the test did not exercise the mirror";
    EXPECT_GE(p.passes.size(), 2u);
    EXPECT_LT(p.blocks_to_copy, kSize / 4096) << "holes must not be copied";
    EXPECT_LT(p.wire_bytes, p.bytes_sent) << "the codec saved nothing on repeated and zero megabytes";
    first_wire = p.wire_bytes;
    std::printf("full copy: %zu passes, %llu blocks, %llu bytes -> %llu on the wire, %llu mirrored writes\n",
                p.passes.size(), (unsigned long long)p.blocks_sent, (unsigned long long)p.bytes_sent,
                (unsigned long long)p.wire_bytes, (unsigned long long)p.mirrored_writes);
    rig.io.call([&] {
      rig.src->stop();
      return 0;
    });
  }
  ASSERT_EQ(read_all(sa->path()), read_all(sb->path())) << "the destination image differs from the source's";

  // The switchover: both hold generation G; b runs the VM and writes.
  ASSERT_TRUE(sa->set_generation("g-test"));
  ASSERT_TRUE(sb->set_generation("g-test"));
  std::vector<uint8_t> blk(4096, 0x5a);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_EQ(write_sync(*sb, (i * 97 % 2000) * 4096, blk), 0);
  const uint64_t changed = sb->since_generation().dirty_blocks();
  ASSERT_EQ(changed, 10u);
  {
    CopyRig rig;
    rig.migration = 8;
    rig.dst_disks = {sa};
    rig.connect();
    auto ready = rig.start({sb}, {true});
    ASSERT_EQ(ready.wait_for(60s), std::future_status::ready);
    ASSERT_TRUE(ready.get()) << rig.dst_error;
    const DiskProgress p = rig.io.call([&] { return rig.src->progress(); });
    EXPECT_EQ(p.mode, "incremental");
    EXPECT_EQ(p.blocks_sent, changed) << "an incremental return sends only the blocks written since";
    EXPECT_LT(p.wire_bytes * 100, first_wire);
    std::printf("incremental return: %llu blocks, %llu bytes on the wire (full copy: %llu)\n",
                (unsigned long long)p.blocks_sent, (unsigned long long)p.wire_bytes,
                (unsigned long long)first_wire);
  }
  ASSERT_EQ(read_all(sa->path()), read_all(sb->path()));
}

// The unsafe mode, to show the check above can fail: with mirroring off
// after the copy, the VM's later writes never reach the destination.
TEST(DiskCopy, WithoutTheMirrorLaterWritesAreLost) {
  TempDir t;
  auto sa = std::shared_ptr<VmDisk>(VmDisk::open(t.path + "/a.img", 8 << 20).value());
  auto sb = std::shared_ptr<VmDisk>(VmDisk::open(t.path + "/b.img", 8 << 20).value());
  fill_image(*sa, 1, 4 << 20);
  CopyRig rig;
  rig.dst_disks = {sb};
  rig.connect();
  auto ready = rig.start({sa}, {false});
  ASSERT_EQ(ready.wait_for(60s), std::future_status::ready);
  ASSERT_TRUE(ready.get());
  rig.io.call([&] {
    rig.src->stop();  // unsafe: the mirror is off
    return 0;
  });
  std::vector<uint8_t> blk(4096, 0x77);
  ASSERT_EQ(write_sync(*sa, 4096, blk), 0);
  std::this_thread::sleep_for(200ms);
  EXPECT_NE(read_all(sa->path()), read_all(sb->path()));
}

TEST(DiskCopyDestination, RejectsGapsOutOfRangeWritesAndBadBatches) {
  TempDir t;
  auto disk = std::shared_ptr<VmDisk>(VmDisk::open(t.path + "/b.img", 1 << 20).value());
  IoThread io;
  testing::TestPki pki = testing::TestPki::create();
  auto o = testing::base_options("b");
  o.streams = wan::migration_streams(0, 1 << 20);
  testing::use_certs(o, pki, pki.issue("b"));
  auto client = wan::ChannelClient::create(io.io(), o, "127.0.0.1", 1);  // never connects: nothing is sent
  auto make = [&](std::string& err) {
    DiskCopyDestination::Setup s;
    s.migration = 1;
    s.disks = {disk};
    s.codec = disk_codec_config(MigrateOptions{});
    s.session = client->session();
    s.on_error = [&err](const std::string& why) { err = why; };
    return DiskCopyDestination::create(io.io(), std::move(s)).value();
  };
  const std::vector<uint8_t> before = read_all(disk->path());
  std::vector<uint8_t> data(4096, 9);
  auto send = [&](DiskCopyDestination& d, proto::ReplWrite w) {
    auto p = proto::encode_payload(w);
    io.call([&] {
      d.on_message(proto::MessageType::kReplWrite, p);
      return 0;
    });
  };
  proto::ReplWrite w;
  w.writer = 1;
  w.op = proto::WriteOp::kWrite;
  w.length = 4096;
  w.data = data;
  {
    std::string err;
    auto d = make(err);
    w.seq = 2;  // 1 is missing
    send(*d, w);
    EXPECT_NE(err.find("after 0"), std::string::npos) << err;
  }
  {
    std::string err;
    auto d = make(err);
    w.seq = 1;
    w.offset = (1 << 20) - 2048;  // past the end
    send(*d, w);
    EXPECT_NE(err.find("past the end"), std::string::npos) << err;
  }
  {
    std::string err;
    auto d = make(err);
    w.seq = 1;
    w.offset = 0;
    w.flags = proto::kWriteEncoded;
    std::vector<uint8_t> junk(64, 0xee);
    w.data = junk;
    send(*d, w);
    EXPECT_NE(err.find("disk batch"), std::string::npos) << err;
  }
  EXPECT_EQ(read_all(disk->path()), before) << "a rejected write changed the image";
  io.call([&] {
    client->stop();
    return 0;
  });
  io.stop();
  pki.remove();
}

}  // namespace
}  // namespace tideway::agent
