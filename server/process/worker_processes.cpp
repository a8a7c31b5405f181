#include "process/worker_processes.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <new>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

using Counter = std::atomic<std::int64_t>;

WorkerProcesses::WorkerProcesses(unsigned count, Hooks hooks, Stats& stats, PeerLimit& peers)
    : hooks_(std::move(hooks)),
      stats_(stats),
      peers_(peers),
      pids_(count, 0),
      // SIGKILL on the master's death: with nobody to drain them, workers just end. A worker
      // that throws could not start: it stops the server instead of being replaced in a loop.
      children_(
          {.parent_death_signal = SIGKILL, .exception_status = kSetupFailed, .name = "worker"},
          [this](const ChildExit& exit) { on_exited(exit); }) {
  void* memory = ::mmap(nullptr, sizeof(Counter) * count, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw_errno("mmap(worker counters)");
  held_ = static_cast<Counter*>(memory);
  for (unsigned i = 0; i < count; ++i) new (&held_[i]) Counter(0);
}

// children_ SIGKILLs and reaps the workers left once this body has run; they have their own
// copies of the counters, so unmapping the master's first is fine.
WorkerProcesses::~WorkerProcesses() {
  ::munmap(held_, sizeof(Counter) * pids_.size());
}

void WorkerProcesses::start_all() {
  for (unsigned slot = 0; slot < pids_.size(); ++slot) spawn(slot);
}

void WorkerProcesses::spawn(unsigned slot) {
  if (hooks_.before_fork) hooks_.before_fork(slot);
  const pid_t pid = children_.spawn([&] {
    PeerLimit::enter_worker(slot);
    return hooks_.run(slot);
  });
  if (pid < 0) {
    // Left empty; the next reap (any worker's exit) does not retry it, so say so loudly.
    spdlog::error("fork (worker {}): {}", slot, std::strerror(errno));
    return;
  }
  pids_[slot] = pid;
  if (hooks_.after_fork) hooks_.after_fork(slot, pid);
}

void WorkerProcesses::reap() {
  children_.reap();
}

void WorkerProcesses::on_exited(const ChildExit& exit) {
  const auto it = std::find(pids_.begin(), pids_.end(), exit.pid);
  if (it == pids_.end()) return;
  const auto slot = static_cast<unsigned>(it - pids_.begin());
  pids_[slot] = 0;
  // Connections the worker never got to close: take them out of the active count.
  const std::int64_t lost = held_[slot].exchange(0);
  stats_.active.fetch_sub(lost, std::memory_order_relaxed);
  peers_.forget_owner(slot);  // their --max-per-ip places too
  if (WIFSIGNALED(exit.status)) {
    stats_.count_error(ErrorKind::process, static_cast<std::uint64_t>(lost));
    spdlog::warn("worker {} died from signal {}; {} connection(s) lost", slot,
                 WTERMSIG(exit.status), lost);
  }
  if (hooks_.on_exit) hooks_.on_exit(slot);
  if (stopping_) return;
  if (WIFEXITED(exit.status) && WEXITSTATUS(exit.status) == kSetupFailed) {
    spdlog::error("worker {} could not start; stopping", slot);
    stop_signal::request();
    return;
  }
  spawn(slot);
}

void WorkerProcesses::supervise_until_stop() {
  while (!stop_signal::requested()) {
    pollfd fds[2] = {{stop_signal::stop_fd(), POLLIN, 0}, {stop_signal::child_fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) throw_errno("poll");
    if (fds[1].revents & POLLIN) reap();
  }
}

void WorkerProcesses::stop(std::chrono::milliseconds drain_timeout) {
  stopping_ = true;
  // Workers drain on their own SIGTERM, so it goes at once; they cut their own connections at
  // drain_timeout, and a grace second later the ones left are killed.
  const auto now = ChildProcesses::Clock::now();
  children_.stop(now, now + drain_timeout + ChildProcesses::kKillGrace);
}

}  // namespace polyecho
