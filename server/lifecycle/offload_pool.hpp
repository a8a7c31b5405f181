#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"
#include "polyecho/work.hpp"

namespace polyecho {

// --offload N: half-sync/half-async. An event loop (the async half) keeps every socket to
// itself and hands each message's cpu or block work to a pool of N threads (the sync half);
// the echo leaves, from the loop, once the work is done. Two pieces:
//  - OffloadInbox: one per loop, the way back. Pool threads post completions into it and
//    wake the loop through a pipe the loop watches in its multiplexer.
//  - OffloadPool: one per process, shared by every loop. A BOUNDED queue of jobs and the
//    threads that run them. A loop that finds the queue full is told, through its inbox, once
//    a thread has taken a job and made room; meanwhile it stops reading the connection that
//    could not submit, so a full queue turns into TCP backpressure and never grows.
// The loop side (which connection is which, what to release) is the loop's business: see
// server/reactor/offload_link.hpp. Lives in lifecycle/ because nothing here knows about
// readiness: a completion-based loop can post to an inbox and watch its fd just the same.

// A connection as its loop names it in a job: the fd finds it fast, the serial (never reused
// by that loop) proves it is still the same connection, since an fd closed while its job ran
// may already belong to a newer one.
struct ConnectionRef {
  int fd = -1;
  std::uint64_t serial = 0;
};

// The way back to one loop. Thread-safe: pool threads post, the loop takes. Owns its pipe.
// Must outlive the pool threads that may post to it (the pool is joined first).
class OffloadInbox {
 public:
  OffloadInbox();  // throws std::system_error naming pipe2
  // The fd the loop watches for readability. A pipe rather than an eventfd: the sigio model
  // learns readiness only from fds that support O_ASYNC, and an eventfd does not.
  [[nodiscard]] int wake_fd() const noexcept { return read_end_.get(); }

  // Pool threads. `connection`'s work is done / the pool's queue has room again.
  void post_done(ConnectionRef connection);
  void post_room();

  // Loop thread, when wake_fd() is readable (or whenever: it never blocks). Empties the pipe
  // and moves the completions posted since the last call into `done` (replacing its
  // contents); true if room was posted since.
  bool take(std::vector<ConnectionRef>& done);

 private:
  void wake_locked();

  std::mutex mutex_;
  // Bounded without a check: a loop has at most one job per connection in the pool.
  std::vector<ConnectionRef> done_;
  bool room_ = false;
  bool woken_ = false;  // a byte is in the pipe and not yet taken: one is enough
  unique_fd read_end_;
  unique_fd write_end_;
};

// The threads and their bounded queue. Thread-safe: any loop submits, the pool's threads pop.
class OffloadPool {
 public:
  // Starts `threads` threads (start_thread(): stop signals blocked). `queue_limit`: jobs that
  // may wait for a thread (those being worked on are not counted). `work` and `stats` must
  // outlive the pool. Only cpu and block work come here; a wait stays on its loop's timers.
  OffloadPool(unsigned threads, std::size_t queue_limit, const WorkConfig& work, Stats& stats);
  // Stops the threads and joins them: work in progress finishes (block or cpu work cannot be
  // cut short, so this takes at most one work duration); jobs still queued are dropped, as
  // every loop has ended by now and nobody awaits them.
  ~OffloadPool();
  OffloadPool(const OffloadPool&) = delete;
  OffloadPool& operator=(const OffloadPool&) = delete;

  // Loop thread. Queues the work for `message` (copied when the work reads it: the loop goes
  // on reading into the buffer that holds it, and may close the connection meanwhile). Its
  // completion reaches `inbox`. False when the queue is at its limit: nothing was queued, and
  // `inbox` gets post_room() once a thread has taken a job.
  [[nodiscard]] bool try_submit(OffloadInbox& inbox, ConnectionRef connection,
                                std::span<const char> message);

 private:
  struct Job {
    OffloadInbox* inbox = nullptr;
    ConnectionRef connection;
    std::string message;  // empty for block work, which never reads it
  };
  // A message buffer keeps its capacity from job to job up to this size, so the hot path
  // allocates nothing for messages up to it; a larger one is freed after use, which bounds what
  // an idle pool holds to slots x kKeptCapacity.
  static constexpr std::size_t kKeptCapacity = 4096;
  static void trim(std::string& buffer);
  void serve();

  const WorkConfig& work_;
  Stats& stats_;
  const std::size_t queue_limit_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<Job> ring_;  // queue_limit_ slots; the queue is [head_, head_ + size_)
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  std::vector<OffloadInbox*> want_room_;  // loops refused since the last pop, once each
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // last: started once everything above exists
};

}  // namespace polyecho
