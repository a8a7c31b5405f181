#include "lifecycle/offload_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

#include "lifecycle/threads.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {

OffloadInbox::OffloadInbox() {
  std::array<int, 2> fds{};
  // Non-blocking both ways: the loop empties the pipe until EAGAIN, and a writer never waits
  // (it writes one byte while the loop has not taken the last one, so the pipe cannot fill).
  if (::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2");
  read_end_.reset(fds[0]);
  write_end_.reset(fds[1]);
}

void OffloadInbox::post_done(ConnectionRef connection) {
  const std::lock_guard lock(mutex_);
  done_.push_back(connection);
  wake_locked();
}

void OffloadInbox::post_room() {
  const std::lock_guard lock(mutex_);
  room_ = true;
  wake_locked();
}

void OffloadInbox::wake_locked() {
  if (woken_) return;
  woken_ = true;
  const char byte = 1;
  ssize_t n = 0;
  do {
    n = ::write(write_end_.get(), &byte, 1);
  } while (n < 0 && errno == EINTR);
  // EAGAIN cannot happen (one byte at a time, taken before the next); anything else would be a
  // bug in the fds' ownership, and the pipe is still readable if it holds a byte at all.
}

bool OffloadInbox::take(std::vector<ConnectionRef>& done) {
  // Empty the pipe first: a post that lands after this writes a fresh byte (woken_ is cleared
  // below under the same lock it checks), so no completion is left without a wakeup.
  std::array<char, 64> sink{};
  for (;;) {
    const ssize_t n = ::read(read_end_.get(), sink.data(), sink.size());
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    break;  // EAGAIN: empty
  }
  done.clear();
  const std::lock_guard lock(mutex_);
  woken_ = false;
  done.swap(done_);
  return std::exchange(room_, false);
}

OffloadPool::OffloadPool(unsigned threads, std::size_t queue_limit, const WorkConfig& work,
                         Stats& stats)
    : work_(work),
      stats_(stats),
      queue_limit_(std::max<std::size_t>(queue_limit, 1)),
      ring_(queue_limit_) {
  threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) threads_.push_back(start_thread([this] { serve(); }));
}

OffloadPool::~OffloadPool() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    stats_.offload_queue_depth.fetch_sub(static_cast<std::int64_t>(size_),
                                         std::memory_order_relaxed);
    size_ = 0;
  }
  ready_.notify_all();
  for (auto& thread : threads_) thread.join();
}

bool OffloadPool::try_submit(OffloadInbox& inbox, ConnectionRef connection,
                             std::span<const char> message) {
  {
    const std::lock_guard lock(mutex_);
    if (size_ >= queue_limit_) {
      // Under the lock that guards the pop: the room this loop waits for cannot slip by unseen.
      if (std::ranges::find(want_room_, &inbox) == want_room_.end()) want_room_.push_back(&inbox);
      return false;
    }
    Job& slot = ring_[(head_ + size_) % ring_.size()];
    slot.inbox = &inbox;
    slot.connection = connection;
    if (work_.kind == WorkKind::cpu) {
      slot.message.assign(message.begin(), message.end());  // reuses the slot's capacity
    } else {
      slot.message.clear();
    }
    ++size_;
    const auto depth = static_cast<std::int64_t>(size_);
    stats_.offload_queue_depth.store(depth, std::memory_order_relaxed);
    if (depth > stats_.offload_queue_peak.load(std::memory_order_relaxed)) {
      stats_.offload_queue_peak.store(depth, std::memory_order_relaxed);
    }
  }
  stats_.offloaded.fetch_add(1, std::memory_order_relaxed);
  ready_.notify_one();
  return true;
}

// One pool thread: pop a job, tell the loops that were refused that there is room now, do the
// work (under the GIL when configured: work_inline takes it), post the completion.
void OffloadPool::trim(std::string& buffer) {
  if (buffer.capacity() > kKeptCapacity) std::string().swap(buffer);
}

// The job is copied out of its slot under the lock (into this thread's own buffer, whose
// capacity is kept too), so the slot is free for the next submission while the work runs.
void OffloadPool::serve() {
  std::vector<OffloadInbox*> to_wake;
  Job job;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || size_ > 0; });
      if (stopping_) return;
      Job& slot = ring_[head_];
      job.inbox = slot.inbox;
      job.connection = slot.connection;
      job.message.assign(slot.message);
      trim(slot.message);
      head_ = (head_ + 1) % ring_.size();
      --size_;
      stats_.offload_queue_depth.store(static_cast<std::int64_t>(size_), std::memory_order_relaxed);
      to_wake.swap(want_room_);
    }
    for (OffloadInbox* inbox : to_wake) inbox->post_room();
    to_wake.clear();
    work_inline(work_, job.message);
    job.inbox->post_done(job.connection);
    trim(job.message);
  }
}

}  // namespace polyecho
