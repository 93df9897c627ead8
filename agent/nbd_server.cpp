#include "agent/nbd_server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/nbd_connection.h"

namespace tideway::agent {

namespace asio = boost::asio;
namespace nbd = proto::nbd;
using proto::Errc;

// NbdShared ------------------------------------------------------------------

NbdShared::LiveToken::LiveToken(std::shared_ptr<NbdShared> s) : shared_(std::move(s)) {
  std::lock_guard lock(shared_->mu_);
  ++shared_->live_;
}

NbdShared::LiveToken::~LiveToken() {
  std::lock_guard lock(shared_->mu_);
  assert(shared_->live_ > 0);
  if (--shared_->live_ == 0) shared_->idle_.notify_all();
}

bool NbdShared::add_connection(uint64_t id, const std::shared_ptr<NbdConnection>& c, std::string& why) {
  std::lock_guard lock(mu_);
  // Checked under the lock that begin_stop() takes, so a connection is
  // either refused here or in the list stop() shuts down.
  if (stopping_) {
    why = "server stopping";
    return false;
  }
  if (conns_.size() >= options.max_connections) {
    why = "already " + std::to_string(conns_.size()) + " connections (max_connections)";
    return false;
  }
  conns_.emplace(id, c);
  return true;
}

void NbdShared::remove_connection(uint64_t id) {
  std::lock_guard lock(mu_);
  conns_.erase(id);
}

std::vector<std::shared_ptr<NbdConnection>> NbdShared::begin_stop() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  std::vector<std::shared_ptr<NbdConnection>> out;
  for (auto& [id, w] : conns_)
    if (auto c = w.lock()) out.push_back(std::move(c));
  return out;
}

size_t NbdShared::connection_count() const {
  std::lock_guard lock(mu_);
  return conns_.size();
}

void NbdShared::wait_idle() {
  std::unique_lock lock(mu_);
  while (!idle_.wait_for(lock, std::chrono::seconds(5), [&] { return live_ == 0; }))
    spdlog::warn("nbd: stop() still waiting for {} connections/listeners (requests in flight at the target?)",
                 live_);
}

// Listener ---------------------------------------------------------------------

class NbdListener {
 public:
  virtual ~NbdListener() = default;
  virtual void start() = 0;
  virtual void close() = 0;  // from any thread
};

namespace {

// Accept loop for one socket type; every connection gets its own strand.
template <typename Protocol>
class Listener final : public NbdListener, public std::enable_shared_from_this<Listener<Protocol>> {
 public:
  using Acceptor = asio::basic_socket_acceptor<Protocol, NbdConnection::Strand>;

  Listener(asio::io_context& io, std::shared_ptr<NbdShared> shared, Acceptor acceptor, std::string what)
      : token_(shared), io_(io), shared_(std::move(shared)), acceptor_(std::move(acceptor)), what_(std::move(what)) {}

  void start() override { accept(); }
  void close() override {
    asio::post(acceptor_.get_executor(), [self = this->shared_from_this()] {
      boost::system::error_code ignored;
      self->acceptor_.close(ignored);
    });
  }

 private:
  void accept() {
    acceptor_.async_accept(asio::make_strand(io_), [self = this->shared_from_this()](
                                                       const boost::system::error_code& ec, auto socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (ec) {
        // EMFILE and friends: log, and keep accepting (after the next one).
        spdlog::warn("nbd: accept on {} failed: {}", self->what_, ec.message());
      } else {
        self->adopt(std::move(socket));
      }
      self->accept();
    });
  }

  template <typename Socket>
  void adopt(Socket socket) {
    std::string peer = what_;
    boost::system::error_code ec;
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      auto ep = socket.remote_endpoint(ec);
      if (!ec) peer = ep.address().to_string() + ":" + std::to_string(ep.port());
      socket.set_option(asio::ip::tcp::no_delay(true), ec);  // replies are small and latency-bound
    }
    const uint64_t id = shared_->next_id();
    auto conn = std::make_shared<NbdConnection>(NbdConnection::Socket(std::move(socket)), shared_, id, peer);
    std::string why;
    if (!shared_->add_connection(id, conn, why)) {
      spdlog::warn("nbd: refusing connection from {}: {}", peer, why);
      conn->shutdown();  // closes it (still in the handshake)
      return;
    }
    conn->start();
  }

  NbdShared::LiveToken token_;
  asio::io_context& io_;
  std::shared_ptr<NbdShared> shared_;
  Acceptor acceptor_;
  std::string what_;
};

