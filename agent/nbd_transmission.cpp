// NbdConnection, transmission half: pipelined requests, out-of-order simple
// replies, in-flight bounds, draining and close.
//
// The read loop never waits for a BlockTarget completion: it issues the
// request and reads the next one at once, so in sync mode (completion after
// a WAN round trip) many writes share one round trip. It stops only at the
// in-flight bound and resumes when replies have been written.
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/nbd_connection.h"

namespace tideway::agent {

namespace asio = boost::asio;
namespace nbd = proto::nbd;

namespace {
constexpr size_t kMaxRepliesPerWrite = 64;  // gather-write batch
constexpr size_t kZeroChunk = 1u << 20;     // WRITE_ZEROES with NO_HOLE
constexpr size_t kReadAhead = 256u << 10;   // request read-ahead buffer
}  // namespace

void NbdConnection::enter_transmission() {
  transmitting_ = true;
  opt_data_ = Buffer{};
  handshake_out_ = Buffer{};
  spdlog::info("nbd[{}]: {} uses export '{}' ({} bytes)", id_, peer_, opt_.export_name, target_.size());
  if (shared_->stopping()) return begin_drain("server stopping", false);
  read_request();
}

bool NbdConnection::budget_full() const {
  return inflight_requests_ >= opt_.max_inflight_requests || inflight_bytes_ >= opt_.max_inflight_bytes;
}

// Requests are parsed out of a read-ahead buffer: one read brings in many
// small requests (a 4 KiB WRITE is 28 + 4096 bytes), so a queue-depth-16
// client costs a syscall per batch, not two per request.
void NbdConnection::read_request() {
  assert(!reading_ && !draining_ && !closed_);
  while (!draining_ && !closed_) {
    if (budget_full()) {
      read_paused_ = true;  // maybe_resume_reading() picks up from here
      return;
    }
    const size_t have = rend_ - rbeg_;
    if (have < nbd::kRequestSize) break;
    auto r = nbd::decode_request({rbuf_.data() + rbeg_, nbd::kRequestSize});
    if (!r) return begin_drain("malformed request: " + r.error().detail, true);
    rbeg_ += nbd::kRequestSize;
    if (static_cast<nbd::Cmd>(r->type) != nbd::Cmd::kWrite) {
      on_request(*r, {});
      continue;
    }
    assert(r->length <= nbd::kMaxRequestLength);  // decode_request checked
    if (have - nbd::kRequestSize < r->length) return read_payload(*r);
    const std::span<const uint8_t> data{rbuf_.data() + rbeg_, r->length};
    rbeg_ += r->length;
    on_request(*r, data);  // the target copies the data before write() returns
  }
  if (draining_ || closed_) return;
  fill_read_buffer();
}

void NbdConnection::fill_read_buffer() {
  if (rbuf_.empty()) rbuf_.resize(kReadAhead);
  // Keep the unparsed tail (less than one request) at the front.
  std::memmove(rbuf_.data(), rbuf_.data() + rbeg_, rend_ - rbeg_);
  rend_ -= rbeg_;
  rbeg_ = 0;
  assert(rend_ < rbuf_.size());
  reading_ = true;
  socket_.async_read_some(asio::buffer(rbuf_.data() + rend_, rbuf_.size() - rend_),
                          [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                            self->reading_ = false;
                            if (self->closed_) return;
                            if (self->draining_) return self->maybe_finish();  // arrived after stop(): not taken on
                            if (ec == asio::error::eof) {
                              if (self->rend_ != self->rbeg_)
                                return self->begin_drain("client left inside a request header", true);
                              return self->begin_drain("client closed the connection", false);
                            }
                            if (ec) return self->begin_drain("read failed: " + ec.message(), true);
                            self->rend_ += n;
                            self->read_request();
                          });
}

void NbdConnection::on_request(const nbd::Request& r, std::span<const uint8_t> data) {
  const auto type = static_cast<nbd::Cmd>(r.type);
  if (type == nbd::Cmd::kDisc) return begin_drain("client disconnected", false);
  const bool payload = type == nbd::Cmd::kRead || type == nbd::Cmd::kWrite;
  const Pending p{r.cookie, payload ? size_t{r.length} : 0};
  ++inflight_requests_;
  inflight_bytes_ += p.bytes;
  execute(r, p, data);
}

// A WRITE whose payload is not all in the read-ahead buffer: what is there
// moves to payload_, the rest is read straight into it.
void NbdConnection::read_payload(const nbd::Request& r) {
  const Pending p{r.cookie, size_t{r.length}};
  ++inflight_requests_;
  inflight_bytes_ += p.bytes;
  const size_t have = rend_ - rbeg_;
  assert(have < r.length);
  payload_.resize(r.length);
  std::memcpy(payload_.data(), rbuf_.data() + rbeg_, have);
  rbeg_ = rend_ = 0;
  reading_ = true;
  asio::async_read(socket_, asio::buffer(payload_.data() + have, r.length - have),
                   [self = shared_from_this(), r, p](const boost::system::error_code& ec, size_t) {
                     self->reading_ = false;
                     if (self->closed_) return self->release(p);
                     if (ec) {
                       self->release(p);
                       return self->begin_drain("client left inside a WRITE payload: " + ec.message(),
                                                !self->draining_);
                     }
                     self->execute(r, p, self->payload_);  // taken on before any stop(): answer it
                     if (self->draining_) return self->maybe_finish();
                     self->read_request();
                   });
}

void NbdConnection::execute(const nbd::Request& r, Pending p, std::span<const uint8_t> data) {
  const auto type = static_cast<nbd::Cmd>(r.type);
  const auto einval = [&](const char* why) {
    spdlog::debug("nbd[{}]: {} offset {} length {}: {}", id_, nbd::cmd_name(r.type), r.offset, r.length, why);
    complete(p, EINVAL);
  };
  // FUA is valid on every command; NO_HOLE only on WRITE_ZEROES. DF,
  // REQ_ONE and FAST_ZERO belong to features we do not advertise.
  const uint16_t allowed = nbd::kCmdFlagFua | (type == nbd::Cmd::kWriteZeroes ? nbd::kCmdFlagNoHole : 0);
  if ((r.flags & ~allowed) != 0) return einval("command flags not supported");
  const bool fua = (r.flags & nbd::kCmdFlagFua) != 0;
  const bool in_range = target_.in_range(r.offset, r.length);

  switch (type) {
    case nbd::Cmd::kRead: {
      if (r.length > opt_.max_request) return einval("longer than the maximum request");
      if (!in_range) return einval("beyond the end of the export");
      Buffer out(r.length);
      const int err = target_.read(r.offset, out);
      return complete(p, err, err == 0 ? std::move(out) : Buffer{});
    }
    case nbd::Cmd::kWrite:
      if (r.length > opt_.max_request) return einval("longer than the maximum request");
      if (!in_range) return einval("beyond the end of the export");
      assert(data.size() == r.length);
      return target_.write(r.offset, data, fua, on_strand(p));
    case nbd::Cmd::kFlush:
      if (r.offset != 0 || r.length != 0) return einval("FLUSH with an offset or length");
      return target_.flush(on_strand(p));
    case nbd::Cmd::kTrim:
      if (!in_range) return einval("beyond the end of the export");
      return target_.discard(r.offset, r.length, on_strand(p, fua));
    case nbd::Cmd::kWriteZeroes:
      if (!in_range) return einval("beyond the end of the export");
      // Without NO_HOLE a punched hole is the cheapest zero: it reads back
      // as zeros (BlockTarget::discard) and replicates as a small discard
      // record instead of megabytes of zeros over the WAN.
      if ((r.flags & nbd::kCmdFlagNoHole) == 0) return target_.discard(r.offset, r.length, on_strand(p, fua));
      return zero_fill(r, p);
    default:
      return einval("command not supported");
  }
}

// NO_HOLE: the range must stay allocated, so write real zeros, in chunks
// from one shared zero buffer, and answer once every chunk has completed.
void NbdConnection::zero_fill(const nbd::Request& r, Pending p) {
  if (r.length > opt_.max_request) {
    spdlog::debug("nbd[{}]: WRITE_ZEROES(NO_HOLE) of {} bytes refused", id_, r.length);
    return complete(p, EINVAL);
  }
  if (r.length == 0) return complete(p, 0);
  static const Buffer zeros(kZeroChunk, 0);
  struct FanIn {
    size_t left = 0;
    int err = 0;
  };
  auto fan = std::make_shared<FanIn>();
  fan->left = (r.length + kZeroChunk - 1) / kZeroChunk;
  const bool fua = (r.flags & nbd::kCmdFlagFua) != 0;
  for (uint64_t done = 0; done < r.length; done += kZeroChunk) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kZeroChunk, r.length - done));
    // Completions are posted to the strand, so `fan` needs no lock and
    // cannot reach zero before the last chunk has been issued.
    target_.write(r.offset + done, {zeros.data(), n}, fua, [self = shared_from_this(), p, fan](int err) {
      asio::post(self->socket_.get_executor(), [self, p, fan, err] {
        if (err != 0 && fan->err == 0) fan->err = err;
        if (--fan->left == 0) self->complete(p, fan->err);
      });
    });
  }
}

