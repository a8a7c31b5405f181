#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include "lifecycle/connection_source.hpp"

namespace polyecho {

// The hand-off between a main acceptor and one worker loop (the "main-sub reactor" of muduo and
// Netty): a bounded queue of admitted connections and an eventfd that wakes the loop.
// Producer: the acceptor thread, push() only. Consumer: the loop's InboxSource, on the loop's
// thread. The queue is a fixed ring of `capacity` slots, so it never grows; a full inbox makes
// push() fail and the acceptor tries the next loop or refuses.
//
// The wake costs one write per burst, not per connection: push() writes the eventfd only when
// it finds the queue empty, and the consumer reads (clears) it only when it finds the queue
// empty, then looks once more, so a push landing between its look and its read is never missed.
class Inbox {
 public:
  explicit Inbox(std::size_t capacity);
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;
  ~Inbox();

  // Any thread. False (and `connection` untouched) when the inbox is full or closed.
  [[nodiscard]] bool push(AdmittedConnection& connection);
  // The consumer's thread. False: nothing queued, and the wake is cleared.
  [[nodiscard]] bool pop(AdmittedConnection& out);
  // The consumer is gone: what is queued and whatever is pushed later is refused.
  void close() noexcept;
  [[nodiscard]] int wake_fd() const noexcept { return wake_.get(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return slots_.size(); }

 private:
  bool pop_locked(AdmittedConnection& out);

  std::mutex mutex_;
  std::vector<AdmittedConnection> slots_;  // a ring: [head_, head_ + size_)
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  bool closed_ = false;
  unique_fd wake_;  // eventfd, non-blocking
};

// A loop's view of its Inbox. The connections were admitted by the acceptor; this only counts
// them in the loop's LoopStats.
class InboxSource final : public ConnectionSource {
 public:
  InboxSource(Inbox& inbox, Admission& admission, LoopStats* loop)
      : ConnectionSource(admission, loop), inbox_(inbox) {}
  ~InboxSource() override { inbox_.close(); }
  InboxSource(const InboxSource&) = delete;
  InboxSource& operator=(const InboxSource&) = delete;

  [[nodiscard]] int fd() const noexcept override { return inbox_.wake_fd(); }
  [[nodiscard]] bool shared() const noexcept override { return false; }
  [[nodiscard]] Taken take() override;
  [[nodiscard]] bool holds_accepted() const noexcept override { return true; }

 private:
  Inbox& inbox_;
};

}  // namespace polyecho
