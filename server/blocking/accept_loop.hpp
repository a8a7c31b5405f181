#pragma once

#include <functional>
#include <vector>

#include "lifecycle/backend.hpp"
#include "polyecho/acceptor.hpp"

namespace polyecho {

// The accept loop of the blocking models (iterative, thread, fork): poll() on the listener,
// the stop fd and an optional extra fd (SIGCHLD for process models), then accept through the
// shared Acceptor. Polling first, on a non-blocking listener, avoids the classic hang where a
// peer resets between readiness and accept(), and lets a stop request end the wait.
// Runs on the calling thread until stop_signal::requested(); then, when it owns the listener,
// closes it so the kernel refuses new connections while the model drains.
class BlockingAcceptLoop {
 public:
  // Owns context.listener from here on and closes it when the loop ends.
  explicit BlockingAcceptLoop(ServerContext& context);
  // Pooled models: several threads (or processes) each run a loop on one shared listener,
  // which none of them closes; the pool's owner does once every loop has ended.
  BlockingAcceptLoop(int shared_listener, Stats& stats);

  // Connections come out non-blocking (SOCK_NONBLOCK): for a loop that hands them to event
  // loops, which saves each of those loops a fcntl pair per connection.
  void accept_nonblocking() noexcept { nonblocking_ = true; }
  // `on_ready` runs on the loop thread whenever `fd` is readable. May be called more than once.
  void watch_extra(int fd, std::function<void()> on_ready);
  void run(const std::function<void(unique_fd)>& on_connection);

 private:
  struct Extra {
    int fd;
    std::function<void()> on_ready;
  };

  unique_fd* owned_listener_;  // null for a shared listener
  int listen_fd_;
  Acceptor acceptor_;
  std::vector<Extra> extras_;
  bool nonblocking_ = false;
};

}  // namespace polyecho