IoDone NbdConnection::on_strand(Pending p, bool flush_after) {
  return [self = shared_from_this(), p, flush_after](int err) {
    asio::post(self->socket_.get_executor(), [self, p, flush_after, err] {
      // TRIM/WRITE_ZEROES with FUA: a discard is only durable after a flush.
      if (flush_after && err == 0) return self->target_.flush(self->on_strand(p));
      self->complete(p, err);
    });
  };
}

void NbdConnection::complete(Pending p, int err, Buffer data) {
  assert(inflight_requests_ > 0);
  if (closed_) return release(p);
  if (err != 0 && err != EINVAL)
    spdlog::warn("nbd[{}]: request {:#x} failed: {}", id_, p.cookie, std::strerror(err));
  Reply rep;
  rep.header = nbd::encode_simple_reply({static_cast<uint32_t>(nbd::errno_to_nbd(err)), p.cookie});
  rep.data = std::move(data);
  rep.bytes = p.bytes;
  outbox_.push_back(std::move(rep));
  pump_writes();
}

void NbdConnection::release(Pending p) {
  assert(inflight_requests_ > 0 && inflight_bytes_ >= p.bytes);
  --inflight_requests_;
  inflight_bytes_ -= p.bytes;
  maybe_resume_reading();
  maybe_finish();
}

