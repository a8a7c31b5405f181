#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

#include "lifecycle/admission.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Bounded hand-off of admitted connections from one accepting thread to pool threads. Owns
// the queued descriptors and their tickets (a queued connection holds its places). Full means full:
// try_push refuses and the caller rejects the connection, so nothing is ever accepted and
// forgotten. Thread-safe.
class ConnectionQueue {
 public:
  explicit ConnectionQueue(std::size_t limit) : limit_(limit) {}

  // False when the queue is full or closed; `connection` is left with the caller then.
  bool try_push(AdmittedConnection& connection) {
    {
      std::lock_guard lock(mutex_);
      if (closed_ || queue_.size() >= limit_) return false;
      queue_.push_back(std::move(connection));
    }
    ready_.notify_one();
    return true;
  }

  // Blocks until a connection is queued; nullopt once closed and empty.
  std::optional<AdmittedConnection> pop() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
    if (queue_.empty()) return std::nullopt;
    AdmittedConnection connection = std::move(queue_.front());
    queue_.pop_front();
    return connection;
  }

  // No more pushes; pop() hands out what is left, then returns nullopt to every waiter.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<AdmittedConnection> queue_;
  std::size_t limit_;
  bool closed_ = false;
};

}  // namespace polyecho
