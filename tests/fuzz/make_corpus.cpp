// Writes the seed corpora for the fuzz targets from the proto test samples:
//   <dir>/frame/<name>    one encoded frame per sample, plus a few streams
//                          of several frames back to back
//   <dir>/payload/<name>  the type byte followed by the sample's payload
//   <dir>/nbd/<name>      fuzz_nbd: a decoder mode byte, then its input
//   <dir>/codec/<name>    fuzz_codec: a mode byte, then batches or a recipe
//   <dir>/arp/<name>      fuzz_arp: a mode byte, then a frame, MAC or IPv4 text
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "proto/arp.h"
#include "proto/journal_record.h"
#include "proto/nbd.h"
#include "tests/fuzz/codec_fuzz_samples.h"
#include "tests/proto/samples.h"

namespace fs = std::filesystem;
using namespace tideway::proto;

static void write(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", p.c_str());
    std::exit(1);
  }
}

// fuzz_nbd seeds: a mode byte (which decoder) then a valid input for it,
// and one whole client stream (mode 8) as QEMU would send it.
// fuzz_journal seeds: whole journal records (write, discard, with vector).
static void write_journal_seeds(const fs::path& dir) {
  using namespace tideway::proto;
  fs::create_directories(dir);
  const std::vector<uint8_t> data(4096, 0x5a);
  ReplWrite w;
  w.writer = 7;
  w.volume = 1;
  w.seq = 42;
  w.flags = kWriteFua;
  w.offset = 1 << 20;
  w.length = 4096;
  w.data = data;
  std::vector<uint8_t> rec;
  append_journal_record(w, rec);
  write(dir / "write", rec);
  ReplWrite d;
  d.writer = 7;
  d.seq = 43;
  d.op = WriteOp::kDiscard;
  d.length = 1 << 20;
  d.vector = {1, 2, 3};
  rec.clear();
  append_journal_record(d, rec);
  write(dir / "discard_vector", rec);
}

static void write_nbd_seeds(const fs::path& dir) {
  namespace nbd = tideway::proto::nbd;
  fs::create_directories(dir);
  const auto seed = [&](const char* name, uint8_t mode, const auto& bytes) {
    std::vector<uint8_t> v{mode};
    v.insert(v.end(), bytes.begin(), bytes.end());
    write(dir / name, v);
  };
  const nbd::GoRequest go{"disk", {static_cast<uint16_t>(nbd::Info::kBlockSize)}};
  const auto go_bytes = nbd::encode_go(go);
  const std::vector<uint8_t> flags{3, 0, 0, 0, 3};  // server flags, client flags
  const nbd::Request write_req{nbd::kCmdFlagFua, static_cast<uint16_t>(nbd::Cmd::kWrite), 7, 4096, 8};
  seed("greeting", 0, nbd::encode_greeting(nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes));
  seed("client_flags", 1, flags);
  seed("option_header", 2, nbd::encode_option_header({static_cast<uint32_t>(nbd::Opt::kGo), 12}));
  seed("go", 3, go_bytes);
  seed("export_name", 4, std::string("disk"));
  seed("request_write", 5, nbd::encode_request(write_req));
  seed("request_trim", 5, nbd::encode_request({0, static_cast<uint16_t>(nbd::Cmd::kTrim), 8, 0, 1u << 20}));
  seed("simple_reply", 6, nbd::encode_simple_reply({22, 9}));
  const auto info = nbd::encode_option_reply(7, nbd::Rep::kInfo, nbd::encode_info_export(1 << 20, 0x16d));
  seed("option_reply", 7, std::span(info).first(nbd::kOptionReplyHeaderSize));
  std::vector<uint8_t> stream;
  const auto add = [&](const auto& b) { stream.insert(stream.end(), b.begin(), b.end()); };
  add(nbd::encode_client_flags(nbd::kClientFixedNewstyle | nbd::kClientNoZeroes));
  add(nbd::encode_option_header({static_cast<uint32_t>(nbd::Opt::kStructuredReply), 0}));
  add(nbd::encode_option_header({static_cast<uint32_t>(nbd::Opt::kGo), static_cast<uint32_t>(go_bytes.size())}));
  add(go_bytes);
  add(nbd::encode_request(write_req));
  add(std::vector<uint8_t>(8, 0xab));
  add(nbd::encode_request({0, static_cast<uint16_t>(nbd::Cmd::kFlush), 8, 0, 0}));
  add(nbd::encode_request({0, static_cast<uint16_t>(nbd::Cmd::kDisc), 9, 0, 0}));
  seed("client_stream", 8, stream);
}

// fuzz_arp seeds: gratuitous ARPs (request, reply, padded), an ordinary
// request, and MAC / IPv4 text (fuzz_arp.cpp).
static void write_arp_seeds(const fs::path& dir) {
  namespace arp = tideway::proto::arp;
  fs::create_directories(dir);
  const auto seed = [&](const char* name, uint8_t mode, const auto& bytes) {
    std::vector<uint8_t> v{mode};
    v.insert(v.end(), bytes.begin(), bytes.end());
    write(dir / name, v);
  };
  const arp::Mac mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  const arp::Ipv4 ip{192, 168, 50, 10};
  seed("garp_request", 0, arp::encode_frame(arp::gratuitous_arp(mac, ip, arp::Op::kRequest)));
  seed("garp_reply", 0, arp::encode_frame(arp::gratuitous_arp(mac, ip, arp::Op::kReply)));
  auto padded = arp::gratuitous_arp(mac, ip, arp::Op::kRequest);
  padded.wire_size = arp::kMinEthFrameSize;
  seed("garp_padded", 0, arp::encode_frame(padded));
  auto who_has = padded;
  who_has.target_ip = {192, 168, 50, 99};
  who_has.wire_size = arp::kArpFrameSize;
  seed("request", 0, arp::encode_frame(who_has));
  seed("mac", 1, std::string("52:54:00:12:34:56"));
  seed("mac_dashes", 1, std::string("02-AB-cd-00-00-01"));
  seed("ipv4", 2, std::string("192.168.50.10"));
}

