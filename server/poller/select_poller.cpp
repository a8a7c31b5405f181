// select(2) behind the Multiplexer seam. The oldest and most portable readiness API, with two
// costs this file cannot hide: an fd_set is a fixed bitmap of FD_SETSIZE bits, so an fd at or
// above FD_SETSIZE cannot be watched at all (FD_SET on it writes out of bounds: undefined
// behaviour), and every wait hands the kernel, and then scans, all bits up to the highest fd.
#include <spdlog/spdlog.h>
#include <sys/select.h>

#include <array>
#include <cerrno>

#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {
namespace {

class SelectPoller final : public Multiplexer {
 public:
  SelectPoller() {
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
  }

  bool add(int fd, std::uint32_t interest) override {
    // The one hard limit in the reactor family: refuse rather than corrupt memory.
    if (fd < 0 || fd >= FD_SETSIZE) {
      spdlog::warn("select: cannot watch fd {} (FD_SETSIZE is {}); refusing the connection", fd,
                   FD_SETSIZE);
      return false;
    }
    watched_[static_cast<std::size_t>(fd)] = true;
    if (fd > max_fd_) max_fd_ = fd;
    modify(fd, interest);
    return true;
  }

  void modify(int fd, std::uint32_t interest) override {
    if (interest & kReadable)
      FD_SET(fd, &read_set_);
    else
      FD_CLR(fd, &read_set_);
    if (interest & kWritable)
      FD_SET(fd, &write_set_);
    else
      FD_CLR(fd, &write_set_);
  }

  void remove(int fd) override {
    FD_CLR(fd, &read_set_);
    FD_CLR(fd, &write_set_);
    watched_[static_cast<std::size_t>(fd)] = false;
    while (max_fd_ >= 0 && !watched_[static_cast<std::size_t>(max_fd_)]) --max_fd_;
  }

  void wait(std::vector<ReadyEvent>& ready, int timeout_ms) override {
    ready.clear();
    // select() overwrites its sets with the answer, so it gets copies and the interest sets
    // survive for the next call.
    fd_set readable = read_set_;
    fd_set writable = write_set_;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000L};
    const int n =
        ::select(max_fd_ + 1, &readable, &writable, nullptr, timeout_ms < 0 ? nullptr : &tv);
    if (n < 0) {
      if (errno == EINTR) return;
      throw_errno("select");
    }
    // Errors and hang-ups show up as "readable"/"writable"; the next recv/send reports them.
    for (int fd = 0; fd <= max_fd_ && static_cast<int>(ready.size()) < n; ++fd) {
      std::uint32_t events = 0;
      if (FD_ISSET(fd, &readable)) events |= kReadable;
      if (FD_ISSET(fd, &writable)) events |= kWritable;
      if (events != 0) ready.push_back({fd, events});
    }
  }

  bool scans_every_fd() const noexcept override { return true; }
  std::string_view name() const noexcept override { return "select"; }

 private:
  fd_set read_set_;
  fd_set write_set_;
  std::array<bool, FD_SETSIZE> watched_{};
  int max_fd_ = -1;
};

}  // namespace

std::unique_ptr<Multiplexer> make_select_poller() {
  return std::make_unique<SelectPoller>();
}

}  // namespace polyecho
