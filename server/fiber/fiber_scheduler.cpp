#include "fiber/fiber_scheduler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "polyecho/stop_signal.hpp"

namespace polyecho {

namespace {
// Freed stacks kept per scheduler thread for reuse (see FiberStackPool). 64 stacks of 64 KiB
// reserve 4 MiB of address space, and only the pages fibers touched are resident.
constexpr std::size_t kPooledStacks = 64;
}  // namespace

FiberScheduler::FiberScheduler(std::unique_ptr<Multiplexer> multiplexer, std::size_t stack_size,
                               std::chrono::milliseconds drain_timeout)
    : multiplexer_(std::move(multiplexer)),
      stacks_(stack_size, kPooledStacks),
      drain_(drain_timeout) {
  if (!multiplexer_->add(stop_signal::stop_fd(), kReadable))
    throw std::runtime_error("the multiplexer cannot watch the stop fd");
}

// On the normal path run() returned with no fiber left. After an exception, destroying a
// parked fiber unwinds its stack (Boost throws forced_unwind through it), which still runs
// its RAII; parked fibers must go before the pool that owns their stacks.
FiberScheduler::~FiberScheduler() {
  timed_.clear();
  untimed_.clear();
}

FiberScheduler::Task& FiberScheduler::new_task(Kind kind) {
  untimed_.emplace_back();
  Task& task = untimed_.back();
  task.kind = kind;
  task.self = std::prev(untimed_.end());
  task.home = &untimed_;
  return task;
}

void FiberScheduler::drop_task(Task& task) noexcept {
  if (task.watched_fd >= 0) unwatch(task);  // a body that did not forget() its fd
  task.home->erase(task.self);
}

// First thing on the fiber's stack: finish the switch the loop started in resume().
void FiberScheduler::entered(Task& task) noexcept {
  (void)task;
  sanitizer::finish_switch(nullptr, &thread_stack_bottom_, &thread_stack_size_);
}

void FiberScheduler::failed(const std::exception& error) noexcept {
  spdlog::error("fiber failed: {}", error.what());
}

// Last thing on the fiber's stack: this context will never come back (nullptr fake stack).
boost::context::fiber FiberScheduler::left(Task& task) noexcept {
  sanitizer::start_switch(nullptr, thread_stack_bottom_, thread_stack_size_);
  return std::move(task.caller);
}

void FiberScheduler::resume(Task& task, Wake wake) {
  task.wake = wake;
  task.parked = false;
  current_ = &task;
  sanitizer::start_switch(&thread_fake_stack_, static_cast<char*>(task.stack.sp) - task.stack.size,
                          task.stack.size);
  task.context = std::move(task.context).resume();
  sanitizer::finish_switch(thread_fake_stack_, nullptr, nullptr);
  current_ = nullptr;
  if (!task.context) drop_task(task);  // the body returned; Boost already freed the stack
}

// Inside a fiber: file it under its deadline, switch to the loop, report why we are back.
FiberScheduler::Wake FiberScheduler::park(Clock::duration timeout) {
  Task& task = *current_;
  if (timeout.count() > 0) {
    task.deadline = Clock::now() + timeout;
    // Almost every timeout is the same --idle-timeout, so the right place is at or near the
    // back: a move within the list, no allocation.
    auto at = timed_.end();
    while (at != timed_.begin() && std::prev(at)->deadline > task.deadline) --at;
    timed_.splice(at, *task.home, task.self);
    task.home = &timed_;
  } else if (task.home != &untimed_) {
    untimed_.splice(untimed_.end(), *task.home, task.self);
    task.home = &untimed_;
  }
  task.parked = true;
  sanitizer::start_switch(&task.fake_stack, thread_stack_bottom_, thread_stack_size_);
  task.caller = std::move(task.caller).resume();
  sanitizer::finish_switch(task.fake_stack, nullptr, nullptr);
  return task.wake;
}

FiberScheduler::Wake FiberScheduler::wait(int fd, std::uint32_t interest,
                                          std::chrono::milliseconds timeout) {
  loop_thread_.check("FiberScheduler::wait");
  Task& task = *current_;
  if (task.cancelled) return Wake::cancelled;
  if (input_cut_ && task.kind == Kind::connection && (interest & kReadable) != 0)
    return Wake::input_cut;
  watch(task, fd, interest);
  return park(timeout);
}

FiberScheduler::Wake FiberScheduler::sleep(Clock::duration duration) {
  Task& task = *current_;
  if (task.cancelled) return Wake::cancelled;
  // Not watching anything while asleep: a level-triggered fd left registered would wake the
  // loop on every pass (the acceptor backs off precisely because its listener stays readable).
  if (task.watched_fd >= 0) unwatch(task);
  return park(duration);
}

void FiberScheduler::forget(int fd) {
  if (current_ != nullptr && current_->watched_fd == fd) unwatch(*current_);
}

// Registration is kept across waits on the same fd, so an echo loop (read, write, read...)
// costs epoll_ctl only when the interest really changes (a write that would block).
void FiberScheduler::watch(Task& task, int fd, std::uint32_t interest) {
  if (task.watched_fd == fd) {
    if (task.watched_interest != interest) {
      multiplexer_->modify(fd, interest & ~kExclusive);  // EPOLLEXCLUSIVE is add-only
      task.watched_interest = interest;
    }
    return;
  }
  if (task.watched_fd >= 0) unwatch(task);
  if (!multiplexer_->add(fd, interest)) throw std::runtime_error("the multiplexer refused an fd");
  const auto slot = static_cast<std::size_t>(fd);
  if (slot >= by_fd_.size()) by_fd_.resize(std::max(slot + 1, by_fd_.size() * 2), nullptr);
  by_fd_[slot] = &task;
  task.watched_fd = fd;
  task.watched_interest = interest;
}

void FiberScheduler::unwatch(Task& task) {
  multiplexer_->remove(task.watched_fd);
  by_fd_[static_cast<std::size_t>(task.watched_fd)] = nullptr;
  task.watched_fd = -1;
  task.watched_interest = 0;  // cut_input() must not take a sleeper for a reader
}

void FiberScheduler::run() {
  loop_thread_.bind_here();
  while (!timed_.empty() || !untimed_.empty()) {
    multiplexer_->wait(ready_, starting_.empty() ? next_timeout_ms() : 0);
    if (loop_stats_ != nullptr) loop_stats_->record_wait(ready_.size());
    // Connections before services: a connection that ends frees its descriptor before the
    // acceptor runs, so at the descriptor limit a newcomer is admitted rather than shed.
    for (const ReadyEvent& event : ready_) dispatch(event, Kind::connection);
    for (const ReadyEvent& event : ready_) dispatch(event, Kind::service);
    // A signal may land while we wait (EINTR, empty list) before the stop fd is reported.
    if (!drain_.stopping() && stop_signal::requested()) begin_stop();
    // New fibers run until their first wait. By index: the acceptor, itself new on the first
    // pass, appends to starting_ while we walk it.
    for (std::size_t i = 0; i < starting_.size(); ++i) resume(*starting_[i], Wake::ready);
    starting_.clear();
    expire_timers();
  }
}

void FiberScheduler::dispatch(const ReadyEvent& event, Kind kind) {
  if (event.fd == stop_signal::stop_fd()) {
    begin_stop();
    return;
  }
  const auto slot = static_cast<std::size_t>(event.fd);
  // An event for an fd whose fiber ended earlier in this batch is stale; if the number was
  // reused since, the new owner sees a spurious wake-up and its syscall says EAGAIN.
  if (slot >= by_fd_.size() || by_fd_[slot] == nullptr || !by_fd_[slot]->parked ||
      by_fd_[slot]->kind != kind)
    return;
  resume(*by_fd_[slot], Wake::ready);
}

void FiberScheduler::begin_stop() {
  if (drain_.stopping()) return;
  drain_.stop(Clock::now());
  // The stop fd stays readable forever: stop watching it or the level-triggered loop spins.
  multiplexer_->remove(stop_signal::stop_fd());
  cancel(/*services_only=*/true);
}

// Resumes each chosen parked fiber with `cancelled`. A cancelled fiber never parks again (its
// waits return at once), so it ends inside resume() and the lists only shrink under us.
void FiberScheduler::cancel(bool services_only) {
  for (TaskList* list : {&timed_, &untimed_}) {
    for (auto it = list->begin(); it != list->end();) {
      Task& task = *it++;
      if (services_only && task.kind != Kind::service) continue;
      task.cancelled = true;
      if (task.parked) resume(task, Wake::cancelled);
    }
  }
}

void FiberScheduler::expire_timers() {
  const auto now = Clock::now();
  while (!timed_.empty() && timed_.front().deadline <= now && timed_.front().parked) {
    resume(timed_.front(), Wake::timed_out);  // it re-parks later in the list, or ends
  }
  const auto phase = drain_.advance(now);
  if (phase == DrainTimeline::Phase::flushing) {
    input_cut_ = true;
    cut_input();
  } else if (phase == DrainTimeline::Phase::closing) {
    input_cut_ = true;
    cancel(/*services_only=*/false);  // the flush grace is over too
  }
}

// Wakes every connection parked on a read with `input_cut`. Chosen first, then resumed: a
// resumed fiber moves itself within or between the lists (to wait for writability) or ends,
// but never parks on a read again, and never ends another fiber, so the pointers stay valid.
void FiberScheduler::cut_input() {
  std::vector<Task*> readers;
  for (TaskList* list : {&timed_, &untimed_}) {
    for (Task& task : *list) {
      if (task.kind == Kind::connection && task.parked && (task.watched_interest & kReadable) != 0)
        readers.push_back(&task);
    }
  }
  for (Task* task : readers) {
    if (task->parked) resume(*task, Wake::input_cut);
  }
}

int FiberScheduler::next_timeout_ms() const {
  std::optional<Clock::time_point> next;
  if (!timed_.empty()) next = timed_.front().deadline;
  const auto now = Clock::now();
  if (const auto drain_deadline = drain_.next_deadline(now))
    next = next ? std::min(*next, *drain_deadline) : *drain_deadline;
  if (!next) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}

}  // namespace polyecho
