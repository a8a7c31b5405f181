#pragma once

#include <chrono>
#include <cstdint>

#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// accept() with the error policy every model shares:
//  - EINTR is retried; ECONNABORTED/EPROTO (the peer gave up in the backlog) are skipped.
//  - EMFILE/ENFILE: a reserve descriptor is closed, the pending connection is accepted and
//    closed at once (shed, counted as rejected), and the reserve is reopened. Without this a
//    level-triggered listener stays readable forever and the loop spins at 100% CPU.
//    When even the reserve is gone, the caller gets `exhausted` and must back off (stop
//    watching the listener or wait) before trying again.
//  - A burst of shedding is logged once when it starts and once when it ends. The burst is
//    process-wide, like the descriptor table: several Acceptors (one per loop thread) log it
//    once between them, with the total shed.
// Does not own the listening socket. One Acceptor per accepting thread.
class Acceptor {
 public:
  enum class Status { accepted, would_block, shed, exhausted, stopped, failed };
  // After `exhausted` (or `failed`), wait this long before accepting again: slow enough to cost
  // nothing, quick enough that service resumes promptly once a connection closes.
  static constexpr std::chrono::milliseconds kExhaustedBackoff{50};
  struct Result {
    Status status;
    unique_fd fd;  // set when status == accepted
    int error = 0;
  };

  Acceptor(int listen_fd, Stats& stats);

  // `nonblocking`: the new connection gets O_NONBLOCK (event-driven models).
  [[nodiscard]] Result accept_one(bool nonblocking);

 private:
  Result shed_one(int error);
  void end_burst();

  int listen_fd_;
  Stats& stats_;
  unique_fd reserve_;
};

}  // namespace polyecho
