// NbdConnection, handshake half: greeting, client flags, option haggling.
// Strictly one message at a time, so the handshake needs no queue: a reply
// is sent completely before the next option is read.
#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "agent/nbd_connection.h"

namespace tideway::agent {

namespace asio = boost::asio;
namespace nbd = proto::nbd;

namespace {
// A client that keeps haggling without choosing an export is stuck or
// hostile; real clients send a handful of options.
constexpr unsigned kMaxOptions = 128;
constexpr uint16_t kHandshakeFlags = nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes;
}  // namespace

NbdConnection::NbdConnection(Socket socket, std::shared_ptr<NbdShared> shared, uint64_t id, std::string peer)
    : token_(shared),
      shared_(std::move(shared)),
      target_(shared_->target),
      opt_(shared_->options),
      socket_(std::move(socket)),
      drain_timer_(socket_.get_executor()),
      id_(id),
      peer_(std::move(peer)) {}

NbdConnection::~NbdConnection() {
  assert(inflight_requests_ == 0);  // every request holds the connection
  shared_->remove_connection(id_);
  spdlog::debug("nbd[{}]: connection released", id_);
}

void NbdConnection::start() {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->send_greeting(); });
}

void NbdConnection::shutdown() {
  asio::dispatch(socket_.get_executor(), [self = shared_from_this()] {
    if (self->transmitting_)
      self->begin_drain("server stopping", false);
    else
      self->close("server stopping during the handshake");
  });
}

template <typename Next>
void NbdConnection::flush_handshake(Next next) {
  asio::async_write(socket_, asio::buffer(handshake_out_),
                    [self = shared_from_this(), next](const boost::system::error_code& ec, size_t) {
                      if (self->closed_) return;
                      if (ec) return self->close("handshake write failed: " + ec.message());
                      self->handshake_out_.clear();
                      next();
                    });
}

void NbdConnection::send_greeting() {
  spdlog::info("nbd[{}]: client connected from {}", id_, peer_);
  const auto g = nbd::encode_greeting(kHandshakeFlags);
  handshake_out_.assign(g.begin(), g.end());
  flush_handshake([this] { read_client_flags(); });
}

void NbdConnection::read_client_flags() {
  asio::async_read(socket_, asio::buffer(opt_header_.data(), nbd::kClientFlagsSize),
                   [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                     if (self->closed_) return;
                     if (ec) return self->close("client left before sending its flags: " + ec.message());
                     auto f = nbd::decode_client_flags({self->opt_header_.data(), nbd::kClientFlagsSize},
                                                       kHandshakeFlags);
                     if (!f) return self->close("malformed handshake: " + f.error().detail, true);
                     self->client_flags_ = *f;
                     self->read_option();
                   });
}

void NbdConnection::read_option() {
  if (shared_->stopping()) return close("server stopping during the handshake");
  if (++options_seen_ > kMaxOptions) return close("more than 128 options without choosing an export", true);
  asio::async_read(socket_, asio::buffer(opt_header_), [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
    if (self->closed_) return;
    if (ec) return self->close("client left during option haggling: " + ec.message());
    auto h = nbd::decode_option_header(self->opt_header_);
    if (!h) return self->close("malformed option: " + h.error().detail, true);
    self->opt_data_.resize(h->length);
    asio::async_read(self->socket_, asio::buffer(self->opt_data_),
                     [self, hdr = *h](const boost::system::error_code& ec2, size_t) {
                       if (self->closed_) return;
                       if (ec2) return self->close("client left inside an option: " + ec2.message());
                       self->on_option(hdr);
                     });
  });
}

void NbdConnection::on_option(const nbd::OptionHeader& h) {
  spdlog::debug("nbd[{}]: option {} ({} bytes)", id_, nbd::opt_name(h.option), h.length);
  switch (static_cast<nbd::Opt>(h.option)) {
    case nbd::Opt::kExportName:
      return handle_export_name();
    case nbd::Opt::kInfo:
    case nbd::Opt::kGo:
      return handle_go(h.option);
    case nbd::Opt::kAbort:
      // The spec asks for an ACK; the client may already be gone.
      option_reply(h.option, nbd::Rep::kAck);
      return flush_handshake([this] { close("client aborted the handshake"); });
    case nbd::Opt::kList:
      if (!opt_data_.empty()) {
        option_error(h.option, nbd::Rep::kErrInvalid, "LIST takes no data");
      } else {
        option_reply(h.option, nbd::Rep::kServer, nbd::encode_rep_server(opt_.export_name));
        option_reply(h.option, nbd::Rep::kAck);
      }
      return flush_handshake([this] { read_option(); });
    default:
      // STRUCTURED_REPLY, STARTTLS, meta contexts and anything newer:
      // clients fall back to simple replies / no TLS / no block status.
      option_error(h.option, nbd::Rep::kErrUnsup,
                   std::string("option ") + nbd::opt_name(h.option) + " (" + std::to_string(h.option) +
                       ") is not supported by this server");
      return flush_handshake([this] { read_option(); });
  }
}

bool NbdConnection::export_matches(const std::string& name) const {
  return name.empty() || name == opt_.export_name;
}

void NbdConnection::handle_export_name() {
  auto name = nbd::decode_export_name(opt_data_);
  if (!name) return close("EXPORT_NAME: " + name.error().detail, true);
  // This option cannot carry an error: the protocol says close.
  if (!export_matches(*name))
    return close("EXPORT_NAME asked for unknown export '" + *name + "' (this server exports '" +
                     opt_.export_name + "')",
                 true);
  handshake_out_ = nbd::encode_export_name_reply(target_.size(), NbdServer::transmission_flags(),
                                                 (client_flags_ & nbd::kClientNoZeroes) != 0);
  flush_handshake([this] { enter_transmission(); });
}

void NbdConnection::handle_go(uint32_t option) {
  const bool go = option == static_cast<uint32_t>(nbd::Opt::kGo);
  auto req = nbd::decode_go(opt_data_);
  if (!req) {
    option_error(option, nbd::Rep::kErrInvalid, req.error().detail);
    return flush_handshake([this] { read_option(); });
  }
  if (!export_matches(req->name)) {
    spdlog::warn("nbd[{}]: client {} asked for unknown export '{}'", id_, peer_, req->name);
    option_error(option, nbd::Rep::kErrUnknown,
                 "no export named '" + req->name + "' (this server exports '" + opt_.export_name + "')");
    return flush_handshake([this] { read_option(); });
  }
  option_reply(option, nbd::Rep::kInfo, nbd::encode_info_export(target_.size(), NbdServer::transmission_flags()));
  // Sent even when not asked for (allowed): it tells clients our largest
  // request, which is below the protocol's default of "unlimited".
  option_reply(option, nbd::Rep::kInfo,
               nbd::encode_info_block_size(opt_.min_block, opt_.preferred_block, opt_.max_request));
  option_reply(option, nbd::Rep::kAck);
  if (go)
    flush_handshake([this] { enter_transmission(); });
  else
    flush_handshake([this] { read_option(); });
}

void NbdConnection::option_reply(uint32_t option, nbd::Rep type, std::span<const uint8_t> data) {
  const auto r = nbd::encode_option_reply(option, type, data);
  handshake_out_.insert(handshake_out_.end(), r.begin(), r.end());
}

void NbdConnection::option_error(uint32_t option, nbd::Rep type, const std::string& message) {
  const std::string_view m(message.data(), std::min(message.size(), nbd::kMaxStringLen));
  option_reply(option, type, {reinterpret_cast<const uint8_t*>(m.data()), m.size()});
}

}  // namespace tideway::agent
