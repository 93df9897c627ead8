// Shared helpers of the replication tests: reproducible seeds, temporary
// directories, whole-file I/O and journal records.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "proto/journal_record.h"
#include "proto/messages.h"
#include "tests/test_seed.h"

namespace tideway::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tw-repl-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

inline void append_bytes(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!out.flush()) throw std::runtime_error("cannot append to " + path);
}

// Every regular file in `dir` (not recursive) with its bytes.
inline std::map<std::string, std::vector<uint8_t>> snapshot_dir(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().filename().string()] = read_bytes(e.path().string());
  return out;
}

// Journal segment files of `dir`, sorted (their names sort by number).
inline std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".twj") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A write with deterministic content derived from (writer, seq).
struct OwnedWrite {
  proto::ReplWrite w;
  std::vector<uint8_t> data;
};

inline OwnedWrite make_write(uint32_t writer, uint64_t seq, uint32_t length, uint64_t offset = 0,
                             proto::WriteOp op = proto::WriteOp::kWrite, std::vector<uint32_t> vector = {}) {
  OwnedWrite o;
  if (op == proto::WriteOp::kWrite) {
    o.data.resize(length);
    uint64_t x = seq * 0x9E3779B97F4A7C15ull + writer + 1;
    for (auto& b : o.data) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
  }
  o.w.writer = writer;
  o.w.volume = 1;
  o.w.seq = seq;
  o.w.vector = std::move(vector);
  o.w.op = op;
  o.w.offset = offset;
  o.w.length = length;
  o.w.data = o.data;
  return o;
}

inline std::vector<uint8_t> encode(const proto::ReplWrite& w) {
  std::vector<uint8_t> out;
  proto::append_journal_record(w, out);
  return out;
}

// Polls `pred` until it holds or `limit` passes (a condition wait, not a
// sleep-as-assertion).
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

}  // namespace tideway::testing
