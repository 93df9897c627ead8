// One QEMU process, launched from a VmSpec and owned by this object: its
// QMP client, its exit (watched through a pidfd on the io_context, so no
// SIGCHLD handler and no pid-reuse race), its log (stdout and stderr go to
// RUN_DIR/qemu.log) and its end (stop: QMP quit, then SIGTERM, then
// SIGKILL). Destroying the QemuVm kills a QEMU that still runs and reaps
// it: a VM never outlives the object that manages it unnoticed.
//
// Threading as QmpClient: the io_context's thread only.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/qmp_client.h"
#include "agent/vm_spec.h"
#include "proto/result.h"

namespace tideway::agent {

struct ExitStatus {
  int code = -1;   // exit code when it exited normally
  int signal = 0;  // non-zero: killed by this signal
  bool known = true;  // false: somebody else reaped it
  // "exit 0", "exit 1", "killed by signal 9 (Killed)", "exit status unknown"
  std::string describe() const;
};

struct QemuVmOptions {
  std::string qemu_binary = "qemu-system-x86_64";
  LaunchMode mode = LaunchMode::kRun;
  bool paused_after_incoming = false;  // kIncoming: stay paused after the switchover (-S)
  // Created if missing (mode 0700); holds qmp.sock and qemu.log. The socket
  // path must fit a unix socket (under 108 bytes).
  std::string run_dir;
  // Prefix to the QEMU command line that replaces itself with QEMU (so the
  // pid stays QEMU's), e.g. {"ip", "netns", "exec", "site-a"}.
  std::vector<std::string> wrapper;
  // QEMU gets SIGKILL when the thread that launched it exits (tests: a
  // killed test leaves no VM behind). Off for the agent: a VM must survive
  // an agent restart... once the agent can re-adopt it.
  bool die_with_parent = false;
};

class QemuVm : public std::enable_shared_from_this<QemuVm> {
 public:
  using ExitHandler = std::function<void(const ExitStatus&)>;

  // Starts QEMU. Errors: bad run dir, socket path too long, a live QEMU on
  // the socket already, the binary (or wrapper) not found or not runnable.
  // QEMU's own errors (bad option, missing file) come from connect(), with
  // the end of its log.
  static proto::Result<std::shared_ptr<QemuVm>> launch(boost::asio::io_context& io, const VmSpec& spec,
                                                       QemuVmOptions options);
  ~QemuVm();
  QemuVm(const QemuVm&) = delete;
  QemuVm& operator=(const QemuVm&) = delete;

  // Connects QMP (QEMU creates its socket shortly after it starts). Fails
  // at once with QEMU's exit status and log if QEMU exits first.
  void connect(std::function<void(proto::Result<void>)> done, std::chrono::milliseconds timeout);
  QmpClient& qmp() { return *qmp_; }
  const std::shared_ptr<QmpClient>& qmp_ptr() const { return qmp_; }

  pid_t pid() const { return pid_; }
  bool exited() const { return exit_.has_value(); }
  const std::optional<ExitStatus>& exit_status() const { return exit_; }
  // Runs once when QEMU has exited and been reaped (posted at once if it
  // already has). Handlers are added, not replaced.
  void on_exit(ExitHandler h);

  // Ends QEMU (not QMP "stop", which pauses): QMP quit when connected, else
  // SIGTERM; then SIGTERM and SIGKILL each after another `grace`. `done`
  // runs when it has exited and been reaped.
  void stop(std::chrono::milliseconds grace, ExitHandler done);
  // SIGKILL now; the exit is reported as usual.
  void kill();

  const std::vector<std::string>& argv() const { return argv_; }
  const std::string& run_dir() const { return run_dir_; }
  std::string qmp_socket() const { return run_dir_ + "/qmp.sock"; }
  std::string log_path() const { return run_dir_ + "/qemu.log"; }
  // The last `max_bytes` of QEMU's log (for error messages).
  std::string log_tail(size_t max_bytes = 2048) const;

 private:
  QemuVm(boost::asio::io_context& io, std::string run_dir, std::vector<std::string> argv, pid_t pid, int pidfd);
  void watch_exit();
  void escalate(std::chrono::milliseconds grace);
  void reaped(ExitStatus st);
  void send_signal(int sig);

  boost::asio::io_context& io_;
  std::string run_dir_;
  std::vector<std::string> argv_;
  pid_t pid_;
  boost::asio::posix::stream_descriptor pidfd_;  // readable when QEMU exits
  std::shared_ptr<QmpClient> qmp_;
  std::optional<ExitStatus> exit_;
  std::vector<ExitHandler> exit_handlers_;
  boost::asio::steady_timer stop_timer_;
  int stop_step_ = 0;  // 0: not stopping, 1: quit sent, 2: SIGTERM sent, 3: SIGKILL sent
};

}  // namespace tideway::agent
