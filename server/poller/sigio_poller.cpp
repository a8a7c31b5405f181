// Signal-driven IO behind the Multiplexer seam. Every watched fd is switched to O_ASYNC with
// F_SETSIG: from then on the kernel *queues a realtime signal* to the loop thread whenever the
// fd becomes readable or writable, carrying the fd in si_fd and the poll bits in si_band. The
// loop keeps that signal blocked and dequeues it synchronously with sigtimedwait(), so no
// handler runs and nothing is async-signal-unsafe. wait() turns each siginfo into a ReadyEvent.
//
// What the kernel tells us is an edge: a signal is queued when new data (or room) arrives, not
// while it is pending. So edge_triggered() is true (the reactor reads and accepts until
// EAGAIN), and every add()/modify() schedules one re-check of that fd at the next wait(): bytes
// that arrived before O_ASYNC was set, or while reading was paused by backpressure, raised
// their signal already and will not raise another (epoll's EPOLL_CTL_MOD re-arms the same way).
//
// Why this model is rarely used in practice:
//  - Cost per event: one signal is queued per state change, and one sigtimedwait() per signal
//    dequeues it, where epoll_wait() returns hundreds of ready fds in one call. The queueing is
//    the larger part, and the sender pays it: on loopback the client's send() allocates the
//    entry and takes the loop's signal lock (perf, 500 streaming connections: kill_fasync was
//    2.8% of the client's samples). Draining through a signalfd, 64 signals per read(), cut the
//    loop's syscalls from 51.5k to under 1k per 2 s and moved neither its CPU nor the msg/s
//    (docs/PERFORMANCE.md, "Fifth pass"), so this file keeps the one-call-per-signal form.
//  - No per-fd coalescing in the kernel: ten packets on one socket are ten queued signals.
//    This file merges duplicates of a batch in user space, but the kernel already paid for them.
//  - The queue is bounded (RLIMIT_SIGPENDING, per user). When it is full the kernel drops the
//    realtime signal and raises plain SIGIO instead, which carries no fd and coalesces with
//    itself: all the loop learns is "something was lost", so it must re-check every watched
//    fd, an O(n) sweep exactly when the server is busiest. That path is handled below.
//  - Signals and threads mix badly: the signal must be blocked in every thread that must not
//    take it (or it kills the process: the default action of SIGRTMIN+n and SIGIO), the owner
//    is per open file description (a shared listener can only signal one thread), and any
//    library that also uses O_ASYNC or the same realtime signal collides with us.
// Linux's answer to all four was epoll; this poller exists to show the model, not to compete.
//
// Thread affinity: construct and use on the loop thread. The constructor blocks the signals in
// that thread and every add() directs the fd's signals to it (F_SETOWN_EX, F_OWNER_TID).
// Does not own the fds it watches; the fds keep O_ASYNC after remove() (they are about to be
// closed; a late signal for an unwatched fd is ignored).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "poller/dense_fd_table.hpp"
#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {
namespace {

// glibc keeps the first realtime signals for itself (SIGRTMIN is already past them); +4 stays
// clear of anything a library in this process might pick first.
int readiness_signal() {
  return SIGRTMIN + 4;
}

// Signals dequeued per wait() at most, so a flood cannot starve the reactor's timers.
constexpr int kMaxSignalsPerWait = 4096;

std::uint32_t from_band(long band) {
  std::uint32_t events = 0;
  if (band & (POLLIN | POLLRDNORM | POLLPRI)) events |= kReadable;
  if (band & (POLLOUT | POLLWRNORM | POLLWRBAND)) events |= kWritable;
  if (band & (POLLERR | POLLHUP)) events |= kError;
  return events;
}

class SigioPoller final : public Multiplexer {
 public:
  SigioPoller() : signal_(readiness_signal()), owner_{F_OWNER_TID, ::gettid()} {
    ::sigemptyset(&signals_);
    ::sigaddset(&signals_, signal_);
    ::sigaddset(&signals_, SIGIO);  // the overflow fallback
    // Blocked before any fd can raise them: their default action terminates the process.
    if (const int error = ::pthread_sigmask(SIG_BLOCK, &signals_, nullptr); error != 0) {
      errno = error;
      throw_errno("pthread_sigmask");
    }
  }

