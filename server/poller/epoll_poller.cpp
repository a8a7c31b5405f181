// epoll(7) behind the Multiplexer seam. Interest lives in the kernel, so a wait costs
// O(ready fds), not O(watched fds). Level-triggered by default: a ready fd is reported on
// every wait until drained, so a handler may do one read per wakeup. Edge-triggered
// (EPOLLET) reports a change once; the handler must then read/accept until EAGAIN, or the
// remaining bytes sit unnoticed until the peer sends more (edge_triggered() tells the loop).
// Reused by the fiber scheduler, which parks fibers on the same kind of readiness, and shared
// by every thread of the leader/followers model: add/modify/remove touch only the kernel
// object, so they are safe from any thread; wait() uses `events_` and needs one caller at a
// time (that model's leader). kOneShot maps to EPOLLONESHOT.
#include <sys/epoll.h>

#include <cerrno>

#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {
namespace {

class EpollPoller final : public Multiplexer {
 public:
  EpollPoller(bool edge_triggered, std::size_t max_events)
      : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
        edge_triggered_(edge_triggered),
        fixed_size_(max_events != 0),
        events_(max_events != 0 ? max_events : 64) {
    if (!epoll_) throw_errno("epoll_create1");
  }

  bool add(int fd, std::uint32_t interest) override {
    control(EPOLL_CTL_ADD, fd, interest);
    return true;
  }
  // With EPOLLET, EPOLL_CTL_MOD also re-arms: if the fd is ready now, the next wait reports it.
  // The reactor relies on that when it resumes reading after backpressure.
  void modify(int fd, std::uint32_t interest) override { control(EPOLL_CTL_MOD, fd, interest); }
  void remove(int fd) override { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

  void wait(std::vector<ReadyEvent>& ready, int timeout_ms) override {
    ready.clear();
    const int n =
        ::epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      throw_errno("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = events_[static_cast<std::size_t>(i)];
      std::uint32_t events = 0;
      if (e.events & EPOLLIN) events |= kReadable;
      if (e.events & EPOLLOUT) events |= kWritable;
      if (e.events & (EPOLLERR | EPOLLHUP)) events |= kError;
      ready.push_back({e.data.fd, events});
    }
    // A full array means more may be ready: grow so one wait can take them all next time.
    if (!fixed_size_ && static_cast<std::size_t>(n) == events_.size()) {
      events_.resize(events_.size() * 2);
    }
  }

  bool edge_triggered() const noexcept override { return edge_triggered_; }
  std::string_view name() const noexcept override { return edge_triggered_ ? "epoll-et" : "epoll"; }

 private:
  void control(int op, int fd, std::uint32_t interest) {
    epoll_event e{};
    e.events = ((interest & kReadable) ? EPOLLIN : 0u) | ((interest & kWritable) ? EPOLLOUT : 0u) |
               (edge_triggered_ ? static_cast<std::uint32_t>(EPOLLET) : 0u) |
               ((interest & kExclusive) ? static_cast<std::uint32_t>(EPOLLEXCLUSIVE) : 0u) |
               ((interest & kOneShot) ? static_cast<std::uint32_t>(EPOLLONESHOT) : 0u);
    e.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), op, fd, &e) != 0)
      throw_errno(op == EPOLL_CTL_ADD ? "epoll_ctl(ADD)" : "epoll_ctl(MOD)");
  }

  unique_fd epoll_;
  bool edge_triggered_;
  bool fixed_size_;                  // a capped wait: never grow events_
  std::vector<epoll_event> events_;  // wait() only
};

}  // namespace

std::unique_ptr<Multiplexer> make_epoll_poller(bool edge_triggered,
                                               std::size_t max_events_per_wait) {
  return std::make_unique<EpollPoller>(edge_triggered, max_events_per_wait);
}

}  // namespace polyecho
