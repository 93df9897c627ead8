// The kernel's current pacing rate of a TCP socket (TCP_INFO's
// tcpi_pacing_rate): what the congestion control is sending at now.
// Its own file because glibc's <netinet/tcp.h>, which asio pulls in, has a
// struct tcp_info that stops before that field, and the kernel's
// <linux/tcp.h> cannot be included beside it.
#pragma once

#include <cstdint>
#include <optional>

namespace tideway::wan {

// Bytes per second, or nullopt when the kernel does not say (an old
// kernel, a socket that is not TCP, no rate computed yet).
std::optional<uint64_t> tcp_pacing_rate(int fd);

}  // namespace tideway::wan
