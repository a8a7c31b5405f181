#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <unordered_set>

namespace polyecho {

// The set of connection fds currently served by blocking threads, so that the thread running
// the drain can wait for them and, at the deadline, cut them: shutdown() wakes a thread blocked
// in recv/send on that socket. An fd leaves the set (under the lock) before its owner closes
// it, so shutdown never hits a reused descriptor. Once end_drain() ran, add() refuses: a
// pool thread that picks up a queued connection after the cut must not start serving it.
// Thread-safe.
class ActiveConnections {
 public:
  // False (and nothing added) after end_drain(): the caller closes the connection instead.
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
  // The drain deadline passed with connections left (DrainTimeline's `flushing`). First cut
  // their input: SHUT_RD wakes a thread blocked in recv (it reads EOF), and input_cut() tells
  // serve_blocking to read no more, so every byte already received is still echoed. Whoever
  // has not finished flushing at `close_at` (a peer that does not read) is cut completely.
  void end_drain(std::chrono::steady_clock::time_point close_at) {
    {
      std::lock_guard lock(mutex_);
      cut_ = true;
      input_cut_.store(true, std::memory_order_relaxed);
      for (int fd : fds_) ::shutdown(fd, SHUT_RD);
    }
    if (wait_until_empty(close_at)) return;
    std::lock_guard lock(mutex_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  [[nodiscard]] const std::atomic<bool>* input_cut() const noexcept { return &input_cut_; }

 private:
  mutable std::mutex mutex_;
  std::condition_variable emptied_;
  std::unordered_set<int> fds_;
  bool cut_ = false;
  std::atomic<bool> input_cut_{false};
};

}  // namespace polyecho
