#pragma once

#include <functional>

#include "core/backend.hpp"
#include "polyecho/acceptor.hpp"

namespace polyecho {

// The accept loop of the blocking models (iterative, thread, fork): poll() on the listener,
// the stop fd and an optional extra fd (SIGCHLD for process models), then accept through the
// shared Acceptor. Polling first, on a non-blocking listener, avoids the classic hang where a
// peer resets between readiness and accept(), and lets a stop request end the wait.
// Runs on the calling thread until stop_signal::requested(); then closes the listener so the
// kernel refuses new connections while the model drains.
class BlockingAcceptLoop {
 public:
  explicit BlockingAcceptLoop(ServerContext& context);

  // `on_ready` runs on the loop thread whenever `fd` is readable.
  void watch_extra(int fd, std::function<void()> on_ready);
  void run(const std::function<void(unique_fd)>& on_connection);

 private:
  ServerContext& context_;
  Acceptor acceptor_;
  int extra_fd_ = -1;
  std::function<void()> on_extra_;
};

// Closes a connection the model will not serve and counts it.
void reject_connection(unique_fd connection, Stats& stats);

}  // namespace polyecho
