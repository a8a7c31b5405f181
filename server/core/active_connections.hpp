#pragma once

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <unordered_set>

namespace polyecho {

// The set of connection fds currently served by blocking threads, so that the thread running
// the drain can wait for them and, at the deadline, cut them: shutdown() wakes a thread blocked
// in recv/send on that socket. An fd leaves the set (under the lock) before its owner closes
// it, so shutdown never hits a reused descriptor. Once shutdown_all() ran, add() refuses: a
// pool thread that picks up a queued connection after the cut must not start serving it.
// Thread-safe.
class ActiveConnections {
 public:
  // False (and nothing added) after shutdown_all(): the caller closes the connection instead.
  bool add(int fd) {
    std::lock_guard lock(mutex_);
    if (cut_) return false;
    fds_.insert(fd);
    return true;
  }
  void remove(int fd) {
    std::lock_guard lock(mutex_);
    fds_.erase(fd);
    if (fds_.empty()) emptied_.notify_all();
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return fds_.size();
  }
  // True when every connection ended before the deadline.
  bool wait_until_empty(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    return emptied_.wait_until(lock, deadline, [&] { return fds_.empty(); });
  }
  void shutdown_all() {
    std::lock_guard lock(mutex_);
    cut_ = true;
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable emptied_;
  std::unordered_set<int> fds_;
  bool cut_ = false;
};

}  // namespace polyecho
