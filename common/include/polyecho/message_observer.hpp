#pragma once

#include <chrono>
#include <cstddef>

namespace polyecho {

// What a Session reports about the traffic it sees, for live metrics (docs/METRICS.md). The
// Session stays sans IO: the observer is also its clock, so a test can drive it with a fake
// one, and the server's observer (StatsObserver) adds the figures to the calling thread's
// slot in the shared Stats.
//
// Called on the connection's thread, once per read batch, per send and per message whose echo
// is released after its work; never per byte. Implementations must not allocate or block.
class MessageObserver {
 public:
  using Clock = std::chrono::steady_clock;

  MessageObserver() = default;
  MessageObserver(const MessageObserver&) = delete;
  MessageObserver& operator=(const MessageObserver&) = delete;

  [[nodiscard]] virtual Clock::time_point now() const noexcept = 0;
  // `bytes` arrived and completed `messages` messages (raw mode: one per read).
  virtual void received(std::size_t bytes, std::size_t messages) noexcept = 0;
  // `messages` replies were queued for sending, each `latency` after its message arrived.
  virtual void replied(std::size_t messages, Clock::duration latency) noexcept = 0;
  virtual void sent(std::size_t bytes) noexcept = 0;

 protected:
  ~MessageObserver() = default;
};

}  // namespace polyecho
