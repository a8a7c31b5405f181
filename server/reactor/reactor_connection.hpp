#pragma once

#include <cstddef>
#include <cstdint>

#include "lifecycle/server_config.hpp"
#include "polyecho/session.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// One non-blocking connection driven by readiness: read -> Session -> write, with
// backpressure. Partial writes, EAGAIN, EINTR, peer reset and half-close are handled here,
// once, for every readiness model. It owns no loop: whoever learns that the socket is ready
// (a multiplexer, a signal, a fiber scheduler) calls on_ready() and then watches the returned
// interest.
//
// Owns the socket; closes it, and adds its byte counts to Stats, when destroyed. Its admission
// ticket is kept beside it by the loop. Not thread-safe: one loop thread.
class ReactorConnection {
 public:
  struct Outcome {
    std::uint32_t interest;  // Readiness bits to watch next; 0: done, destroy the connection
    bool progressed;         // bytes moved (for idle timers and Multiplexer::after_dispatch)
  };

  ReactorConnection(unique_fd fd, const ServerConfig& config, Stats& stats);
  ~ReactorConnection();
  ReactorConnection(const ReactorConnection&) = delete;
  ReactorConnection& operator=(const ReactorConnection&) = delete;

  // Does all the IO that `events` (Readiness bits) allows. `edge_triggered`: the notifier will
  // not repeat itself, so keep reading until EAGAIN (and remember unread bytes across calls).
  Outcome on_ready(std::uint32_t events, bool edge_triggered);

  // The drain deadline passed: read no more, keep what is owed. Returns the interest to watch
  // (kWritable while bytes are owed, 0 when the connection can close now).
  [[nodiscard]] std::uint32_t stop_reading();

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  // What a fresh connection watches first.
  static constexpr std::uint32_t kInitialInterest = 1u;  // kReadable

 private:
  bool read_phase(bool edge_triggered);
  bool write_phase();
  [[nodiscard]] std::uint32_t interest() const noexcept;

  unique_fd fd_;
  Stats& stats_;
  Session session_;
  ConnectionCounters counters_;
  int error_ = 0;          // errno that ended the connection, 0 if it ended in order
  bool may_read_ = false;  // the kernel may hold unread bytes (or an EOF) for us
  bool peer_eof_ = false;
};

}  // namespace polyecho
