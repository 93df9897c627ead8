// The output-buffering packet holder (PipeCloud, DESIGN 2.1): reads the
// packets that the holder rule (holder_rules.h) queues to NFQUEUE, tags each
// with the writer's pending counter at arrival, and gives the kernel an
// ACCEPT verdict, in FIFO order, once the committed counter reaches the tag.
//
// Threading: single-threaded. start(), release(), stop(), stats() and the
// destructor run on the thread that runs `io` (the agent's io thread).
//
// Fail-closed: the rule has no --queue-bypass, so while no holder listens the
// kernel drops what the rule matches. stop() DROPs the packets still held
// (they may depend on writes the backup never acknowledged) instead of
// accepting them; a crash closes the socket and the kernel drops them too.
// Packets refused because the queue is full are dropped (TCP retransmits),
// never released early.
//
// API choice: libnetfilter_queue's libmnl-based helpers (nfq_nlmsg_*) on a
// netlink socket we own. We need the raw fd for Asio anyway, and owning the
// socket lets us read many packets per wakeup, put many verdicts (batch
// verdicts) into one sendto, see ENOBUFS directly, and open the socket in
// another network namespace; the older nfq_* API hides the socket behind
// libnfnetlink (deprecated) and its callback dispatch.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "proto/result.h"
#include "wan/clock.h"

namespace tideway::agent {

enum class HolderMode {
  kHold,  // pipelined: hold each packet until committed >= its tag
  kPass,  // async: ACCEPT at once, on the same path (like-for-like benchmarks)
};

struct PacketHolderOptions {
  uint16_t queue_num = 0;
  HolderMode mode = HolderMode::kHold;
  // Bounds of the hold queue; beyond them new packets are dropped.
  size_t max_held = 16384;
  uint64_t max_held_bytes = 256ull << 20;  // 0 = no byte bound
  // Network namespace to open the netlink socket in: "" = the caller's; a
  // path (/run/netns/NAME, /proc/PID/ns/net) or a bare name under /run/netns.
  // The calling thread enters it only to create the socket, then returns;
  // the socket stays bound to that namespace.
  std::string netns;
  // Socket receive buffer (SO_RCVBUFFORCE when root): the kernel drops
  // queued packets it cannot deliver to a full buffer (we count ENOBUFS).
  int rcvbuf_bytes = 16 << 20;
  // The kernel's queue length (held + not yet read); 0 = max_held + 4096.
  uint32_t kernel_queue_maxlen = 0;
  // NFQA_CFG_F_GSO: take GSO super-packets unsegmented. Safe because we never
  // rewrite packets here; raises throughput (DESIGN 7).
  bool gso = true;
};

struct PacketHolderStats {
  HolderMode mode = HolderMode::kHold;
  uint64_t held = 0;             // packets held now
  uint64_t held_bytes = 0;
  double oldest_hold_ms = 0;     // age of the oldest held packet
  double max_hold_ms = 0;        // longest hold of a released packet
  uint64_t held_total = 0;       // packets ever held (kHold)
  uint64_t released_total = 0;   // ACCEPTed after holding
  uint64_t passed_total = 0;     // ACCEPTed at once (kPass)
  uint64_t dropped_full = 0;     // DROPped: hold queue at its bound
  uint64_t dropped_on_stop = 0;  // DROPped by stop()
  uint64_t kernel_lost = 0;      // packet ids never delivered (kernel drops: ENOBUFS, queue maxlen)
  uint64_t enobufs = 0;          // ENOBUFS reports on the socket
  uint64_t verdict_errors = 0;   // verdicts the kernel refused or we could not send
  uint64_t tags_raised = 0;      // see HoldQueue::push
  uint64_t committed = 0;        // highest committed counter seen by release()
  uint64_t last_tag = 0;         // tag of the newest packet
};

class PacketHolder {
 public:
  using TagSource = std::function<uint64_t()>;

  // Opens and configures the queue (bind, metadata-only copy, maxlen, GSO)
  // and starts reading. Fails with a reason (not root, queue already bound
  // by another process, bad netns path...). `clock` must outlive the holder.
  static proto::Result<std::unique_ptr<PacketHolder>> start(boost::asio::io_context& io,
                                                            PacketHolderOptions options,
                                                            TagSource tag_source,
                                                            const wan::Clock& clock = wan::system_clock());
  ~PacketHolder();  // stop()
  PacketHolder(const PacketHolder&) = delete;
  PacketHolder& operator=(const PacketHolder&) = delete;

  // The committed counter advanced: ACCEPT every held packet with tag <=
  // committed, in FIFO order (batched verdicts). Lower values than before
  // are ignored.
  void release(uint64_t committed);

  // DROP everything still held (fail-closed) and close the queue; the rule,
  // if still installed, then drops new packets. Idempotent.
  void stop();

  PacketHolderStats stats() const;

  struct Impl;

 private:
  explicit PacketHolder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;  // shared with pending Asio handlers
};

const char* holder_mode_name(HolderMode m);

}  // namespace tideway::agent
