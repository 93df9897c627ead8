#include "wan/session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <cassert>

namespace tideway::wan {

const char* state_name(SessionState s) {
  switch (s) {
    case SessionState::kConnecting: return "connecting";
    case SessionState::kConnected: return "connected";
    case SessionState::kReset: return "reset";
    case SessionState::kClosed: return "closed";
  }
  return "?";
}

namespace {
constexpr size_t kReadBufferBytes = 256 * 1024;
}

Session::Session(asio::io_context& io, const ChannelOptions& opts, proto::SessionId id)
    : io_(io),
      opts_(opts),
      clock_(*opts.clock),
      id_(id),
      outbox_(*opts.clock, opts.link_rate_bytes_per_sec, opts.link_burst_bytes, opts.max_frame_payload),
      rate_timer_(io),
      heartbeat_timer_(io),
      ack_timer_(io) {
  for (const auto& s : opts_.streams) {
    outbox_.add_stream(s);
    inbox_.add_stream(s.id);
  }
}

Session::~Session() {
  if (link_) link_->close();
}

void Session::on_message(uint32_t stream, MessageHandler h) {
  assert(inbox_.has_stream(stream));
  handlers_[stream] = std::move(h);
}

void Session::on_writable(uint32_t stream, std::function<void()> h) {
  assert(outbox_.has_stream(stream));
  writable_handlers_[stream] = std::move(h);
}

void Session::set_state(SessionState s) {
  if (state_ == s) return;
  state_ = s;
  if (state_handler_) state_handler_(s);
}

bool Session::send(uint32_t stream, const proto::Message& m) {
  const auto payload = proto::encode_payload(m);
  return send(stream, proto::message_type(m), payload);
}

bool Session::send(uint32_t stream, proto::MessageType type, std::span<const uint8_t> payload) {
  if (state_ == SessionState::kClosed || !outbox_.has_stream(stream)) return false;
  if (!outbox_.enqueue(stream, type, payload)) {
    waiting_writable_[stream] = true;
    return false;
  }
  kick();
  return true;
}

SessionStats Session::stats() const {
  SessionStats s = stats_;
  s.state = state_;
  const auto& o = outbox_.stats();
  s.frames_sent = o.frames_sent;
  s.bytes_sent = o.bytes_sent;
  s.frames_resent = o.frames_resent;
  s.duplicates_dropped = inbox_.duplicates();
  return s;
}

void Session::close() {
  if (state_ == SessionState::kClosed) return;
  fail_link("session closed", /*expected=*/true);
  set_state(SessionState::kClosed);
  // Drop the application's callbacks (they often hold the session: a
  // cycle). Destroy them later, since close() may run inside one of them.
  asio::post(io_, [h = std::move(handlers_), w = std::move(writable_handlers_),
                   s = std::move(state_handler_), l = std::move(link_down_)] {});
  handlers_.clear();
  writable_handlers_.clear();
  state_handler_ = nullptr;
  link_down_ = nullptr;
}

void Session::reset_for_new_peer_session() {
  size_t unacked = 0;
  for (const auto& st : opts_.streams) unacked += outbox_.retained_bytes(st.id);
  spdlog::warn("channel: peer lost the session; dropping {} unacknowledged bytes and restarting streams",
               unacked);
  outbox_.reset();
  inbox_.reset();
  set_state(SessionState::kReset);
}

void Session::attach(std::shared_ptr<Link> link, proto::FrameParser parser,
                     const std::vector<proto::StreamPosition>& peer_has, const std::string& peer_site) {
  assert(state_ != SessionState::kClosed);
  if (link_) fail_link("replaced by a new link");
  std::string why;
  if (!outbox_.rewind(peer_has, &why)) {
    spdlog::error("channel: cannot resume session with {}: {}", peer_site, why);
    link->close();
    stats_.last_error = why;
    if (link_down_) link_down_(why);
    return;
  }
  link_ = std::move(link);
  ++link_gen_;
  parser_ = std::move(parser);
  peer_site_ = peer_site;
  peer_name_ = link_->peer_name;
  last_rx_ = clock_.now();
  ++stats_.links;
  set_state(SessionState::kConnected);
  const uint64_t gen = link_gen_;
  process_frames();
  if (gen != link_gen_) return;
  read_loop(std::make_shared<std::vector<uint8_t>>(kReadBufferBytes));
  arm_heartbeat();
  kick();
}

void Session::read_loop(std::shared_ptr<std::vector<uint8_t>> buf) {
  auto link = link_;
  const uint64_t gen = link_gen_;
  // The handler holds the link: an SSL stream must outlive its pending ops.
  link->async_read_some(asio::buffer(*buf), [self = shared_from_this(), gen, buf, link](
                                                 const boost::system::error_code& ec, size_t n) {
    if (gen != self->link_gen_) return;
    if (ec) {
      self->fail_link("read: " + ec.message());
      return;
    }
    self->last_rx_ = self->clock_.now();
    self->stats_.bytes_received += n;
    self->parser_.feed({buf->data(), n});
    self->process_frames();
    if (gen == self->link_gen_) self->read_loop(buf);
  });
}

void Session::process_frames() {
  const uint64_t gen = link_gen_;
  while (gen == link_gen_ && link_) {
    auto next = parser_.next();
    if (!next) {
      fail_link(std::string("malformed frame from peer: ") + proto::errc_name(next.error().code) + ": " +
                next.error().detail);
      return;
    }
    if (!next->has_value()) break;
    const proto::Frame& f = **next;
    ++stats_.frames_received;
    if (f.header.stream == proto::kControlStream) {
      handle_control(f);
      continue;
    }
    Inbox::Delivery d;
    auto outcome = inbox_.accept(f, &d);
    if (!outcome) {
      fail_link("protocol error: " + outcome.error().detail);
      return;
    }
    if (*outcome == Inbox::Outcome::kDeliver) {
      ++stats_.messages_delivered;
      auto h = handlers_.find(f.header.stream);
      if (h != handlers_.end() && h->second) h->second(d.type, d.payload);
    }
  }
  if (gen != link_gen_) return;
  if (inbox_.unacked_bytes() >= opts_.ack_bytes)
    send_ack_now();
  else if (inbox_.unacked_bytes() > 0)
    arm_ack();
}

void Session::handle_control(const proto::Frame& f) {
  auto m = proto::decode_payload(f.header.type, f.payload);
  if (!m) {
    fail_link(std::string("malformed control frame: ") + m.error().detail);
    return;
  }
  if (auto* hb = std::get_if<proto::Heartbeat>(&*m)) {
    peer_hb_sent_ = hb->sent_ns;
    if (hb->echo_ns != 0) stats_.rtt = clock_.now() - Nanos{static_cast<int64_t>(hb->echo_ns)};
  } else if (auto* ack = std::get_if<proto::StreamAck>(&*m)) {
    for (const auto& p : ack->acked) {
      if (!outbox_.on_ack(p.stream, p.seq)) {
        fail_link("peer acked stream " + std::to_string(p.stream) + " seq " + std::to_string(p.seq) +
                  " that was never sent");
        return;
      }
    }
    notify_writable();
  } else if (auto* err = std::get_if<proto::ErrorMsg>(&*m)) {
    fail_link("peer reported error: " + err->reason);
  } else {
    fail_link(std::string("unexpected ") + proto::type_name(f.header.type) + " on the control stream");
  }
}

void Session::kick() {
  if (writing_ || !link_) return;
  Nanos wait{0};
  auto batch = outbox_.next_batch(opts_.write_batch_bytes, &wait);
  if (batch.frames.empty()) {
    if (wait > Nanos{0} && !rate_timer_armed_) {
      rate_timer_armed_ = true;
      rate_timer_.expires_after(clock_.to_real(wait));
      rate_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        self->rate_timer_armed_ = false;
        if (!ec) self->kick();
      });
    }
    return;
  }
  writing_ = true;
  std::vector<asio::const_buffer> bufs;
  if (link_->tls() && batch.frames.size() > 1) {
    // asio's SSL stream writes only the first buffer of a sequence per
    // SSL_write: 16 frames of 4 KiB would be 16 records and 16 syscalls.
    tls_batch_.clear();
    for (const auto& f : batch.frames) tls_batch_.insert(tls_batch_.end(), f->begin(), f->end());
    bufs.push_back(asio::buffer(tls_batch_));
  } else {
    bufs.reserve(batch.frames.size());
    for (const auto& f : batch.frames) bufs.push_back(asio::buffer(*f));
  }
  const uint64_t gen = link_gen_;
  link_->async_write(bufs, [self = shared_from_this(), gen, link = link_, frames = std::move(batch.frames)](
                               const boost::system::error_code& ec, size_t) {
    if (gen != self->link_gen_) return;
    self->writing_ = false;
    if (ec) {
      self->fail_link("write: " + ec.message());
      return;
    }
    self->adapt_notsent_lowat();
    self->kick();
  });
}

