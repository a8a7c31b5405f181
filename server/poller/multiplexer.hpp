#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace polyecho {

// What a caller wants to hear about, and what the kernel reported. `error` covers POLLERR,
// POLLHUP and their select/epoll equivalents; it is only ever reported, never asked for.
enum Readiness : std::uint32_t {
  kReadable = 1u << 0,
  kWritable = 1u << 1,
  kError = 1u << 2,
  // Interest hint for a listener shared by several loops: wake only one of them per new
  // connection (epoll: EPOLLEXCLUSIVE, add() only). Multiplexers that cannot do it ignore it.
  kExclusive = 1u << 3,
  // Interest hint: report this fd to ONE wait, then stop watching it until modify() re-arms
  // it (epoll: EPOLLONESHOT). With several threads sharing one multiplexer it hands each
  // event to exactly one thread and keeps the fd from that thread's peers until it is done.
  // Only the epoll poller implements it; the others ignore it (one thread owns each of them,
  // so there is nobody to keep out).
  kOneShot = 1u << 4,
};

struct ReadyEvent {
  int fd;
  std::uint32_t events;  // Readiness bits
};

// The narrow seam between a reactor and the kernel's readiness API (the `ae_*.c` shape):
// register interest per fd, then wait() turns the kernel's answer into a list of
// {fd, events}. A multiplexer knows nothing about protocols, buffers or connections.
//
// Does not own the fds it watches: the caller removes an fd before closing it.
// Not thread-safe in general: one multiplexer per loop thread (the fiber scheduler, which
// reuses one, also runs on one thread). The epoll poller is the exception the
// leader/followers model relies on: add/modify/remove keep no user-space state (epoll_ctl
// on the kernel object, which serialises them against a concurrent epoll_wait), so any
// thread may call them while another waits; wait() itself fills a member array and must be
// called by one thread at a time.
class Multiplexer {
 public:
  virtual ~Multiplexer() = default;

  // False when this multiplexer cannot watch `fd` at all (a hard ceiling on fd numbers, which
  // its file explains); the caller must then refuse the connection. Setup failures of the
  // kernel object throw.
  [[nodiscard]] virtual bool add(int fd, std::uint32_t interest) = 0;
  virtual void modify(int fd, std::uint32_t interest) = 0;
  virtual void remove(int fd) = 0;
  // Replaces `ready` with the fds that became ready, waiting at most `timeout_ms`
  // (-1: no limit). EINTR returns an empty list. Reuses `ready`'s capacity.
  virtual void wait(std::vector<ReadyEvent>& ready, int timeout_ms) = 0;
  // Called by the loop after dispatching a batch: `progressed` tells whether any event moved
  // bytes or accepted a connection. A multiplexer whose reports are guesses (it names fds that
  // may not be ready and lets EAGAIN answer) learns here whether the last batch was worth it,
  // e.g. to pace its next wait(); one that reports what the kernel says ignores it.
  virtual void after_dispatch(bool progressed) { (void)progressed; }
  // Whether each wait() scans every watched fd (poll, select), so that a wait finding one
  // ready fd costs as much as one finding fifty; a wait that blocks also registers on, and
  // afterwards leaves, every watched socket's wait queue. --wait-moderation applies to these.
  [[nodiscard]] virtual bool scans_every_fd() const noexcept { return false; }
  // With edge-triggered readiness, handlers must read/accept until EAGAIN.
  [[nodiscard]] virtual bool edge_triggered() const noexcept { return false; }
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
};

// One small file each: select_poller.cpp, poll_poller.cpp, epoll_poller.cpp, spin_poller.cpp,
// sigio_poller.cpp.
[[nodiscard]] std::unique_ptr<Multiplexer> make_select_poller();
[[nodiscard]] std::unique_ptr<Multiplexer> make_poll_poller();
// Throws std::system_error naming epoll_create1 when epoll is unavailable.
// `max_events_per_wait`: 0 hands out every ready fd (the event array grows as needed); N caps a
// wait at N events, e.g. 1 for a leader that takes one event and hands the wait on.
[[nodiscard]] std::unique_ptr<Multiplexer> make_epoll_poller(bool edge_triggered,
                                                             std::size_t max_events_per_wait = 0);
// Asks the kernel nothing: reports every watched fd as ready for what it asked and lets the
// non-blocking syscalls answer EAGAIN. Paces itself through after_dispatch() (its file says how).
[[nodiscard]] std::unique_ptr<Multiplexer> make_spin_poller();
// Signal-driven IO (O_ASYNC + F_SETSIG, realtime signals dequeued with sigtimedwait), edge-like.
// Directs signals to the constructing thread, which must be the one that waits.
[[nodiscard]] std::unique_ptr<Multiplexer> make_sigio_poller();

}  // namespace polyecho
