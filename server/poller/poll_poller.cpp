// poll(2) behind the Multiplexer seam. No FD_SETSIZE ceiling (the array grows with the number
// of watched fds), but like select every wait copies the whole array into the kernel and the
// answer is found by scanning it: O(watched fds) per wakeup, however few are ready.
#include <poll.h>

#include <cerrno>

#include "poller/dense_fd_table.hpp"
#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {
namespace {

short to_poll(std::uint32_t interest) {
  return static_cast<short>(((interest & kReadable) ? POLLIN : 0) |
                            ((interest & kWritable) ? POLLOUT : 0));
}

class PollPoller final : public Multiplexer {
 public:
  bool add(int fd, std::uint32_t interest) override {
    fds_.insert({fd, to_poll(interest), 0});
    return true;
  }
  void modify(int fd, std::uint32_t interest) override { fds_.at(fd).events = to_poll(interest); }
  void remove(int fd) override { fds_.erase(fd); }

  void wait(std::vector<ReadyEvent>& ready, int timeout_ms) override {
    ready.clear();
    auto& fds = fds_.records();
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      throw_errno("poll");
    }
    for (const pollfd& p : fds) {
      if (static_cast<int>(ready.size()) == n) break;
      if (p.revents == 0) continue;
      std::uint32_t events = 0;
      if (p.revents & POLLIN) events |= kReadable;
      if (p.revents & POLLOUT) events |= kWritable;
      if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) events |= kError;
      ready.push_back({p.fd, events});
    }
  }

  bool scans_every_fd() const noexcept override { return true; }
  std::string_view name() const noexcept override { return "poll"; }

 private:
  DenseFdTable<pollfd> fds_;  // what poll() gets: dense, so it never walks holes
};

}  // namespace

std::unique_ptr<Multiplexer> make_poll_poller() {
  return std::make_unique<PollPoller>();
}

}  // namespace polyecho
