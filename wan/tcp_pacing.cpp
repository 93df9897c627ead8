#include "wan/tcp_pacing.h"

#include <linux/tcp.h>
#include <sys/socket.h>

#include <cstddef>

namespace tideway::wan {

namespace {
// IPPROTO_TCP lives in <netinet/in.h>, which clashes with the kernel's
// headers this file needs; the protocol number is fixed (RFC 793).
constexpr int kIpprotoTcp = 6;
}  // namespace

std::optional<uint64_t> tcp_pacing_rate(int fd) {
  struct tcp_info ti {};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, kIpprotoTcp, TCP_INFO, &ti, &len) != 0) return std::nullopt;
  // Older kernels fill less of the struct: the field must be in what came.
  if (len < offsetof(struct tcp_info, tcpi_pacing_rate) + sizeof ti.tcpi_pacing_rate) return std::nullopt;
  const uint64_t rate = ti.tcpi_pacing_rate;
  if (rate == 0 || rate == ~uint64_t{0}) return std::nullopt;  // ~0: unlimited, not yet computed
  return rate;
}

}  // namespace tideway::wan
