// qemu_relay: sits between a source QEMU's outgoing migration and the
// destination's incoming one, the way the agent does, minus the WAN: the
// stream is split (proto/qemu_stream.h), every RAM page goes through the
// WAN codec (Encoder -> batch bytes -> Decoder) and the destination gets the
// rebuilt stream, which must be byte-identical. Used by
// tests/guest/qemu_relay_test.sh; docs/qemu-stream.md.
//
//   qemu_relay --listen SRC.sock --connect DST.sock [--rate B/s] [--log FILE]
//   qemu_relay --in FILE --out FILE        (offline, for captured streams)
//
// Test-only: --corrupt flips one byte of one page of the final (RAM END)
// section after decoding, so the test can show it notices.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proto/qemu_stream.h"
#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace qemu = tideway::proto::qemu;
namespace codec = tideway::wan::codec;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "qemu_relay: %s\n", what.c_str());
  std::exit(2);
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die(std::string("write to the destination: ") + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) die("socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

int accept_one(const std::string& path) {
  const int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un a = unix_address(path);
  ::unlink(path.c_str());
  if (l < 0 || ::bind(l, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 1) != 0)
    die("listen on " + path + ": " + std::strerror(errno));
  std::printf("relay: listening on %s\n", path.c_str());
  std::fflush(stdout);
  const int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) die(std::string("accept: ") + std::strerror(errno));
  ::close(l);
  ::unlink(path.c_str());
  return c;
}