void Session::adapt_notsent_lowat() {
  const Nanos now = clock_.now();
  if (!link_ || now - lowat_checked_ < Nanos{50ms}) return;
  lowat_checked_ = now;
  link_->adapt_notsent_lowat(opts_.tcp_notsent_lowat, opts_.tcp_notsent_lowat_max, opts_.tcp_notsent_lowat_time);
}

void Session::arm_heartbeat() {
  heartbeat_timer_.expires_after(clock_.to_real(opts_.heartbeat_interval));
  const uint64_t gen = link_gen_;
  heartbeat_timer_.async_wait([self = shared_from_this(), gen](const boost::system::error_code& ec) {
    if (ec || gen != self->link_gen_ || !self->link_) return;
    const Nanos silent = self->clock_.now() - self->last_rx_;
    if (silent > self->opts_.dead_peer_timeout) {
      self->fail_link("peer silent for " + std::to_string(silent.count() / 1'000'000) + " ms");
      return;
    }
    proto::Heartbeat hb{to_ns(self->clock_.now()), self->peer_hb_sent_};
    self->outbox_.enqueue_control(proto::encode_message(hb));
    self->kick();
    self->arm_heartbeat();
  });
}

void Session::arm_ack() {
  if (ack_armed_) return;
  ack_armed_ = true;
  ack_timer_.expires_after(clock_.to_real(opts_.ack_delay));
  ack_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    self->ack_armed_ = false;
    if (!ec) self->send_ack_now();
  });
}

