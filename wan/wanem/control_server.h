// The emulator's main thread: serves the unix control socket (line
// protocol, see control_protocol.h) and signals (SIGUSR1 toggles the
// partition; SIGTERM/SIGINT/SIGHUP stop) until asked to stop.
// Also the client side, used by `tideway-wanem ctl`.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace tideway::wanem {

// Blocks the signals the server handles, in the calling thread and every
// thread it starts afterwards. Call first thing in main().
void block_control_signals();

class ControlServer {
 public:
  using Handler = std::function<std::string(std::string_view line)>;

  // `socket_path` empty = signals only. A stale socket file (no listener)
  // is replaced; a live one is an error (another emulator owns it).
  ControlServer(const std::string& socket_path, Handler handler, std::function<void()> on_usr1);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Serves until a stop signal; returns its number.
  int run();

 private:
  struct Client { std::string in; };
  void accept_clients();
  bool serve_client(int fd, Client& c);  // false = close it

  std::string path_;
  Handler handler_;
  std::function<void()> on_usr1_;
  int listen_fd_ = -1, signal_fd_ = -1, epfd_ = -1;
  std::map<int, Client> clients_;
};

// Sends one command line and returns the reply line (without newline).
// Throws std::runtime_error if the socket cannot be reached.
std::string control_request(const std::string& socket_path, std::string_view line);

}  // namespace tideway::wanem
