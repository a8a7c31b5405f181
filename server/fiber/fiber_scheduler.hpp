#pragma once

#include <boost/context/fiber.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <list>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "fiber/fiber_stack.hpp"
#include "fiber/sanitizer_fiber.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/thread_affinity.hpp"
#include "poller/multiplexer.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// A small run loop for stackful fibers (Boost.Context) on one thread. Fibers run straight-line
// code; when a non-blocking syscall says EAGAIN, the fiber calls wait(fd, interest) and the
// scheduler switches back to its loop, which asks the multiplexer what is ready and resumes
// the fiber waiting on that fd. Each wait can carry a timeout (idle timeout, back-off).
//
// Stopping is decided here, once: the loop watches the sticky stop fd; on a stop it cancels
// the `service` fibers (the acceptor) at once and lets `connection` fibers run on until
// --drain-timeout (the shared DrainTimeline). There their input is cut: a connection waiting to
// read is woken with `input_cut`, later read waits return it at once, and input_cut() tells the
// fiber to read no more, so it treats the cut as the peer's EOF and flushes what it owes. After
// DrainTimeline::kFlushGrace the ones still left (a peer that does not read) are cancelled.
// A cancelled fiber's wait() returns `cancelled`, and keeps doing so, so its loop ends and its
// RAII runs on its own stack before the stack is freed; no fiber is ever destroyed while
// suspended.
//
// Owns the fibers, their stacks (through its pool) and the multiplexer. Not thread-safe: one
// scheduler per thread; spawn() and wait() only from that thread (wait() only inside a fiber).
class FiberScheduler {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Wake { ready, timed_out, input_cut, cancelled };
  enum class Kind { service, connection };

  FiberScheduler(std::unique_ptr<Multiplexer> multiplexer, std::size_t stack_size,
                 std::chrono::milliseconds drain_timeout);
  ~FiberScheduler();
  FiberScheduler(const FiberScheduler&) = delete;
  FiberScheduler& operator=(const FiberScheduler&) = delete;

  // Creates a fiber that will first run on the next pass of the loop, moving `body` onto its
  // stack. An exception escaping `body()` ends that fiber only (logged). Throws if no stack can
  // be had; then `body` is left as it was, so the caller can still refuse what it owns.
  template <typename Body>
  void spawn(Kind kind, Body&& body);

  // Inside a fiber: park until `fd` is ready for `interest` (Readiness bits), `timeout` passes
  // (zero: no timeout) or the fiber is cancelled. The fd stays registered until the next wait
  // on another fd or forget(); spurious `ready` is possible (retry the syscall).
  [[nodiscard]] Wake wait(int fd, std::uint32_t interest, std::chrono::milliseconds timeout);
  // Inside a fiber: park for `duration` (a back-off, or a --work wait), watching no fd.
  // Returns `timed_out` when the time is up, or `cancelled`. The input cut does not wake a
  // sleeper (it only ends waits to read), so a connection's work in flight at the drain
  // deadline still runs to its end; the flush grace's cancel does.
  [[nodiscard]] Wake sleep(Clock::duration duration);
  // Inside a fiber, before it closes an fd it waited on.
  void forget(int fd);
  // The drain deadline passed: connections must read no more, only flush (see above).
  [[nodiscard]] bool input_cut() const noexcept { return input_cut_; }

  // Runs until every fiber has ended.
  void run();
  // Where this loop counts its waits and the events they brought (null: nowhere).
  void count_waits_in(LoopStats* loop) noexcept { loop_stats_ = loop; }

 private:
  struct Task;
  using TaskList = std::list<Task>;
  struct Task {
    Kind kind;
    boost::context::fiber context;  // the parked fiber (scheduler side); empty once ended
    boost::context::fiber caller;   // the loop to switch back to (fiber side)
    TaskList::iterator self;
    TaskList* home = nullptr;  // timed_ (sorted by deadline) or untimed_
    Clock::time_point deadline{};
    boost::context::stack_context stack{};
    void* fake_stack = nullptr;  // ASan bookkeeping only
    int watched_fd = -1;
    std::uint32_t watched_interest = 0;
    Wake wake = Wake::ready;
    bool parked = false;
    bool cancelled = false;
  };

  Task& new_task(Kind kind);
  void drop_task(Task& task) noexcept;
  void entered(Task& task) noexcept;
  static void failed(const std::exception& error) noexcept;
  boost::context::fiber left(Task& task) noexcept;
  void resume(Task& task, Wake wake);
  Wake park(Clock::duration timeout);
  void watch(Task& task, int fd, std::uint32_t interest);
  void unwatch(Task& task);
  void dispatch(const ReadyEvent& event, Kind kind);
  void begin_stop();
  void cancel(bool services_only);
  void cut_input();
  void expire_timers();
  [[nodiscard]] int next_timeout_ms() const;

  std::unique_ptr<Multiplexer> multiplexer_;
  LoopStats* loop_stats_ = nullptr;
  FiberStackPool stacks_;
  DrainTimeline drain_;
  TaskList timed_;
  TaskList untimed_;
  std::vector<Task*> starting_;  // spawned, not yet run
  std::vector<Task*> by_fd_;     // fd -> the fiber waiting on it (or null); grows
  std::vector<ReadyEvent> ready_;
  Task* current_ = nullptr;
  bool input_cut_ = false;      // the drain reached `flushing`: read waits return input_cut
  ThreadAffinity loop_thread_;  // bound in run(); spawn() may run on the builder before that
  // The loop thread's own stack, for ASan's switch hooks (learned on the first switch).
  const void* thread_stack_bottom_ = nullptr;
  std::size_t thread_stack_size_ = 0;
  void* thread_fake_stack_ = nullptr;
};

// An fd a fiber owns and waits on: forgets it in the scheduler before closing it, so the
// multiplexer never watches a closed (or reused) descriptor.
class WatchedFd {
 public:
  WatchedFd(FiberScheduler& scheduler, unique_fd fd) : scheduler_(scheduler), fd_(std::move(fd)) {}
  ~WatchedFd() { scheduler_.forget(fd_.get()); }
  WatchedFd(const WatchedFd&) = delete;
  WatchedFd& operator=(const WatchedFd&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_.get(); }

 private:
  FiberScheduler& scheduler_;
  unique_fd fd_;
};

template <typename Body>
void FiberScheduler::spawn(Kind kind, Body&& body) {
  static_assert(!std::is_lvalue_reference_v<Body>, "spawn takes the body by move");
  loop_thread_.check("FiberScheduler::spawn");
  Task& task = new_task(kind);
  try {
    task.stack = stacks_.allocate();
    // preallocated: Boost keeps its control record at the top of our stack, and we keep the
    // stack_context (ASan needs its bounds). The body is moved onto the fiber's own stack.
    task.context = boost::context::fiber(
        std::allocator_arg,
        boost::context::preallocated(task.stack.sp, task.stack.size, task.stack),
        PooledStackAllocator{&stacks_},
        [this, &task, body = std::forward<Body>(body)](boost::context::fiber&& caller) mutable {
          entered(task);  // first: ASan must learn of the switch before anything else runs
          task.caller = std::move(caller);
          try {
            body();
          } catch (const std::exception& e) {  // not forced_unwind: that one must pass
            failed(e);
          }
          return left(task);
        });
  } catch (...) {
    if (task.stack.sp != nullptr && !task.context) stacks_.deallocate(task.stack);
    drop_task(task);
    throw;
  }
  starting_.push_back(&task);
}

}  // namespace polyecho
