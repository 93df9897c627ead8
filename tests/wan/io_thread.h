// Runs an io_context on its own thread for a test; call() runs a function on
// that thread and waits for its result (the channel is single-threaded).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

namespace tideway::testing {

class IoThread {
 public:
  IoThread() : work_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~IoThread() { stop(); }
  boost::asio::io_context& io() { return io_; }

  template <typename F>
  auto call(F&& f) {
    using R = decltype(f());
    std::packaged_task<R()> task(std::forward<F>(f));
    auto fut = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return fut.get();
  }
  void stop() {
    if (!thread_.joinable()) return;
    work_.reset();
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace tideway::testing
