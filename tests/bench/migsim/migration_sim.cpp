#include "tests/bench/migsim/migration_sim.h"

#include <xxhash.h>

#include <cassert>
#include <cmath>
#include <memory>

#include "wan/codec/batch_format.h"
#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace tideway::migsim {

namespace {

using wan::codec::CodecStats;
constexpr uint32_t kPage = sim::kSimPageSize;
constexpr uint64_t kRawRecordBytes = kPage + 8;  // page number + page, as Xen's PAGE_DATA

std::chrono::nanoseconds to_ns(double s) { return std::chrono::nanoseconds(std::llround(s * 1e9)); }

void add(EncodingBytes& a, const EncodingBytes& b) {
  a.zero += b.zero, a.raw += b.raw, a.literal += b.literal, a.cbr_hit += b.cbr_hit, a.delta += b.delta;
  a.unchanged += b.unchanged, a.wire_headers += b.wire_headers, a.wire_control += b.wire_control;
  a.wire_literal += b.wire_literal;
}

// Page bytes by encoding, from the change of the encoder's counters.
void count_encodings(const CodecStats& before, const CodecStats& after, uint32_t sub_size, EncodingBytes& e) {
  e.zero += (after.zero_records - before.zero_records) * kPage;
  e.raw += (after.raw_records - before.raw_records) * kPage;
  e.literal += (after.sub_literal - before.sub_literal) * sub_size;
  e.cbr_hit += (after.sub_hit - before.sub_hit) * sub_size;
  e.delta += (after.sub_delta - before.sub_delta) * sub_size;
  e.unchanged += (after.sub_unchanged - before.sub_unchanged) * sub_size;
}

// The sending side of one migration: guest, encoder, optional destination.
class Migration {
 public:
  Migration(SimConfig c, std::unique_ptr<sim::SimGuest> guest,
            std::unique_ptr<wan::codec::Encoder> enc, std::unique_ptr<wan::codec::Decoder> dec)
      : c_(std::move(c)), guest_(std::move(guest)), enc_(std::move(enc)), dec_(std::move(dec)),
        buffers_(c_.use_codec ? c_.codec.max_records : 256, std::vector<uint8_t>(kPage)),
        dst_digest_(c_.verify ? guest_->pages() : 0, 0) {}

  proto::Result<SimResult> run();

 private:
  proto::Result<void> send(const std::vector<uint32_t>& pages, bool paused, IterationRecord& rec);
  proto::Result<void> ship(size_t count, bool paused, IterationRecord& rec);
  uint64_t verify_pages() const;