std::string check_options(const NbdServerOptions& o) {
  const auto pow2 = [](uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (o.unix_path.empty() && !o.tcp_address) return "neither unix_path nor tcp_address is set";
  if (o.unix_path.size() >= sizeof(sockaddr_un{}.sun_path)) return "unix_path is too long for a socket address";
  if (o.export_name.size() > nbd::kMaxStringLen || o.export_name.find('\0') != std::string::npos)
    return "export_name is longer than 4096 bytes or contains NUL";
  if (o.max_inflight_requests == 0 || o.max_inflight_bytes == 0 || o.max_connections == 0)
    return "in-flight and connection limits must be at least 1";
  if (!pow2(o.min_block) || o.min_block > 65536) return "min_block must be a power of 2 up to 64 KiB";
  if (!pow2(o.preferred_block) || o.preferred_block < std::max<uint32_t>(o.min_block, 512))
    return "preferred_block must be a power of 2, at least 512 and at least min_block";
  if (o.max_request < o.preferred_block || o.max_request % o.min_block != 0 ||
      o.max_request > nbd::kMaxRequestLength)
    return "max_request must be a multiple of min_block between preferred_block and 32 MiB";
  return {};
}

}  // namespace

// NbdServer ----------------------------------------------------------------------

NbdServer::NbdServer(asio::io_context& io, BlockTarget& target, NbdServerOptions options)
    : io_(io), shared_(std::make_shared<NbdShared>(target, std::move(options))) {}

NbdServer::~NbdServer() { stop(); }

uint16_t NbdServer::transmission_flags() {
  // CAN_MULTI_CONN is sound because BlockTarget::flush covers every write
  // completed before it, whichever connection issued it, and all
  // connections share one target (no per-connection cache).
  return nbd::kTxHasFlags | nbd::kTxSendFlush | nbd::kTxSendFua | nbd::kTxSendTrim | nbd::kTxSendWriteZeroes |
         nbd::kTxCanMultiConn;
}

size_t NbdServer::connections() const { return shared_->connection_count(); }

proto::Result<bool> NbdServer::start() {
  assert(!started_);
  const auto& o = shared_->options;
  if (auto why = check_options(o); !why.empty()) return {Errc::kInvalid, "nbd server: " + why};
  std::vector<std::shared_ptr<NbdListener>> made;
  boost::system::error_code ec;

  if (!o.unix_path.empty()) {
    // Replace a stale socket from a previous run, but never another file.
    struct stat st {};
    if (::lstat(o.unix_path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return {Errc::kInvalid, o.unix_path + " exists and is not a socket"};
      ::unlink(o.unix_path.c_str());
    }
    using Local = asio::local::stream_protocol;
    Listener<Local>::Acceptor acc(asio::make_strand(io_));
    acc.open(Local(), ec);
    if (!ec) acc.bind(Local::endpoint(o.unix_path), ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return {Errc::kSystem, "nbd server: listen on " + o.unix_path + ": " + ec.message()};
    made.push_back(std::make_shared<Listener<Local>>(io_, shared_, std::move(acc), "unix:" + o.unix_path));
  }
  if (o.tcp_address) {
    using Tcp = asio::ip::tcp;
    const auto addr = asio::ip::make_address(*o.tcp_address, ec);
    if (ec) return {Errc::kInvalid, "nbd server: bad tcp_address " + *o.tcp_address};
    Listener<Tcp>::Acceptor acc(asio::make_strand(io_));
    const Tcp::endpoint ep(addr, o.tcp_port);
    acc.open(ep.protocol(), ec);
    if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (!o.unix_path.empty()) ::unlink(o.unix_path.c_str());
      return {Errc::kSystem, "nbd server: listen on " + *o.tcp_address + ":" + std::to_string(o.tcp_port) + ": " +
                                 ec.message()};
    }
    bound_tcp_port_ = acc.local_endpoint().port();
    made.push_back(std::make_shared<Listener<Tcp>>(io_, shared_, std::move(acc),
                                                   "tcp:" + *o.tcp_address + ":" + std::to_string(bound_tcp_port_)));
  }
  for (auto& l : made) l->start();
  listeners_ = std::move(made);
  started_ = true;
  spdlog::info("nbd: serving export '{}' ({} bytes) on{}{}", o.export_name, shared_->target.size(),
               o.unix_path.empty() ? "" : " unix:" + o.unix_path,
               o.tcp_address ? " tcp:" + *o.tcp_address + ":" + std::to_string(bound_tcp_port_) : "");
  return true;
}

void NbdServer::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  // Waiting on an io_context thread would deadlock (the handlers we wait
  // for run there), and not waiting would free the target under them.
  if (io_.get_executor().running_in_this_thread()) {
    spdlog::critical("nbd: NbdServer::stop() called on an io_context thread");
    std::abort();
  }
  for (auto& l : listeners_) l->close();
  listeners_.clear();
  {
    // Scoped: holding these would keep the connections alive forever.
    const auto conns = shared_->begin_stop();
    spdlog::info("nbd: stopping; {} connections to drain", conns.size());
    for (const auto& c : conns) c->shutdown();
  }
  shared_->wait_idle();
  if (!shared_->options.unix_path.empty()) ::unlink(shared_->options.unix_path.c_str());
  spdlog::info("nbd: stopped");
}

}  // namespace tideway::agent