  bool add(int fd, std::uint32_t interest) override {
    if (::fcntl(fd, F_SETOWN_EX, &owner_) != 0) throw_errno("fcntl(F_SETOWN_EX)");
    if (::fcntl(fd, F_SETSIG, signal_) != 0) throw_errno("fcntl(F_SETSIG)");
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_ASYNC) != 0)
      throw_errno("fcntl(F_SETFL, O_ASYNC)");
    watched_.insert({fd, interest, 0, 0});
    recheck_.push_back(fd);
    return true;
  }
  void modify(int fd, std::uint32_t interest) override {
    watched_.at(fd).interest = interest;
    recheck_.push_back(fd);
  }
  void remove(int fd) override { watched_.erase(fd); }

  void wait(std::vector<ReadyEvent>& ready, int timeout_ms) override {
    ready.clear();
    ++batch_;
    for (const int fd : recheck_) report(ready, fd, kReadable | kWritable);
    recheck_.clear();
    bool overflowed = false;
    // Block only when there is nothing to report yet; afterwards just drain what is queued.
    int wait_ms = ready.empty() ? timeout_ms : 0;
    for (int taken = 0; taken < kMaxSignalsPerWait; ++taken, wait_ms = 0) {
      siginfo_t info;
      if (!dequeue(info, wait_ms)) break;
      if (info.si_signo == signal_) {
        report(ready, info.si_fd, from_band(info.si_band));
      } else {
        overflowed = true;  // SIGIO: a realtime signal was dropped, we do not know whose
      }
    }
    if (overflowed) {
      // Everything could have lost its signal: report every watched fd as ready for what it
      // asked. Spurious readiness is harmless (the non-blocking IO answers EAGAIN).
      note_overflow();
      for (const Watch& w : watched_.records()) report(ready, w.fd, kReadable | kWritable);
    } else if (overflow_rechecks_ > 0) {
      spdlog::info("sigio: signal queue recovered after {} full re-check(s)", overflow_rechecks_);
      overflow_rechecks_ = 0;
    }
  }

  bool edge_triggered() const noexcept override { return true; }
  std::string_view name() const noexcept override { return "sigio"; }

 private:
  struct Watch {
    int fd;
    std::uint32_t interest;
    std::uint64_t batch;  // the wait() that last reported this fd ...
    std::size_t slot;     // ... at this index of `ready`, so duplicates merge into one event
  };

  // Returns false when nothing is queued (after waiting up to `timeout_ms`; -1: no limit) or
  // when a stop signal's handler interrupted the wait (the reactor then looks at the stop flag).
  bool dequeue(siginfo_t& info, int timeout_ms) {
    int got;
    if (timeout_ms < 0) {
      got = ::sigwaitinfo(&signals_, &info);
    } else {
      const timespec limit{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1'000'000};
      got = ::sigtimedwait(&signals_, &info, &limit);
    }
    if (got >= 0) return true;
    if (errno != EAGAIN && errno != EINTR) throw_errno("sigtimedwait");
    return false;
  }

  // Adds (or merges) an event for `fd`, filtered by its interest; ignores unwatched fds (a
  // signal queued before the fd was removed, or for an fd number since reused: harmless).
  void report(std::vector<ReadyEvent>& ready, int fd, std::uint32_t events) {
    Watch* w = watched_.find(fd);
    if (w == nullptr) return;
    events &= w->interest | kError;
    if (events == 0) return;
    if (w->batch == batch_) {
      ready[w->slot].events |= events;
      return;
    }
    w->batch = batch_;
    w->slot = ready.size();
    ready.push_back({fd, events});
  }

  // One info line per overflow burst (a run of waits that each saw SIGIO), not per SIGIO.
  void note_overflow() {
    if (overflow_rechecks_++ == 0) {
      spdlog::info(
          "sigio: realtime signal queue overflowed (RLIMIT_SIGPENDING), fell back to "
          "SIGIO: re-checking all {} watched fds",
          watched_.records().size());
    }
  }

  int signal_;
  f_owner_ex owner_;
  sigset_t signals_;
  DenseFdTable<Watch> watched_;
  std::vector<int> recheck_;  // added or modified since the last wait: report once regardless
  std::uint64_t batch_ = 0;
  std::uint64_t overflow_rechecks_ = 0;  // full re-checks in the current overflow burst
};

}  // namespace

std::unique_ptr<Multiplexer> make_sigio_poller() {
  return std::make_unique<SigioPoller>();
}

}  // namespace polyecho