// fuzz_codec seeds: a mode byte, then its input (see fuzz_codec.cpp).
static void write_codec_seeds(const fs::path& dir) {
  namespace cf = tideway::wan::codec::fuzz;
  using tideway::wan::codec::Encoder;
  fs::create_directories(dir);
  const auto seed = [&](const std::string& name, uint8_t mode, const std::vector<uint8_t>& bytes) {
    std::vector<uint8_t> v{mode};
    v.insert(v.end(), bytes.begin(), bytes.end());
    write(dir / name, v);
  };
  auto e = std::move(*Encoder::create(cf::fuzz_config()));
  std::vector<std::vector<uint8_t>> warm;
  for (int k = 0; k <= cf::kWarmBatches; ++k) warm.push_back(cf::encode_warm(*e, k));
  seed("fresh_first_batch", 0, warm[0]);
  seed("warmed_due_batch", 1, warm[cf::kWarmBatches]);
  seed("warmed_replayed_batch", 1, warm[1]);  // a duplicate
  std::vector<uint8_t> seq;
  for (const auto& w : warm) {
    seq.push_back(static_cast<uint8_t>(w.size()));
    seq.push_back(static_cast<uint8_t>(w.size() >> 8));
    seq.insert(seq.end(), w.begin(), w.end());
  }
  seed("batch_sequence", 3, seq);
  // Round-trip recipes: config byte, then page ops (fuzz_codec.cpp).
  seed("recipe_mixed", 2, {0x02, 0, 1, 0xab, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 4, 1, 2, 3, 0,
                           3, 2, 10, 20, 1, 3, 4, 0x55, 7, 6, 0, 2, 0, 3, 1, 0, 0, 1, 7, 0x86, 5, 9, 9, 9, 9, 9, 9, 9, 9,
                           9, 9, 9, 9, 9, 9, 9, 9, 3, 1, 5, 5, 1});
  seed("recipe_tiny_cache_collisions", 2, {0x0b, 4, 0x81, 7, 4, 0x82, 8, 4, 1, 2, 3, 2, 0, 2, 1, 6, 0, 3, 3, 1, 2, 3,
                                           4, 5, 6, 7, 2, 3, 7});
  seed("recipe_no_state", 2, {0xe3, 1, 0x11, 5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 7, 1, 0x22});
}

// fuzz_payload seeds for the codec on the replication stream: an encoded
// REPL_WRITE carrying a real batch, and a re-attach request.
static void write_repl_codec_seeds(const fs::path& dir) {
  using namespace tideway::proto;
  namespace codec = tideway::wan::codec;
  std::vector<uint8_t> pages(2 * 4096, 0);
  for (size_t i = 4096; i < pages.size(); ++i) pages[i] = static_cast<uint8_t>(i * 7);
  auto e = std::move(*codec::Encoder::create(codec::CodecConfig{}));
  const codec::PageRef refs[2] = {{repl_page_address(1, 8192), {pages.data(), 4096}},
                                  {repl_page_address(1, 12288), {pages.data() + 4096, 4096}}};
  std::vector<uint8_t> batch;
  if (!e->encode(refs, batch)) std::exit(1);
  ReplWrite w;
  w.writer = 7;
  w.volume = 1;
  w.seq = 5;
  w.flags = kWriteEncoded;
  w.offset = 8192;
  w.length = 2 * 4096;
  w.data = batch;
  const auto seed = [&](const char* name, const Message& m) {
    std::vector<uint8_t> p{static_cast<uint8_t>(message_type(m))};
    const auto payload = encode_payload(m);
    p.insert(p.end(), payload.begin(), payload.end());
    write(dir / name, p);
  };
  seed("repl_write_encoded", w);
  seed("repl_attached_reattach", ReplAttached{7, 1, AttachStatus::kReattach, 4, "codec batch refused (gap)"});
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out / "frame");
  fs::create_directories(out / "payload");
  std::vector<uint8_t> all, small;
  for (const auto& s : testing::sample_messages()) {
    const auto frame = encode_message(s.msg, s.stream, s.seq);
    write(out / "frame" / s.name, frame);
    std::vector<uint8_t> p{static_cast<uint8_t>(message_type(s.msg))};
    const auto payload = encode_payload(s.msg);
    p.insert(p.end(), payload.begin(), payload.end());
    write(out / "payload" / s.name, p);
    all.insert(all.end(), frame.begin(), frame.end());
    if (frame.size() < 256) small.insert(small.end(), frame.begin(), frame.end());
  }
  // Streams: every sample, the small ones only, and a re-sent pair.
  write(out / "frame" / "stream_all", all);
  write(out / "frame" / "stream_small", small);
  auto resent = encode_message(ReplAck{1, 2, 3}, 7, 41, kFlagResent);
  const auto more = encode_message(Probe{9, 9, {}}, 7, 42, kFlagMore);
  resent.insert(resent.end(), more.begin(), more.end());
  write(out / "frame" / "stream_resent_more", resent);
  write_repl_codec_seeds(out / "payload");
  write_nbd_seeds(out / "nbd");
  write_journal_seeds(out / "journal");
  write_codec_seeds(out / "codec");
  write_arp_seeds(out / "arp");
  return 0;
}