void NbdConnection::pump_writes() {
  if (writing_ || outbox_.empty() || closed_) return;
  std::vector<asio::const_buffer> bufs;
  const size_t n = std::min(outbox_.size(), kMaxRepliesPerWrite);
  bufs.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    bufs.push_back(asio::buffer(outbox_[i].header));
    if (!outbox_[i].data.empty()) bufs.push_back(asio::buffer(outbox_[i].data));
  }
  // The deque's first n elements stay put (only push_back happens meanwhile),
  // so the buffers stay valid until on_written pops them.
  writing_ = true;
  writing_count_ = n;
  asio::async_write(socket_, bufs, [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
    self->on_written(ec);
  });
}

void NbdConnection::on_written(const boost::system::error_code& ec) {
  assert(writing_ && writing_count_ <= outbox_.size());
  writing_ = false;
  for (size_t i = 0; i < writing_count_; ++i) {
    const Pending p{0, outbox_.front().bytes};
    outbox_.pop_front();
    --inflight_requests_;
    inflight_bytes_ -= p.bytes;
  }
  writing_count_ = 0;
  if (closed_) return discard_outbox();
  if (ec) return close("reply write failed: " + ec.message(), true);
  pump_writes();
  maybe_resume_reading();
  maybe_finish();
}

void NbdConnection::discard_outbox() {
  // Entries being written stay until on_written (their buffers are in use).
  const size_t keep = writing_ ? writing_count_ : 0;
  while (outbox_.size() > keep) {
    --inflight_requests_;
    inflight_bytes_ -= outbox_.back().bytes;
    outbox_.pop_back();
  }
}

void NbdConnection::maybe_resume_reading() {
  if (!read_paused_ || budget_full() || draining_ || closed_) return;
  read_paused_ = false;
  read_request();
}

void NbdConnection::begin_drain(const std::string& reason, bool error) {
  if (closed_) return;
  if (!draining_) {
    draining_ = true;
    read_paused_ = false;
    drain_reason_ = reason;
    drain_error_ = error;
    spdlog::debug("nbd[{}]: {}; finishing {} in-flight requests", id_, reason, inflight_requests_);
    // Wake an outstanding read without disturbing a reply being written.
    boost::system::error_code ignored;
    if (reading_) socket_.shutdown(asio::socket_base::shutdown_receive, ignored);
    drain_timer_.expires_after(opt_.drain_timeout);
    drain_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec && !self->closed_) self->close(self->drain_reason_ + "; replies not drained in time", true);
    });
  }
  maybe_finish();
}

void NbdConnection::maybe_finish() {
  if (!draining_ || closed_ || reading_ || writing_ || inflight_requests_ != 0 || !outbox_.empty()) return;
  close(drain_reason_, drain_error_);
}

void NbdConnection::close(const std::string& reason, bool error) {
  if (closed_) return;
  closed_ = true;
  draining_ = true;
  if (error)
    spdlog::warn("nbd[{}]: closing connection from {}: {}", id_, peer_, reason);
  else
    spdlog::info("nbd[{}]: closing connection from {}: {}", id_, peer_, reason);
  drain_timer_.cancel();
  boost::system::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  discard_outbox();
  // Requests still at the BlockTarget hold this connection; their
  // completions find closed_ set and only release their budget.
}

}  // namespace tideway::agent
