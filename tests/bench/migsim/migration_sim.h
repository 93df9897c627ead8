// A discrete-event simulation, in virtual time, of a pre-copy live
// migration of a simulated guest (agent/sim_guest) over a WAN link. Each
// iteration sends the dirty pages through the real codec Encoder (so the
// bytes on the wire are real), the guest advances by each batch's transfer
// time, and the stop policy (wan/smart_stop.h) decides after every
// iteration; the final stop-and-copy, with the guest paused, is the pause
// time. Optionally the batches are decoded at a simulated destination and
// every page is checked at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/sim_guest/sim_guest.h"
#include "proto/result.h"
#include "wan/codec/codec_config.h"
#include "wan/codec/codec_stats.h"
#include "wan/smart_stop.h"

namespace tideway::migsim {

struct LinkConfig {
  double rate_bits_per_s = 100e6;
  std::chrono::nanoseconds rtt = std::chrono::milliseconds(20);
  // Ethernet MTU: TCP/IP and Ethernet framing leave (mtu - 52) payload
  // bytes of every (mtu + 38) on the wire (TCP timestamps, preamble, gap).
  uint32_t mtu = 1500;
};

struct SimConfig {
  sim::SimGuestConfig guest;
  wan::StopPolicyConfig stop;
  // use_codec false: every page goes raw (4 KiB + an 8-byte page number), as
  // Xen's migration of the paper's time did; the codec config is ignored.
  bool use_codec = true;
  wan::codec::CodecConfig codec;
  LinkConfig link;
  // Defer a page that was dirtied again before its turn in this iteration
  // (Xen does; QEMU does not).
  bool skip_redirtied = true;
  // Decode at the destination and compare every page after the switch-over.
  bool verify = false;
};

// Page bytes by how the codec sent them, and where the wire bytes went.
struct EncodingBytes {
  uint64_t zero = 0, raw = 0, literal = 0, cbr_hit = 0, delta = 0, unchanged = 0;  // page bytes
  uint64_t wire_headers = 0, wire_control = 0, wire_literal = 0;  // codec bytes; sum = codec_bytes
};

struct IterationRecord {
  uint32_t iteration = 0;  // 1-based; the last one is the stop-and-copy
  bool final = false;
  double start_s = 0, duration_s = 0;
  uint64_t pages_to_send = 0, pages_sent = 0, pages_skipped = 0;
  uint64_t pages_dirtied = 0;    // while it ran (0 for the final one: paused)
  uint64_t pages_remaining = 0;  // dirty at its end
  uint64_t codec_bytes = 0;      // what the encoder produced (raw: pages x 4104)
  uint64_t channel_bytes = 0;    // + channel framing and TLS records, per batch
  uint64_t batches = 0;
  EncodingBytes by_encoding;
  std::string decision;  // the stop policy's reason after this iteration
};

struct SimResult {
  std::vector<IterationRecord> iterations;
  uint64_t codec_bytes = 0, channel_bytes = 0;
  double total_time_s = 0;  // start to the VM running at the destination
  double pause_time_s = 0;  // stop-and-copy: paused until the last byte arrived
  std::string stop_reason;
  uint64_t guest_writes = 0;
  wan::codec::CodecStats codec;  // the encoder's totals (empty when raw)
  EncodingBytes by_encoding;
  // verify: pages whose destination copy differs from the source (must be 0).
  bool verified = false;
  uint64_t mismatched_pages = 0;
};

// Bytes on the link (TCP payload) for one batch of `codec_bytes`: the
// channel's 32-byte header per 32 KiB fragment and TLS 1.3's 22 bytes per
// 16 KiB record.
uint64_t channel_bytes(uint64_t codec_bytes);
// Seconds the link needs for `bytes` of TCP payload.
double transfer_seconds(const LinkConfig& link, uint64_t bytes);

// kInvalid for a bad guest, codec, policy or link configuration.
proto::Result<SimResult> run_migration(const SimConfig& config);

}  // namespace tideway::migsim
