#pragma once

#include <cstddef>
#include <cstdint>

#include "lifecycle/server_config.hpp"
#include "polyecho/session.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"
#include "reactor/offload_link.hpp"
#include "reactor/timer_queue.hpp"
#include "relay/stream_relay.hpp"

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
//  - cpu and block with --offload: on the pool's threads. The connection submits its first
//    pending message through the loop's OffloadLink and holds it, as for a wait, until the
//    loop hands it the completion (on_offload_done()); then it releases it and submits the
//    next. One job in flight per connection keeps its messages in order. When the pool's
//    queue is full the connection stops reading (interest without kReadable) until the loop
//    hands it room (on_room()), when it submits again. Reading and writing go on otherwise.
//
// A raw stream (raw mode, no --work, reads filling their 64 KiB) is relayed: spliced from the
// socket into a pipe and from the pipe back out (StreamRelay), only while the Session holds no
// byte, and no read is made while the pipe holds any, so the bytes keep their order. The
// Session still counts them and tells when the stream ends (streaming()).
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
    bool streamed = false;  // moved bytes, and its last read filled a bulk read (--wait-moderation)
  };

  // `offload`: the loop's link to the --offload pool, or nullptr to do cpu and block work
  // inline. Outlives the connection.
  ReactorConnection(unique_fd fd, const ServerConfig& config, Stats& stats, TimerQueue& timers,
                    OffloadLink* offload);
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

  // --offload. Its job (the one awaits_offload() names) is done: releases that message,
  // submits the next one's work, and does the IO that allows, as on_wait_done() does.
  Outcome on_offload_done(bool edge_triggered);
  // The pool's queue has room again (awaits_room() was true): submits, and reads again if it
  // could. If the queue is full again it keeps waiting, unread, and the link retries it later.
  Outcome on_room(bool edge_triggered);

  // The drain deadline passed: read no more, keep what is owed and what is pending (its work
  // is still done). Never progressed.
  [[nodiscard]] Outcome stop_reading();

  [[nodiscard]] bool waits_on(TimerQueue::TimerId id) const noexcept { return wait_timer_ == id; }
  // Whether `connection` (from a completion or the refused list) still names this connection
  // and it waits for that: an fd reused since carries another serial.
  [[nodiscard]] bool awaits_offload(const ConnectionRef& connection) const noexcept {
    return in_flight_ && connection.serial == serial_;
  }
  [[nodiscard]] bool awaits_room(const ConnectionRef& connection) const noexcept {
    return awaiting_room_ && connection.serial == serial_;
  }
  // Messages received but not yet answered: its peer awaits a reply, so it is not idle.
  [[nodiscard]] bool has_pending_work() const noexcept { return session_.pending_count() > 0; }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  // What a fresh connection watches first.
  static constexpr std::uint32_t kInitialInterest = 1u;  // kReadable

 private:
  bool read_phase(bool edge_triggered);
  bool relay_in(bool edge_triggered);
  bool read_ended(const IoResult& r);
  bool write_phase();
  bool relay_out();
  // Closing, and nothing left in the Session or the pipe: the connection may go.
  [[nodiscard]] bool finished() const noexcept { return session_.finished() && relay_.held() == 0; }
  void start_work();
  void offload_next();
  [[nodiscard]] std::uint32_t interest() const noexcept;

  unique_fd fd_;
  Stats& stats_;
  const WorkConfig& work_;  // the server's, which outlives every connection
  TimerQueue& timers_;
  TimerQueue::TimerId wait_timer_;  // armed for the first pending message (wait work only)
  OffloadLink* offload_;            // nullptr: cpu and block work run inline
  std::uint64_t serial_ = 0;        // names this connection in offload jobs (0 without)
  bool in_flight_ = false;          // the first pending message's work is in the pool
  bool awaiting_room_ = false;      // the pool's queue refused it: not read until room
  Session session_;
  int error_ = 0;          // errno that ended the connection, 0 if it ended in order
  bool may_read_ = false;  // the kernel may hold unread bytes (or an EOF) for us
  bool peer_eof_ = false;
  bool splice_;        // --splice, raw mode, no work: streams may be relayed
  StreamRelay relay_;  // bytes spliced in and not yet back out
};

}  // namespace polyecho
