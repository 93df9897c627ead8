#include "agent/packet_holder.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>
#include <vector>

#include "agent/hold_queue.h"
#include "agent/holder_netns.h"

// The library's headers are C and not warning-clean under -Wpedantic.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#pragma GCC diagnostic pop

namespace tideway::agent {
namespace {

using proto::Errc;

// With metadata-only copies a packet message is a few hundred bytes; the
// buffer is generous so a message is never truncated (a truncated message
// would lose its packet id, and the packet would stay queued until stop).
constexpr size_t kRecvBufBytes = 16 * 1024;
// Datagrams (one packet each) read per wakeup before giving the io thread
// back to release() and timers.
constexpr int kRecvBudget = 256;
// Verdicts are gathered here and sent in one sendto.
constexpr size_t kSendBufBytes = 32 * 1024;
constexpr size_t kMaxVerdictMsgBytes = 64;  // header + nfgenmsg + verdict attr, rounded up
constexpr int kConfigTimeoutMs = 2000;
constexpr uint32_t kKernelQueueHeadroom = 4096;  // packets queued but not read yet

// Log the 1st, 2nd, 4th, 8th... occurrence of a recurring problem.
bool worth_logging(uint64_t count) { return count != 0 && (count & (count - 1)) == 0; }

double to_ms(wan::Nanos d) { return static_cast<double>(d.count()) / 1e6; }

}  // namespace

const char* holder_mode_name(HolderMode m) { return m == HolderMode::kHold ? "hold" : "pass"; }

struct PacketHolder::Impl : std::enable_shared_from_this<PacketHolder::Impl> {
  Impl(boost::asio::io_context& io, int fd, PacketHolderOptions o, TagSource t, const wan::Clock& c)
      : sock(io, fd),
        opts(std::move(o)),
        tag_source(std::move(t)),
        clock(c),
        queue(opts.max_held, opts.max_held_bytes),
        rbuf(kRecvBufBytes),
        sbuf(kSendBufBytes) {
    counters.mode = opts.mode;
  }

  boost::asio::posix::stream_descriptor sock;
  PacketHolderOptions opts;
  TagSource tag_source;
  const wan::Clock& clock;
  HoldQueue queue;
  PacketHolderStats counters;
  bool stopped = false;

  // Packet ids grow by one per queued packet; a gap is packets the kernel
  // dropped before we saw them. Batch verdicts ("every id <= N") are exact
  // only while ids arrive in increasing order; if they ever do not, we fall
  // back to one verdict per packet.
  bool have_last_id = false;
  uint32_t last_id = 0;
  bool ordered_ids = true;

  std::vector<char> rbuf;
  std::vector<char> sbuf;
  size_t send_len = 0;
  size_t send_msgs = 0;
  std::vector<uint32_t> ids;   // scratch for release/drain
  std::vector<uint32_t> pass;  // kPass: accepted at the end of the read batch

  uint32_t config_seq = 0;
  bool config_done = false;
  int config_err = 0;

  // --- sending verdicts ---

  void flush() {
    if (send_len == 0) return;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t n;
    do {
      n = ::sendto(sock.native_handle(), sbuf.data(), send_len, 0,
                   reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      // The packets stay queued in the kernel: held, not leaked (stop/close drops them).
      counters.verdict_errors += send_msgs;
      spdlog::error("holder: queue {}: sending {} verdicts failed: {}", opts.queue_num, send_msgs,
                    std::strerror(errno));
    }
    send_len = 0;
    send_msgs = 0;
  }

  void put_verdict(int type, uint32_t id, int verdict) {
    if (send_len + kMaxVerdictMsgBytes > sbuf.size()) flush();
    nlmsghdr* nlh = nfq_nlmsg_put(sbuf.data() + send_len, type, opts.queue_num);
    nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), verdict);
    assert(NLMSG_ALIGN(nlh->nlmsg_len) <= kMaxVerdictMsgBytes);
    send_len += NLMSG_ALIGN(nlh->nlmsg_len);
    ++send_msgs;
  }

  // Verdicts for `v` (FIFO order). A run of consecutive ids becomes one
  // NFQNL_MSG_VERDICT_BATCH, which the kernel applies to every queued id <=
  // the run's last: exact, because every smaller id already has its verdict
  // (released before it, dropped at arrival) or never reached the queue.
  void put_verdicts(const std::vector<uint32_t>& v, int verdict) {
    size_t i = 0;
    while (i < v.size()) {
      size_t j = i;
      if (ordered_ids) {
        while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
      }
      if (j == i) {
        put_verdict(NFQNL_MSG_VERDICT, v[i], verdict);
      } else {
        put_verdict(NFQNL_MSG_VERDICT_BATCH, v[j], verdict);
      }
      i = j + 1;
    }
  }

  // --- receiving packets ---