int connect_to(const std::string& path) {
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_un a = unix_address(path);
  if (s < 0 || ::connect(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
    die("connect to " + path + ": " + std::strerror(errno));
  return s;
}

// The relay's data path: collects one chunk's output (opaque bytes and
// page slots), sends the chunk's pages through the codec as batches, fills
// the decoded pages into their slots and writes the chunk out.
class Pipeline : public qemu::StreamSink {
 public:
  Pipeline(std::unique_ptr<codec::Encoder> e, std::unique_ptr<codec::Decoder> d, bool corrupt)
      : enc_(std::move(e)), dec_(std::move(d)), corrupt_(corrupt) {}

  void set_splitter(const qemu::StreamSplitter* s) { splitter_ = s; }

  void opaque(std::span<const uint8_t> bytes) override { out_.insert(out_.end(), bytes.begin(), bytes.end()); }

  void page(uint64_t key, std::span<const uint8_t> data) override {
    // Corrupt one page of the stop-and-copy, in guest RAM above 1 MiB (so
    // pmemsave covers it and no ROM alias hides it).
    bool target = false;
    if (corrupt_ && !corrupted_ && splitter_->ram_section() == qemu::RamSection::kEnd &&
        qemu::key_block(key) == 0 && qemu::key_offset(key) >= (1u << 20)) {
      target = true;
      corrupted_ = true;
      std::printf("relay: corrupting page at offset 0x%llx of block 0 (test flag)\n",
                  static_cast<unsigned long long>(qemu::key_offset(key)));
    }
    slots_.push_back(Slot{out_.size(), key, target});
    out_.insert(out_.end(), qemu::kPageSize, 0);  // filled after decoding
    pages_.insert(pages_.end(), data.begin(), data.end());
    if (slots_.size() - done_ == max_batch_) run_batch();
  }

  // Codec round trip for the pages not sent yet, then write out.
  void flush(int fd) {
    if (slots_.size() > done_) run_batch();
    write_all(fd, out_.data(), out_.size());
    bytes_out_ += out_.size();
    out_.clear();
    slots_.clear();
    pages_.clear();
    done_ = 0;
  }

  uint64_t bytes_out() const { return bytes_out_; }
  uint64_t wire_bytes() const { return wire_; }
  const codec::CodecStats& enc_stats() const { return enc_->stats(); }
  const codec::CodecStats& dec_stats() const { return dec_->stats(); }

 private:
  struct Slot {
    size_t at;  // offset in out_
    uint64_t key;
    bool corrupt;
  };

  void run_batch() {
    std::vector<codec::PageRef> refs;
    for (size_t k = done_; k < slots_.size(); ++k)
      refs.push_back(codec::PageRef{slots_[k].key, std::span<const uint8_t>(pages_).subspan(k * qemu::kPageSize,
                                                                                           qemu::kPageSize)});
    if (auto r = enc_->encode(refs, batch_); !r.ok()) die("encode: " + r.error().detail);
    wire_ += batch_.size();
    auto decoded = dec_->decode(batch_);
    if (!decoded.ok()) die("decode: " + decoded.error().detail);
    if (decoded->size() != refs.size()) die("decoder returned a different number of pages");
    for (size_t k = 0; k < refs.size(); ++k) {
      const Slot& s = slots_[done_ + k];
      const auto& rec = (*decoded)[k];
      if (rec.address != s.key || rec.page.size() != qemu::kPageSize) die("decoded page out of order");
      std::memcpy(out_.data() + s.at, rec.page.data(), qemu::kPageSize);
      if (s.corrupt) out_[s.at + 100] ^= 0x5a;
    }
    done_ = slots_.size();
  }

  std::unique_ptr<codec::Encoder> enc_;
  std::unique_ptr<codec::Decoder> dec_;
  const qemu::StreamSplitter* splitter_ = nullptr;
  bool corrupt_;
  bool corrupted_ = false;
  size_t max_batch_ = 256;
  std::vector<uint8_t> out_;    // this chunk's output, bounded by chunk + one page
  std::vector<Slot> slots_;
  std::vector<uint8_t> pages_;  // slots_.size() pages as the source sent them
  size_t done_ = 0;             // slots already through the codec
  std::vector<uint8_t> batch_;
  uint64_t bytes_out_ = 0;
  uint64_t wire_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Relays a QEMU migration stream through the stream splitter and the WAN codec (test tool)."};
  std::string listen_path, connect_path, in_path, out_path, log_path;
  double rate = 0;
  bool corrupt = false;
  app.add_option("--listen", listen_path, "unix socket the source QEMU migrates to");
  app.add_option("--connect", connect_path, "unix socket the destination QEMU listens on (migrate-incoming)");
  app.add_option("--in", in_path, "offline: read a captured stream from this file");
  app.add_option("--out", out_path, "offline: write the rebuilt stream to this file");
  app.add_option("--rate", rate, "read at most this many bytes/s from the source (0: no limit)");
  app.add_option("--log", log_path, "append a line per chunk that carried RAM records (time, counters)");
  app.add_flag("--corrupt", corrupt, "test only: damage one page of the final RAM section after decoding");
  CLI11_PARSE(app, argc, argv);
  const bool offline = !in_path.empty();
  if (offline ? out_path.empty() : (listen_path.empty() || connect_path.empty()))
    die("give --listen and --connect, or --in and --out");

  auto enc = codec::Encoder::create(codec::CodecConfig{});
  auto dec = codec::Decoder::create(codec::CodecConfig{});
  if (!enc.ok() || !dec.ok()) die("codec setup failed");
  Pipeline pipe(std::move(*enc), std::move(*dec), corrupt);
  qemu::StreamSplitter splitter;
  pipe.set_splitter(&splitter);

  FILE* log = log_path.empty() ? nullptr : std::fopen(log_path.c_str(), "a");
  int in_fd = -1, out_fd = -1;
  if (offline) {
    in_fd = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in_fd < 0 || out_fd < 0) die("open: " + std::string(std::strerror(errno)));
  } else {
    out_fd = connect_to(connect_path);  // the destination listens before the source starts
    in_fd = accept_one(listen_path);
  }

  const int64_t t0 = now_us();
  std::vector<uint8_t> buf(64 * 1024);
  uint64_t bytes_in = 0, logged = 0;
  for (;;) {
    if (rate > 0) {  // pace the source: QEMU sees its socket block, as on a slow link
      const auto due = t0 + static_cast<int64_t>(static_cast<double>(bytes_in) * 1e6 / rate);
      const int64_t wait = due - now_us();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait));
    }
    const ssize_t n = ::read(in_fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(std::string("read from the source: ") + std::strerror(errno));
    if (n == 0) break;
    bytes_in += static_cast<uint64_t>(n);
    auto r = splitter.feed(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)), pipe);
    pipe.flush(out_fd);  // what was accepted goes out even when the rest is refused
    if (!r.ok()) die("refused: " + r.error().detail);
    const auto st = splitter.stats();
    if (log != nullptr && st.ram_sections + st.pages + st.zero_pages != logged) {
      logged = st.ram_sections + st.pages + st.zero_pages;
      std::fprintf(log, "t_us=%lld sections=%llu pages=%llu zero=%llu bytes_in=%llu\n",
                   static_cast<long long>(now_us()), static_cast<unsigned long long>(st.ram_sections),
                   static_cast<unsigned long long>(st.pages), static_cast<unsigned long long>(st.zero_pages),
                   static_cast<unsigned long long>(bytes_in));
      std::fflush(log);
    }
  }
  ::shutdown(out_fd, SHUT_WR);
  const auto fin = splitter.finish();
  const auto st = splitter.stats();
  const auto& es = pipe.enc_stats();
  const double secs = static_cast<double>(now_us() - t0) / 1e6;
  std::printf("relay: machine %s, %zu RAMBlocks, %llu RAM sections, ram_complete=%d, %llu commands\n",
              splitter.machine_type().c_str(), splitter.ram_blocks().size(),
              static_cast<unsigned long long>(st.ram_sections), st.ram_complete ? 1 : 0,
              static_cast<unsigned long long>(st.commands));
  std::printf("relay: bytes_in=%llu bytes_out=%llu opaque=%llu pages=%llu zero_pages=%llu in %.1f s\n",
              static_cast<unsigned long long>(bytes_in), static_cast<unsigned long long>(pipe.bytes_out()),
              static_cast<unsigned long long>(st.opaque_bytes), static_cast<unsigned long long>(st.pages),
              static_cast<unsigned long long>(st.zero_pages), secs);
  std::printf("relay: codec pages by encoding: zero=%llu raw=%llu cbr=%llu delta=%llu mixed=%llu; "
              "page bytes %llu -> wire %llu (ratio %.2f)\n",
              static_cast<unsigned long long>(es.zero_records), static_cast<unsigned long long>(es.raw_records),
              static_cast<unsigned long long>(es.cbr_records), static_cast<unsigned long long>(es.delta_records),
              static_cast<unsigned long long>(es.mixed_records), static_cast<unsigned long long>(es.page_bytes),
              static_cast<unsigned long long>(pipe.wire_bytes()), codec::reduction_ratio(es));
  if (log != nullptr) std::fclose(log);
  if (bytes_in != pipe.bytes_out()) {
    std::printf("relay: FAIL bytes out != bytes in\n");
    return 1;
  }
  if (!fin.ok()) {
    std::printf("relay: FAIL %s\n", fin.error().detail.c_str());
    return 1;
  }
  std::printf("relay: OK\n");
  return 0;
}
