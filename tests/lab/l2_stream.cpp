// l2_stream: a one-way TCP stream for the layer-2 migration test
// (lab_l2_migrate_test.sh). The client (`source`) sends an 8-byte sequence
// number every few milliseconds; the "VM" (`sink`) checks that they arrive
// in order without a gap and prints each arrival with a wall-clock time, so
// the test can see the stall around a migration. One way on purpose: the
// sink only sends ACKs, so once moved it stays silent until traffic reaches
// it, and only the gratuitous ARP (not its own frames) can teach the
// bridges where it went.
//
//   l2_stream sink   --listen IP:PORT [--ready FILE] [--idle-timeout-s 120]
//       stdout: "rx <unix seconds.micro> <seq>" per record, then
//               "eof <records>" (exit 0) or "error <reason>" (exit 1)
//   l2_stream source --connect IP:PORT [--interval-ms 10] [--duration-s 600]
//                    [--stop-file FILE]
//       sends until the duration passes or FILE exists, then closes and
//       waits for the sink to close; "done sent=N" (exit 0) or "error ..." (1)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& msg) {
  std::printf("error %s\n", msg.c_str());
  std::fflush(stdout);
  std::exit(1);
}

sockaddr_in parse_endpoint(const std::string& s) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || inet_pton(AF_INET, s.substr(0, colon).c_str(), &a.sin_addr) != 1)
    die("bad endpoint '" + s + "' (IP:PORT)");
  const long port = std::strtol(s.c_str() + colon + 1, nullptr, 10);
  if (port <= 0 || port > 65535) die("bad port in '" + s + "'");
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + (errno == ECONNRESET ? "reset" : std::strerror(errno));
}

int sink(const std::string& listen_at, const std::string& ready, int idle_timeout_s) {
  const sockaddr_in a = parse_endpoint(listen_at);
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(ls, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) die(errno_text("bind"));
  if (::listen(ls, 1) != 0) die(errno_text("listen"));
  if (!ready.empty()) {
    FILE* f = std::fopen(ready.c_str(), "w");
    if (!f) die(errno_text("ready file"));
    std::fclose(f);
  }
  pollfd p{ls, POLLIN, 0};
  if (::poll(&p, 1, idle_timeout_s * 1000) != 1) die("no connection within the idle timeout");
  int s = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
  if (s < 0) die(errno_text("accept"));
  ::close(ls);

  uint64_t expect = 0;
  unsigned char buf[4096];
  size_t have = 0;
  while (true) {
    pollfd q{s, POLLIN, 0};
    if (::poll(&q, 1, idle_timeout_s * 1000) != 1) die("nothing received within the idle timeout");
    const ssize_t n = ::read(s, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(errno_text("read"));
    if (n == 0) break;
    have += static_cast<size_t>(n);
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    size_t off = 0;
    for (; have - off >= 8; off += 8) {
      uint64_t seq = 0;
      for (int i = 0; i < 8; ++i) seq = seq << 8 | buf[off + static_cast<size_t>(i)];
      if (seq != expect) die("sequence " + std::to_string(seq) + " where " + std::to_string(expect) + " was due");
      ++expect;
      std::printf("rx %lld.%06ld %llu\n", static_cast<long long>(ts.tv_sec), ts.tv_nsec / 1000,
                  static_cast<unsigned long long>(seq));
    }
    std::memmove(buf, buf + off, have - off);
    have -= off;
    std::fflush(stdout);
  }
  if (have != 0) die("stream ended inside a record");
  std::printf("eof %llu\n", static_cast<unsigned long long>(expect));
  ::close(s);
  return 0;
}

int source(const std::string& to, int interval_ms, int duration_s, const std::string& stop_file) {
  const sockaddr_in a = parse_endpoint(to);
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) die(errno_text("connect"));
  int one = 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const auto start = Clock::now();
  uint64_t seq = 0;
  struct stat st {};
  while (Clock::now() - start < std::chrono::seconds(duration_s) &&
         (stop_file.empty() || ::stat(stop_file.c_str(), &st) != 0)) {
    unsigned char rec[8];
    for (int i = 0; i < 8; ++i) rec[i] = static_cast<unsigned char>(seq >> (56 - 8 * i));
    // Blocking send: 8 bytes never fill the send buffer unless the stream
    // has been stalled for minutes; a reset shows up here.
    if (::send(s, rec, sizeof rec, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof rec)) die(errno_text("send"));
    ++seq;
    std::this_thread::sleep_until(start + std::chrono::milliseconds(static_cast<int64_t>(interval_ms) * seq));
  }
  if (::shutdown(s, SHUT_WR) != 0) die(errno_text("shutdown"));
  // The sink closes once it has read everything: that proves delivery.
  pollfd q{s, POLLIN, 0};
  char c;
  if (::poll(&q, 1, 60'000) != 1) die("the sink did not close within 60 s after the last record");
  if (::read(s, &c, 1) != 0) die(errno_text("waiting for the sink to close"));
  std::printf("done sent=%llu\n", static_cast<unsigned long long>(seq));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
  if (argc < 2) die("usage: l2_stream sink|source OPTIONS (see the top of l2_stream.cpp)");
  const std::string mode = argv[1];
  std::string listen_at, connect_to, ready, stop_file;
  int interval_ms = 10, duration_s = 600, idle_s = 120;
  for (int i = 2; i < argc; ++i) {
    const std::string opt = argv[i];
    if (i + 1 >= argc) die("option " + opt + " needs a value");
    const std::string v = argv[++i];
    if (opt == "--listen") listen_at = v;
    else if (opt == "--connect") connect_to = v;
    else if (opt == "--ready") ready = v;
    else if (opt == "--stop-file") stop_file = v;
    else if (opt == "--interval-ms") interval_ms = std::atoi(v.c_str());
    else if (opt == "--duration-s") duration_s = std::atoi(v.c_str());
    else if (opt == "--idle-timeout-s") idle_s = std::atoi(v.c_str());
    else die("unknown option " + opt);
  }
  if (interval_ms < 1 || duration_s < 1 || idle_s < 1) die("intervals and durations must be positive");
  if (mode == "sink" && !listen_at.empty()) return sink(listen_at, ready, idle_s);
  if (mode == "source" && !connect_to.empty()) return source(connect_to, interval_ms, duration_s, stop_file);
  die("usage: l2_stream sink --listen IP:PORT | source --connect IP:PORT");
}
