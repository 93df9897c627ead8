// The link's kernel send-queue bound (Link::tune, adapt_notsent_lowat) on a
// real loopback TCP connection: the bound follows the pacing rate within
// its limits, is left alone inside the hysteresis band, and is never
// touched on a link that was not bounded; tcp_pacing_rate reads the
// kernel's figure and says nothing for a socket that is not TCP.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "wan/link.h"
#include "wan/tcp_pacing.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

int lowat_of(tcp::socket& s) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, &len), 0);
  return v;
}

struct Loopback {
  asio::io_context io;
  tcp::socket client{io}, server{io};
  Loopback() {
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    client.connect(acc.local_endpoint());
    acc.accept(server);
  }
  // Moves some megabytes so the congestion control has measured a rate.
  void exercise(tcp::socket& from, tcp::socket& to) {
    std::vector<uint8_t> buf(4 << 20, 0x5a), in(buf.size());
    std::thread reader([&] { asio::read(to, asio::buffer(in)); });
    asio::write(from, asio::buffer(buf));
    reader.join();
  }
};

TEST(LinkTune, BoundFollowsThePacingRateWithinLimits) {
  Loopback lo;
  wan::Link link(std::move(lo.client), nullptr);
  link.tune(128 * 1024);
  EXPECT_EQ(lowat_of(link.socket()), 128 * 1024);
  lo.exercise(link.socket(), lo.server);
  const auto rate = wan::tcp_pacing_rate(link.socket().native_handle());
  ASSERT_TRUE(rate.has_value()) << "the kernel gives no pacing rate for a loopback TCP socket";
  ASSERT_GT(*rate, uint64_t{1} << 20) << "loopback paces below 1 MiB/s?";

  // A horizon of 1 s asks for a whole second of the rate (far above 1 MiB
  // for any loopback rate): the bound is the ceiling, exactly.
  EXPECT_EQ(link.adapt_notsent_lowat(128 * 1024, 1 << 20, 1s), 1 << 20);
  EXPECT_EQ(lowat_of(link.socket()), 1 << 20);
  // Inside the +-25% band nothing changes (the same ask again).
  EXPECT_EQ(link.adapt_notsent_lowat(128 * 1024, 1 << 20, 1s), 0);
  // A horizon of 1 ns asks for almost nothing: the bound is the floor.
  EXPECT_EQ(link.adapt_notsent_lowat(128 * 1024, 1 << 20, 1ns), 128 * 1024);
  EXPECT_EQ(lowat_of(link.socket()), 128 * 1024);
  // 4 ms of the rate, as the channel asks, lands within the limits.
  const int set = link.adapt_notsent_lowat(128 * 1024, 1 << 20, 4ms);
  EXPECT_EQ(lowat_of(link.socket()), set == 0 ? 128 * 1024 : set);
  EXPECT_GE(lowat_of(link.socket()), 128 * 1024);
  EXPECT_LE(lowat_of(link.socket()), 1 << 20);
}

TEST(LinkTune, UnboundedLinkIsLeftAlone) {
  Loopback lo;
  wan::Link link(std::move(lo.client), nullptr);
  link.tune(0);  // 0: no bound asked for
  const int before = lowat_of(link.socket());
  lo.exercise(link.socket(), lo.server);
  EXPECT_EQ(link.adapt_notsent_lowat(128 * 1024, 1 << 20, 4ms), 0);
  EXPECT_EQ(lowat_of(link.socket()), before);
}

TEST(LinkTune, PacingRateOfANonTcpSocketIsUnknown) {
  const int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(udp, 0);
  EXPECT_FALSE(wan::tcp_pacing_rate(udp).has_value());
  ::close(udp);
  EXPECT_FALSE(wan::tcp_pacing_rate(-1).has_value());
}

}  // namespace
}  // namespace tideway::testing