  void note_id(uint32_t id) {
    if (have_last_id) {
      uint32_t step = id - last_id;  // modulo 2^32: ids wrap
      if (step == 0 || step > 0x80000000u) {
        if (ordered_ids)
          spdlog::warn("holder: queue {}: packet id {} after {}: batch verdicts off", opts.queue_num, id,
                       last_id);
        ordered_ids = false;
      } else {
        counters.kernel_lost += step - 1;
      }
    }
    have_last_id = true;
    last_id = id;
  }

  void on_packet(const nlmsghdr* nlh) {
    nlattr* attr[NFQA_MAX + 1] = {};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr) {
      // Without an id there is no verdict: the packet stays queued (held)
      // until stop. Should not happen with a well-behaved kernel.
      ++counters.verdict_errors;
      spdlog::error("holder: queue {}: unparsable packet message", opts.queue_num);
      return;
    }
    auto* ph = static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
    uint32_t id = ntohl(ph->packet_id);
    uint32_t bytes = 0;
    if (attr[NFQA_CAP_LEN] != nullptr) {
      bytes = ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN]));
    } else if (attr[NFQA_PAYLOAD] != nullptr) {
      bytes = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
    }
    note_id(id);
    uint64_t tag = tag_source();  // the writer's pending counter, now
    counters.last_tag = tag;
    if (opts.mode == HolderMode::kPass) {
      pass.push_back(id);
      ++counters.passed_total;
      return;
    }
    if (queue.push(id, tag, clock.now(), bytes) == HoldQueue::Push::kFull) {
      // Never released early: dropped, the sender retransmits.
      put_verdict(NFQNL_MSG_VERDICT, id, NF_DROP);
      uint64_t n = queue.stats(clock.now()).total_dropped_full;
      if (worth_logging(n))
        spdlog::warn("holder: queue {}: hold queue full ({} packets), {} dropped so far", opts.queue_num,
                     queue.size(), n);
    }
  }

  void on_error_msg(const nlmsghdr* nlh) {
    if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(nlmsgerr)) return;
    auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    if (config_seq != 0 && nlh->nlmsg_seq == config_seq) {
      config_done = true;
      config_err = -e->error;
      return;
    }
    if (e->error == 0) return;  // an ack we did not need
    ++counters.verdict_errors;
    if (worth_logging(counters.verdict_errors))
      spdlog::error("holder: queue {}: kernel refused a verdict: {} ({} so far)", opts.queue_num,
                    std::strerror(-e->error), counters.verdict_errors);
  }

  void on_datagram(size_t len) {
    int left = static_cast<int>(len);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(rbuf.data()); mnl_nlmsg_ok(nlh, left);
         nlh = mnl_nlmsg_next(nlh, &left)) {
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        on_error_msg(nlh);
      } else if (NFNL_SUBSYS_ID(nlh->nlmsg_type) == NFNL_SUBSYS_QUEUE &&
                 NFNL_MSG_TYPE(nlh->nlmsg_type) == NFQNL_MSG_PACKET) {
        on_packet(nlh);
      }
    }
  }

  // One recvmsg. Returns false when there is nothing more to read now.
  bool read_one() {
    iovec iov{rbuf.data(), rbuf.size()};
    sockaddr_nl from{};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = ::recvmsg(sock.native_handle(), &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) return true;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      if (errno == ENOBUFS) {
        // The receive buffer overflowed: the kernel dropped packets it could
        // not deliver (lost, not leaked; the id gap counts them).
        ++counters.enobufs;
        if (worth_logging(counters.enobufs))
          spdlog::warn("holder: queue {}: ENOBUFS, kernel dropped packets ({} times so far)", opts.queue_num,
                       counters.enobufs);
        return true;
      }
      spdlog::critical("holder: queue {}: netlink receive failed: {}; stopping (traffic stops)", opts.queue_num,
                       std::strerror(errno));
      stop();
      return false;
    }
    if (msg.msg_flags & MSG_TRUNC) {
      ++counters.verdict_errors;
      spdlog::error("holder: queue {}: truncated netlink message", opts.queue_num);
    }
    if (from.nl_pid != 0) return true;  // only the kernel speaks to us
    on_datagram(static_cast<size_t>(n));
    return true;
  }

  // After reading: accept kPass packets, release what committed already covers.
  void settle() {
    if (!pass.empty()) {
      put_verdicts(pass, NF_ACCEPT);
      pass.clear();
    }
    if (opts.mode == HolderMode::kHold) release_to(counters.committed);
    flush();
  }

  void arm() {
    if (stopped) return;
    sock.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                    [self = shared_from_this()](const boost::system::error_code& ec) {
                      if (ec || self->stopped) return;
                      self->on_readable();
                    });
  }

  void on_readable() {
    for (int i = 0; i < kRecvBudget && !stopped && read_one(); ++i) {
    }
    if (stopped) return;
    settle();
    arm();
  }

  // --- configuration ---

  proto::Result<bool> configure() {
    uint32_t maxlen = opts.kernel_queue_maxlen != 0
                          ? opts.kernel_queue_maxlen
                          : static_cast<uint32_t>(std::min<uint64_t>(opts.max_held + kKernelQueueHeadroom, 1u << 24));
    // One message: bind, metadata-only copies, queue length, GSO. The kernel
    // applies them in that order; packets that arrive in between are
    // handled like any other.
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, opts.queue_num);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
    if (opts.gso) {
      mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
      mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
    }
    nlh->nlmsg_flags |= NLM_F_ACK;
    config_seq = nlh->nlmsg_seq = 1;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(sock.native_handle(), nlh, nlh->nlmsg_len, 0, reinterpret_cast<const sockaddr*>(&kernel),
                 sizeof kernel) < 0)
      return proto::Error{Errc::kSystem, std::string("nfqueue config: sendto: ") + std::strerror(errno)};

    // Real time, not the injected clock: a manual test clock never advances here.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kConfigTimeoutMs);
    while (!config_done) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return proto::Error{Errc::kSystem, "nfqueue config: no answer from the kernel"};
      pollfd p{sock.native_handle(), POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno != EINTR)
        return proto::Error{Errc::kSystem, std::string("nfqueue config: poll: ") + std::strerror(errno)};
      while (!stopped && read_one()) {
      }
      if (stopped) return proto::Error{Errc::kSystem, "nfqueue config: netlink socket failed"};
    }
    config_seq = 0;
    if (config_err != 0) {
      std::string why = std::strerror(config_err);
      if (config_err == EBUSY) why += " (another process is bound to this queue number)";
      if (config_err == EPERM) why += " (needs CAP_NET_ADMIN)";
      return proto::Error{Errc::kSystem, "nfqueue " + std::to_string(opts.queue_num) + ": bind: " + why};
    }
    settle();
    return true;
  }

  // --- release / stop ---

  void release_to(uint64_t committed) {
    counters.committed = std::max(counters.committed, committed);
    ids.clear();
    queue.release(counters.committed, clock.now(), ids);
    put_verdicts(ids, NF_ACCEPT);
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    ids.clear();
    size_t n = queue.drain(ids);
    // Fail-closed: what is still held may depend on writes the backup never
    // acknowledged. kPass packets read but not yet accepted go the same way.
    put_verdicts(ids, NF_DROP);
    put_verdicts(pass, NF_DROP);
    n += pass.size();
    pass.clear();
    flush();
    counters.dropped_on_stop += n;
    boost::system::error_code ignored;
    sock.close(ignored);  // the kernel drops whatever is still queued to us
    spdlog::info("holder: queue {} stopped; {} held packets dropped (fail-closed)", opts.queue_num, n);
  }
};

