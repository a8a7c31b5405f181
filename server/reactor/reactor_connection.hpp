#pragma once

#include <cstddef>
#include <cstdint>

#include "lifecycle/server_config.hpp"
#include "polyecho/session.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"
#include "reactor/timer_queue.hpp"

namespace polyecho {

// One non-blocking connection driven by readiness: read -> Session -> write, with
// backpressure. Partial writes, EAGAIN, EINTR, peer reset and half-close are handled here,
// once, for every readiness model. It owns no loop: whoever learns that the socket is ready
// (a multiplexer, a signal, a fiber scheduler) calls on_ready() and then watches the returned
// interest.
//
// Per-message work (--work), done once per message before its echo is released, in order:
//  - cpu and block: inline, right after reading, on the loop thread. Every other connection of
//    this loop waits meanwhile; that stall is what the readiness models teach about blocking.
//  - wait: the loop's way of waiting, a timer. While a message is pending and no timer is
//    armed, the connection arms one in the loop's TimerQueue for now + N with its fd as the
//    payload; whoever runs the queue calls on_wait_done() when it is due, which releases the
//    message and arms the next one's. Reading goes on meanwhile (later messages wait pending
//    in the bounded Session buffer, which stops the reading when full) and so does writing.
//
// Owns the socket; closes it, and adds its byte counts to Stats, when destroyed. Cancels its
// armed timer when destroyed, so the queue never names a connection that is gone (the queue
// must outlive it). Its admission ticket is kept beside it by the loop. Not thread-safe: one
// loop thread.
class ReactorConnection {
 public:
  struct Outcome {
    std::uint32_t interest;  // Readiness bits to watch next; 0 is fine while work is pending
    bool progressed;         // bytes moved or a message released (idle timer, after_dispatch)
    bool done;               // destroy the connection
  };

  ReactorConnection(unique_fd fd, const ServerConfig& config, Stats& stats, TimerQueue& timers);
  ~ReactorConnection();
  ReactorConnection(const ReactorConnection&) = delete;
  ReactorConnection& operator=(const ReactorConnection&) = delete;

  // Does all the IO that `events` (Readiness bits) allows. `edge_triggered`: the notifier will
  // not repeat itself, so keep reading until EAGAIN (and remember unread bytes across calls).
  Outcome on_ready(std::uint32_t events, bool edge_triggered);

  // Its wait timer (the one waits_on() names) is due: releases the first pending message, arms
  // the next one's timer, and does the IO that allows (send the echo; read again if the full
  // buffer had stopped reading), as on_ready() would.
  Outcome on_wait_done(bool edge_triggered);

  // The drain deadline passed: read no more, keep what is owed and what is pending (its work
  // is still done). Never progressed.
  [[nodiscard]] Outcome stop_reading();

  [[nodiscard]] bool waits_on(TimerQueue::TimerId id) const noexcept { return wait_timer_ == id; }
  // Messages received but not yet answered: its peer awaits a reply, so it is not idle.
  [[nodiscard]] bool has_pending_work() const noexcept { return session_.pending_count() > 0; }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  // What a fresh connection watches first.
  static constexpr std::uint32_t kInitialInterest = 1u;  // kReadable

 private:
  bool read_phase(bool edge_triggered);
  bool write_phase();
  void start_work();
  [[nodiscard]] std::uint32_t interest() const noexcept;

  unique_fd fd_;
  Stats& stats_;
  const WorkConfig& work_;  // the server's, which outlives every connection
  TimerQueue& timers_;
  TimerQueue::TimerId wait_timer_;  // armed for the first pending message (wait work only)
  Session session_;
  ConnectionCounters counters_;
  int error_ = 0;          // errno that ended the connection, 0 if it ended in order
  bool may_read_ = false;  // the kernel may hold unread bytes (or an EOF) for us
  bool peer_eof_ = false;
};

}  // namespace polyecho