  const SimConfig c_;
  std::unique_ptr<sim::SimGuest> guest_;
  std::unique_ptr<wan::codec::Encoder> enc_;
  std::unique_ptr<wan::codec::Decoder> dec_;
  std::vector<std::vector<uint8_t>> buffers_;  // one batch of page copies
  std::vector<wan::codec::PageRef> refs_;
  std::vector<uint32_t> batch_pages_;
  std::vector<uint8_t> wire_;
  std::vector<uint64_t> dst_digest_;  // destination: XXH3 of each page as decoded
  double t_ = 0;                       // virtual seconds since the migration began
};

proto::Result<void> Migration::ship(size_t count, bool paused, IterationRecord& rec) {
  uint64_t bytes = 0;
  if (c_.use_codec) {
    const CodecStats before = enc_->stats();
    if (auto r = enc_->encode(std::span(refs_.data(), count), wire_); !r) return r.error();
    bytes = wire_.size();
    count_encodings(before, enc_->stats(), enc_->geometry().sub_block_size, rec.by_encoding);
    auto h = wan::codec::parse_header(wire_);
    assert(h.ok());
    rec.by_encoding.wire_headers += wan::codec::kHeaderSize;
    rec.by_encoding.wire_control += h->control_len;
    rec.by_encoding.wire_literal += bytes - wan::codec::kHeaderSize - h->control_len;
    if (dec_) {
      auto out = dec_->decode(wire_);
      if (!out) return proto::Error{out.error().code, "destination refused a batch: " + out.error().detail};
      for (const auto& r : *out) dst_digest_[r.address / kPage] = XXH3_64bits(r.page.data(), r.page.size());
    }
  } else {
    bytes = count * kRawRecordBytes;
    rec.by_encoding.raw += count * kPage;
    rec.by_encoding.wire_literal += bytes;
    if (!dst_digest_.empty())
      for (size_t i = 0; i < count; ++i) dst_digest_[batch_pages_[i]] = XXH3_64bits(buffers_[i].data(), kPage);
  }
  // Each batch is one channel message: framed and sent on its own.
  rec.codec_bytes += bytes;
  rec.channel_bytes += channel_bytes(bytes);
  rec.batches += 1;
  // The guest runs on while the batch crosses the link (not when paused).
  const double dt = transfer_seconds(c_.link, channel_bytes(bytes));
  t_ += dt;
  if (!paused) guest_->advance(to_ns(dt));
  return {};
}

proto::Result<void> Migration::send(const std::vector<uint32_t>& pages, bool paused, IterationRecord& rec) {
  size_t n = 0;
  refs_.clear();
  batch_pages_.clear();
  for (uint32_t p : pages) {
    // Xen's skip: dirtied again since the iteration began, so it will be
    // sent again anyway; sending it now would be wasted.
    if (!paused && c_.skip_redirtied && guest_->is_dirty(p)) {
      ++rec.pages_skipped;
      continue;
    }
    guest_->read_page(p, buffers_[n]);
    refs_.push_back({uint64_t{p} * kPage, buffers_[n]});
    batch_pages_.push_back(p);
    ++rec.pages_sent;
    if (++n == buffers_.size()) {
      if (auto r = ship(n, paused, rec); !r) return r;
      n = 0;
      refs_.clear();
      batch_pages_.clear();
    }
  }
  if (n > 0) return ship(n, paused, rec);
  return {};
}

uint64_t Migration::verify_pages() const {
  std::vector<uint8_t> page(kPage);
  uint64_t bad = 0;
  for (uint64_t p = 0; p < guest_->pages(); ++p) {
    guest_->read_page(p, page);
    if (XXH3_64bits(page.data(), kPage) != dst_digest_[p]) ++bad;
  }
  return bad;
}

proto::Result<SimResult> Migration::run() {
  SimResult res;
  wan::StopPolicy policy(c_.stop);
  guest_->take_dirty();  // writes before the migration do not matter
  std::vector<uint32_t> to_send(guest_->pages());
  for (uint64_t p = 0; p < to_send.size(); ++p) to_send[p] = static_cast<uint32_t>(p);

  for (uint32_t it = 1;; ++it) {
    IterationRecord rec;
    rec.iteration = it;
    rec.start_s = t_;
    rec.pages_to_send = to_send.size();
    if (auto r = send(to_send, false, rec); !r) return r.error();
    rec.duration_s = t_ - rec.start_s;
    to_send = guest_->take_dirty();
    rec.pages_dirtied = rec.pages_remaining = to_send.size();
    wan::IterationStats s;
    s.iteration = it;
    s.pages_sent = rec.pages_sent;
    s.pages_skipped = rec.pages_skipped;
    s.pages_dirtied = rec.pages_dirtied;
    s.pages_remaining = rec.pages_remaining;
    s.elapsed = to_ns(t_);
    s.bytes_sent = channel_bytes(rec.codec_bytes);
    const wan::StopDecision d = policy.after_iteration(s);
    assert(!d.invalid_input);
    rec.decision = d.reason;
    res.iterations.push_back(std::move(rec));
    if (d.stop) {
      res.stop_reason = d.reason;
      break;
    }
  }

  // Stop-and-copy: the guest is paused; the last byte must also cross the
  // link (half an RTT) before the VM runs at the destination.
  IterationRecord fin;
  fin.iteration = static_cast<uint32_t>(res.iterations.size() + 1);
  fin.final = true;
  fin.start_s = t_;
  fin.pages_to_send = to_send.size();
  if (auto r = send(to_send, true, fin); !r) return r.error();
  const double latency = std::chrono::duration<double>(c_.link.rtt).count() / 2;
  fin.duration_s = t_ - fin.start_s;
  fin.decision = "stop-and-copy";
  res.pause_time_s = fin.duration_s + latency;
  res.total_time_s = t_ + latency;
  res.iterations.push_back(std::move(fin));

  for (auto& r : res.iterations) {
    res.codec_bytes += r.codec_bytes;
    res.channel_bytes += r.channel_bytes;
    add(res.by_encoding, r.by_encoding);
  }
  if (enc_) res.codec = enc_->stats();
  res.guest_writes = guest_->writes();
  if (c_.verify) {
    res.verified = true;
    res.mismatched_pages = verify_pages();
  }
  return res;
}

}  // namespace

uint64_t channel_bytes(uint64_t codec_bytes) {
  constexpr uint64_t kFragment = 32 * 1024, kFrameHeader = 32, kTlsRecord = 16 * 1024, kTlsOverhead = 22;
  const uint64_t framed = codec_bytes + (codec_bytes + kFragment - 1) / kFragment * kFrameHeader;
  return framed + (framed + kTlsRecord - 1) / kTlsRecord * kTlsOverhead;
}

double transfer_seconds(const LinkConfig& link, uint64_t bytes) {
  const double payload_share = static_cast<double>(link.mtu - 52) / static_cast<double>(link.mtu + 38);
  return static_cast<double>(bytes) * 8.0 / (link.rate_bits_per_s * payload_share);
}

proto::Result<SimResult> run_migration(const SimConfig& config) {
  using proto::Errc;
  SimConfig c = config;
  if (c.stop.total_pages == 0) c.stop.total_pages = c.guest.pages;  // for Xen's 3x-memory cap
  if (!std::isfinite(c.link.rate_bits_per_s) || c.link.rate_bits_per_s < 1e3 || c.link.rate_bits_per_s > 1e12)
    return proto::Error{Errc::kInvalid, "link rate must be 1 kbit/s .. 1 Tbit/s"};
  if (c.link.rtt.count() < 0 || c.link.rtt > std::chrono::seconds(10))
    return proto::Error{Errc::kInvalid, "RTT must be 0..10 s"};
  if (c.link.mtu < 576 || c.link.mtu > 65536) return proto::Error{Errc::kInvalid, "MTU must be 576..65536"};
  if (auto v = wan::validate(c.stop); !v) return v.error();
  auto guest = sim::SimGuest::create(c.guest);
  if (!guest) return guest.error();
  std::unique_ptr<wan::codec::Encoder> enc;
  std::unique_ptr<wan::codec::Decoder> dec;
  if (c.use_codec) {
    auto e = wan::codec::Encoder::create(c.codec);
    if (!e) return e.error();
    enc = std::move(*e);
    if (c.verify) {
      auto d = wan::codec::Decoder::create(c.codec);
      if (!d) return d.error();
      dec = std::move(*d);
    }
  }
  Migration m(c, std::move(*guest), std::move(enc), std::move(dec));
  return m.run();
}

}  // namespace tideway::migsim