proto::Result<std::unique_ptr<PacketHolder>> PacketHolder::start(boost::asio::io_context& io,
                                                                 PacketHolderOptions options,
                                                                 TagSource tag_source,
                                                                 const wan::Clock& clock) {
  if (options.max_held < 1) return proto::Error{Errc::kInvalid, "holder: max_held must be at least 1"};
  if (!tag_source) return proto::Error{Errc::kInvalid, "holder: no tag source"};
  auto fd = socket_in_netns(options.netns, AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
  if (!fd) return fd.error();
  int s = *fd;
  auto fail = [s](const std::string& what) -> proto::Error {
    std::string msg = what + ": " + std::strerror(errno);
    ::close(s);
    return proto::Error{Errc::kSystem, msg};
  };
  // SO_RCVBUFFORCE (root) ignores net.core.rmem_max; fall back to what we may set.
  int rcvbuf = options.rcvbuf_bytes;
  if (::setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0 &&
      ::setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
    return fail("holder: SO_RCVBUF");
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(s, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) return fail("holder: netlink bind");

  auto impl = std::make_shared<Impl>(io, s, std::move(options), std::move(tag_source), clock);
  auto configured = impl->configure();
  if (!configured) {
    impl->stop();
    return configured.error();
  }
  impl->arm();
  spdlog::info("holder: queue {} bound{}{}, mode {}, max {} packets", impl->opts.queue_num,
               impl->opts.netns.empty() ? "" : " in netns ", impl->opts.netns, holder_mode_name(impl->opts.mode),
               impl->opts.max_held);
  return std::unique_ptr<PacketHolder>(new PacketHolder(std::move(impl)));
}

PacketHolder::~PacketHolder() { stop(); }

void PacketHolder::release(uint64_t committed) {
  if (impl_->stopped || impl_->opts.mode != HolderMode::kHold) {
    impl_->counters.committed = std::max(impl_->counters.committed, committed);
    return;
  }
  impl_->release_to(committed);
  impl_->flush();
}

void PacketHolder::stop() { impl_->stop(); }

PacketHolderStats PacketHolder::stats() const {
  PacketHolderStats s = impl_->counters;
  HoldQueueStats q = impl_->queue.stats(impl_->clock.now());
  s.held = q.held;
  s.held_bytes = q.held_bytes;
  s.oldest_hold_ms = to_ms(q.oldest_age);
  s.max_hold_ms = to_ms(q.max_hold);
  s.held_total = q.total_held;
  s.released_total = q.total_released;
  s.dropped_full = q.total_dropped_full;
  s.tags_raised = q.tags_raised;
  return s;
}

}  // namespace tideway::agent
