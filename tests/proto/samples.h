// Sample messages of every type, shared by the proto unit tests and the fuzz
// seed-corpus generator. Header-only and free of GoogleTest on purpose.
// Span fields point into static buffers, so samples stay valid for the whole
// program.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "proto/frame.h"
#include "proto/messages.h"

namespace tideway::proto::testing {

// n bytes of a deterministic, seed-dependent pattern in static storage.
inline std::span<const uint8_t> pattern(size_t n, uint8_t seed) {
  static std::deque<std::vector<uint8_t>> store;  // deque: stable addresses
  std::vector<uint8_t> v(n);
  uint32_t x = 0x9E3779B9u * (seed + 1u);
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x);
  }
  store.push_back(std::move(v));
  return store.back();
}

inline SessionId session_id(uint8_t seed) {
  SessionId s{};
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(seed + 17 * i + 1);
  return s;
}

struct Sample {
  std::string name;
  Message msg;
  uint32_t stream = kControlStream;  // control types stay on stream 0, seq 0
  uint64_t seq = 0;
};

// At least one sample per message type and per enum value, with non-empty
// vectors, so truncation and round-trip tests reach every field.
inline std::vector<Sample> sample_messages() {
  std::vector<Sample> s;

  Hello hello_new;
  hello_new.min_version = 1;
  hello_new.max_version = 3;
  hello_new.features = kAllFeatures | (uint64_t{1} << 63);  // includes an unknown bit
  hello_new.site = "site-a";
  s.push_back({"hello_new", hello_new});

  Hello hello_resume;
  hello_resume.features = kFeatResume | kFeatReplication;
  hello_resume.session = session_id(3);
  hello_resume.site = std::string(kMaxNameLen, 'x');
  hello_resume.received = {{1, 10}, {2, 0}, {0xFFFFFFFFu, UINT64_MAX}};
  s.push_back({"hello_resume", hello_resume});

  Welcome welcome_new;
  welcome_new.version = 1;
  welcome_new.features = kFeatMigration;
  welcome_new.session = session_id(9);
  welcome_new.site = "backup-b";
  s.push_back({"welcome_new", welcome_new});

  Welcome welcome_resumed;
  welcome_resumed.features = kAllFeatures;
  welcome_resumed.session = session_id(4);
  welcome_resumed.resumed = true;
  welcome_resumed.site = "";
  welcome_resumed.received = {{7, 1234567}, {3, 1}};
  s.push_back({"welcome_resumed", welcome_resumed});

  const ErrorCode codes[] = {ErrorCode::kProtocol, ErrorCode::kIncompatible,
                             ErrorCode::kUnauthorized, ErrorCode::kUnknownSession,
                             ErrorCode::kShuttingDown};
  for (ErrorCode c : codes) {
    ErrorMsg e{c, "reason " + std::to_string(static_cast<int>(c))};
    s.push_back({"error_" + std::to_string(static_cast<int>(c)), e});
  }
  s.push_back({"error_long_reason", ErrorMsg{ErrorCode::kProtocol, std::string(kMaxReasonLen, 'r')}});

  s.push_back({"heartbeat", Heartbeat{0x0102030405060708ull, 0x1112131415161718ull}});

  StreamAck ack;
  ack.acked = {{1, 5}, {2, 99}, {64, 1}};
  s.push_back({"stream_ack", ack});
  s.push_back({"stream_ack_empty", StreamAck{}});

  ReplWrite w;
  w.writer = 3;
  w.volume = 7;
  w.seq = 42;
  w.vector = {1, 2, 0xFFFFFFFFu};
  w.op = WriteOp::kWrite;
  w.flags = kWriteFua;
  w.offset = 1u << 20;
  w.length = 4096 + 512;
  w.data = pattern(w.length, 1);
  s.push_back({"repl_write", w, 1, 1});

  ReplWrite discard;
  discard.writer = 1;
  discard.volume = 2;
  discard.seq = 1;
  discard.op = WriteOp::kDiscard;
  discard.offset = UINT64_MAX - 4096;
  discard.length = 4096;
  s.push_back({"repl_discard", discard, 1, 2});

  ReplWrite zeroes = discard;
  zeroes.op = WriteOp::kWriteZeroes;
  zeroes.seq = UINT64_MAX;
  zeroes.vector = std::vector<uint32_t>(kMaxVectorLen, 9);
  zeroes.length = kMaxWriteLen;
  zeroes.offset = 0;
  s.push_back({"repl_write_zeroes", zeroes, 1, 3});

  ReplWrite one_byte;
  one_byte.seq = 2;
  one_byte.length = 1;
  one_byte.data = pattern(1, 2);
  s.push_back({"repl_write_1byte", one_byte, 1, 4});

  s.push_back({"repl_flush", ReplFlush{3, 7, 42}, 1, 5});
  s.push_back({"repl_ack", ReplAck{3, 7, 41}, 1, 6});
  s.push_back({"repl_attach", ReplAttach{3, 7, 1ull << 30, "pg-data.v0"}, 1, 7});
  s.push_back({"repl_attached", ReplAttached{3, 7, AttachStatus::kOk, 41, ""}, 1, 8});
  s.push_back({"repl_attached_refused",
               ReplAttached{3, 7, AttachStatus::kRefused, 0, "size differs from the backup volume"}, 1, 9});

  for (uint8_t op = 1; op <= kMaxMigOp; ++op) {
    MigControl c;
    c.migration = 11;
    c.op = static_cast<MigOp>(op);
    c.iteration = op;
    c.pages_sent = 1000 + op;
    c.pages_dirtied = 200 + op;
    c.pages_remaining = 30 + op;
    if (c.op == MigOp::kDeviceState) c.detail = pattern(777, 3);
    s.push_back({"mig_control_" + std::to_string(op), c, 2, op});
  }

  MigPages pages;
  pages.migration = 11;
  pages.stream_offset = 123456;
  pages.opaque = pattern(40, 4);
  pages.page_cuts = {0, 9, 9, 40};
  pages.batch = pattern(300, 5);
  s.push_back({"mig_pages", pages, 3, 1});
  MigPages passthrough;
  passthrough.migration = 5;
  passthrough.opaque = pattern(5000, 6);
  s.push_back({"mig_pages_passthrough", passthrough, 3, 2});

  DiskBlocks blocks;
  blocks.volume = 4;
  blocks.block_size = 512;
  blocks.records = {
      {0, RecordEncoding::kRaw, pattern(512, 8)},
      {512, RecordEncoding::kZero, {}},
      {1024, RecordEncoding::kCbr, pattern(1024, 9)},
  };
  s.push_back({"disk_blocks_512", blocks, 4, 1});

  DiskBlocks big;
  big.volume = 5;
  big.block_size = 65536;
  big.records = {{UINT64_MAX - 65536, RecordEncoding::kRaw, pattern(65536, 10)}};
  s.push_back({"disk_blocks_64k", big, 4, 2});

  s.push_back({"probe", Probe{123, 456, pattern(1000, 11)}, 5, 1});
  s.push_back({"probe_empty", Probe{0, 0, {}}, kControlStream, 0});
  return s;
}

}  // namespace tideway::proto::testing
