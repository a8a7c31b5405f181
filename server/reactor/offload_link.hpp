#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "lifecycle/offload_pool.hpp"

namespace polyecho {

// One reactor's end of the --offload pool: its inbox (the completions and the pipe that wakes
// the loop), the serials that name its connections in jobs, and the connections the full
// queue refused, in the order they were refused, to retry once room is posted.
// Owned by the reactor; loop thread only (the inbox inside is the thread-safe part). The pool
// must be joined before this is destroyed: its threads post to the inbox.
class OffloadLink {
 public:
  explicit OffloadLink(OffloadPool& pool) : pool_(pool) {}

  [[nodiscard]] int wake_fd() const noexcept { return inbox_.wake_fd(); }
  // A serial for a new connection: never 0, never reused by this loop.
  [[nodiscard]] std::uint64_t next_serial() noexcept { return ++last_serial_; }

  // Queues the work of `connection`'s first pending message. False when the queue is full:
  // the connection is remembered, and take_refused() hands it back once there is room.
  [[nodiscard]] bool submit(ConnectionRef connection, std::span<const char> message) {
    if (pool_.try_submit(inbox_, connection, message)) return true;
    refused_.push_back(connection);
    return false;
  }

  // When wake_fd() is readable: the completions posted since (into `done`), and whether room
  // was posted since.
  [[nodiscard]] bool take(std::vector<ConnectionRef>& done) { return inbox_.take(done); }
  // The refused connections, oldest first; the list starts over empty. Those still refused
  // on retry go back through submit(), and those not retried through refuse_again().
  void take_refused(std::vector<ConnectionRef>& refused) {
    refused.clear();
    refused.swap(refused_);
  }
  void refuse_again(std::span<const ConnectionRef> connections) {
    refused_.insert(refused_.end(), connections.begin(), connections.end());
  }

 private:
  OffloadPool& pool_;
  OffloadInbox inbox_;
  std::uint64_t last_serial_ = 0;
  // Bounded by the loop's connections: each is here at most once while it waits for room
  // (ReactorConnection submits only when it is not already waiting), plus any that closed
  // while waiting, dropped at the next retry.
  std::vector<ConnectionRef> refused_;
};

}  // namespace polyecho
