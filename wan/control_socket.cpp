#include "wan/control_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

namespace tideway::wan {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using proto::Errc;
using proto::Error;

namespace {

// True if something accepts connections on `path`.
bool socket_alive(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  bool alive = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return alive;
}

// One request/reply exchange; owns its socket.
struct ControlConn : std::enable_shared_from_this<ControlConn> {
  explicit ControlConn(local::socket s) : sock(std::move(s)), buf(kMaxControlRequest) {}
  local::socket sock;
  asio::streambuf buf;
  std::string out;

  void respond(const nlohmann::json& j) {
    out = j.dump() + "\n";
    auto self = shared_from_this();
    asio::async_write(sock, asio::buffer(out), [self](boost::system::error_code, size_t) {
      boost::system::error_code ec;
      self->sock.close(ec);
    });
  }
};

}  // namespace

ControlServer::ControlServer(asio::io_context& io, std::string path, Handler handler)
    : acceptor_(io), path_(std::move(path)), handler_(std::move(handler)) {}

proto::Result<std::shared_ptr<ControlServer>> ControlServer::create(asio::io_context& io, const std::string& path,
                                                                    Handler handler) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path))
    return Error{Errc::kInvalid, "control socket path \"" + path + "\" is empty or too long"};
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error{Errc::kInvalid, path + " exists and is not a socket"};
    if (socket_alive(path)) return Error{Errc::kInvalid, path + ": another daemon is already listening there"};
    ::unlink(path.c_str());
  }
  const auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    // Create the parent (e.g. /run/tideway) if missing; one level is enough.
    ::mkdir(path.substr(0, slash).c_str(), 0755);
  }
  auto s = std::shared_ptr<ControlServer>(new ControlServer(io, path, std::move(handler)));
  boost::system::error_code ec;
  const mode_t old = ::umask(0077);  // the socket is created 0600: root only
  s->acceptor_.open(local(), ec);
  if (!ec) s->acceptor_.bind(local::endpoint(path), ec);
  ::umask(old);
  if (!ec) s->acceptor_.listen(16, ec);
  if (ec) return Error{Errc::kSystem, "control socket " + path + ": " + ec.message()};
  s->accept();
  return s;
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  ::unlink(path_.c_str());
}

void ControlServer::accept() {
  acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, local::socket sock) {
    if (ec || self->stopped_) return;
    auto conn = std::make_shared<ControlConn>(std::move(sock));
    asio::async_read_until(conn->sock, conn->buf, '\n', [self, conn](boost::system::error_code rec, size_t n) {
      if (rec) {
        if (rec != asio::error::eof)
          conn->respond({{"ok", false}, {"error", "request too long or unreadable: " + rec.message()}});
        return;
      }
      std::string line(asio::buffers_begin(conn->buf.data()), asio::buffers_begin(conn->buf.data()) + n);
      auto req = nlohmann::json::parse(line, nullptr, false);
      if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
        conn->respond({{"ok", false}, {"error", "bad request: expected a JSON object with a \"cmd\" string"}});
        return;
      }
      try {
        self->handler_(req, [conn](nlohmann::json reply) { conn->respond(reply); });
      } catch (const std::exception& e) {
        // Wrong field types in a request land here (nlohmann throws).
        conn->respond({{"ok", false}, {"error", std::string("bad request: ") + e.what()}});
      }
    });
    self->accept();
  });
}

proto::Result<nlohmann::json> control_call(const std::string& path, const nlohmann::json& request,
                                           std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{Errc::kSystem, std::string("socket: ") + std::strerror(errno)};
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    ::close(fd);
    return Error{Errc::kInvalid, "socket path too long: " + path};
  }
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    Error e{Errc::kSystem, "cannot reach the daemon at " + path + ": " + std::strerror(errno) +
                               " (is it running? is this the right --socket?)"};
    ::close(fd);
    return e;
  }
  const std::string out = request.dump() + "\n";
  if (::write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
    ::close(fd);
    return Error{Errc::kSystem, std::string("write to the daemon: ") + std::strerror(errno)};
  }
  std::string in;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char chunk[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(fd);
      return Error{Errc::kSystem, "the daemon did not answer within " + std::to_string(timeout.count()) + " ms"};
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(chunk, static_cast<size_t>(n));
    if (in.size() > (64u << 20)) break;
  }
  ::close(fd);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return Error{Errc::kMalformed, "the daemon's reply is not JSON"};
  return j;
}

}  // namespace tideway::wan