void Session::send_ack_now() {
  if (!link_) return;
  auto positions = inbox_.take_ack();
  if (positions.empty()) return;
  outbox_.enqueue_control(proto::encode_message(proto::StreamAck{std::move(positions)}));
  kick();
}

void Session::notify_writable() {
  for (auto& [stream, waiting] : waiting_writable_) {
    if (!waiting) continue;
    if (outbox_.retained_bytes(stream) > outbox_.max_retained_bytes(stream) / 2) continue;
    waiting = false;
    auto h = writable_handlers_.find(stream);
    if (h != writable_handlers_.end() && h->second) asio::post(io_, h->second);
  }
}

void Session::fail_link(const std::string& why, bool expected) {
  if (!link_) return;
  spdlog::log(expected ? spdlog::level::info : spdlog::level::warn, "channel: link to {} ({}) down: {}",
              peer_site_.empty() ? "peer" : peer_site_, link_->remote(), why);
  link_->close();
  link_.reset();
  ++link_gen_;
  writing_ = false;
  heartbeat_timer_.cancel();
  ack_timer_.cancel();
  rate_timer_.cancel();
  parser_ = proto::FrameParser();
  stats_.last_error = why;
  if (state_ != SessionState::kClosed) set_state(SessionState::kConnecting);
  if (link_down_) link_down_(why);
}

}  // namespace tideway::wan
