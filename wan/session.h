// A session is one logical channel between two sites. It outlives the TCP
// connections under it: when a link dies, frames the peer did not
// acknowledge are re-sent on the next link and the receiver drops what it
// already has, so each stream is delivered in order, gap-free, exactly once.
//
// Threading: a session lives on one io_context thread (an implicit strand);
// every public call must be made on that thread (post to it from others).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proto/frame.h"
#include "proto/messages.h"
#include "wan/inbox.h"
#include "wan/link.h"
#include "wan/options.h"
#include "wan/outbox.h"

namespace tideway::wan {

enum class SessionState {
  kConnecting,    // no link yet, or between links (frames queue meanwhile)
  kConnected,     // a link is up
  kReset,         // the peer lost the session: unacked frames were dropped
  kClosed,        // closed for good
};
const char* state_name(SessionState s);

struct SessionStats {
  SessionState state = SessionState::kConnecting;
  uint64_t links = 0;            // links attached so far (1 + reconnects)
  uint64_t frames_sent = 0, bytes_sent = 0, frames_resent = 0;
  uint64_t frames_received = 0, bytes_received = 0, duplicates_dropped = 0;
  uint64_t messages_delivered = 0;
  Nanos rtt{0};                  // from heartbeat echoes
  std::string last_error;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  using MessageHandler = std::function<void(proto::MessageType, std::span<const uint8_t>)>;

  Session(asio::io_context& io, const ChannelOptions& opts, proto::SessionId id);
  ~Session();

  // --- application side --------------------------------------------------
  void on_message(uint32_t stream, MessageHandler h);
  // Called once a send() that returned false may succeed (stream drained).
  void on_writable(uint32_t stream, std::function<void()> h);
  void on_state(std::function<void(SessionState)> h) { state_handler_ = std::move(h); }

  // Queues a message. False (nothing queued) when the stream's retention
  // is full; on_writable fires when it has room again.
  bool send(uint32_t stream, const proto::Message& m);
  bool send(uint32_t stream, proto::MessageType type, std::span<const uint8_t> payload);

  SessionStats stats() const;
  SessionState state() const { return state_; }
  const proto::SessionId& id() const { return id_; }
  const std::string& peer_site() const { return peer_site_; }
  const std::string& peer_name() const { return peer_name_; }
  // Features both ends agreed on for the current (or last) link; 0 before
  // the first. The application checks optional ones (kFeatCodec) here.
  uint64_t features() const { return features_; }
  size_t retained_bytes(uint32_t stream) const { return outbox_.retained_bytes(stream); }
  // Closes the session and its link for good.
  void close();

  // --- channel side -------------------------------------------------------
  // Positions we already have, for HELLO/WELCOME.
  std::vector<proto::StreamPosition> received_positions() const { return inbox_.positions(); }
  // Takes over a handshaken link. `parser` holds bytes read past the
  // handshake message; `peer_has` is what the peer already received.
  void attach(std::shared_ptr<Link> link, proto::FrameParser parser,
              const std::vector<proto::StreamPosition>& peer_has, const std::string& peer_site);
  // The peer started over: drop everything unacked and restart sequences.
  void reset_for_new_peer_session();
  void set_id(const proto::SessionId& id) { id_ = id; }
  void set_features(uint64_t f) { features_ = f; }
  // Told when the current link fails (the owner reconnects or lingers).
  void on_link_down(std::function<void(const std::string&)> h) { link_down_ = std::move(h); }
  bool has_link() const { return link_ != nullptr; }

 private:
  void set_state(SessionState s);
  // One buffer per link, reused by every read on it.
  void read_loop(std::shared_ptr<std::vector<uint8_t>> buf);
  void process_frames();
  void handle_control(const proto::Frame& f);
  void kick();  // start a write if one is not in progress
  void adapt_notsent_lowat();  // at most every 50 ms: Link::adapt_notsent_lowat
  void arm_heartbeat();
  void arm_ack();
  void send_ack_now();
  void fail_link(const std::string& why, bool expected = false);
  void notify_writable();

  asio::io_context& io_;
  ChannelOptions opts_;
  Clock& clock_;
  proto::SessionId id_;
  Outbox outbox_;
  Inbox inbox_;
  std::map<uint32_t, MessageHandler> handlers_;
  std::map<uint32_t, std::function<void()>> writable_handlers_;
  std::map<uint32_t, bool> waiting_writable_;
  std::function<void(SessionState)> state_handler_;
  std::function<void(const std::string&)> link_down_;

  std::shared_ptr<Link> link_;
  uint64_t link_gen_ = 0;  // callbacks of an older link are ignored
  proto::FrameParser parser_;
  std::vector<uint8_t> rbuf_;
  bool writing_ = false;
  // TLS writes one buffer per SSL_write (one record, one send syscall), so
  // a batch of small frames is gathered here first. Reused across writes.
  std::vector<uint8_t> tls_batch_;
  asio::steady_timer rate_timer_;
  bool rate_timer_armed_ = false;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer ack_timer_;
  bool ack_armed_ = false;
  Nanos last_rx_{0};
  Nanos lowat_checked_{0};  // when the link's TCP_NOTSENT_LOWAT was last re-sized
  uint64_t peer_hb_sent_ = 0;

  SessionState state_ = SessionState::kConnecting;
  std::string peer_site_, peer_name_;
  uint64_t features_ = 0;
  SessionStats stats_;
};

}  // namespace tideway::wan
