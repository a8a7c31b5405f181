#pragma once

#include <sys/types.h>

#include <cassert>
#include <chrono>
#include <csignal>
#include <functional>
#include <string_view>
#include <thread>
#include <unordered_set>

namespace polyecho {

// How one child ended, as the owner learns it from ChildProcesses.
struct ChildExit {
  pid_t pid = 0;
  int status = 0;       // as waitpid() reports it: WIFEXITED, WTERMSIG and friends apply
  bool killed = false;  // stop() SIGKILLed it at its last deadline
};

// The child-process lifecycle, once for every process model (fork's child per connection,
// prefork's workers): fork a child that runs a body and always _exits, reap the ones that
// end, stop them all in escalating steps. Owns its children: the destructor SIGKILLs and reaps
// any left, so none outlives its owner as a zombie or an orphan.
//
// Reaping is the owner's job, on SIGCHLD: it watches stop_signal::child_fd() (the constructor
// opts in with stop_signal::watch_children()) and calls reap(). This is the process's reaper:
// waitpid(-1) also collects children that are not ours, and reports only ours.
//
// Parent's side, one thread only (the one that forks, which must be the only thread then:
// fork() copies the calling thread alone, and a lock another thread held stays locked in the
// child). Not thread-safe.
class ChildProcesses {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    // What a child receives when its parent dies (PR_SET_PDEATHSIG): SIGTERM lets a fork
    // child drain its connection, SIGKILL ends a prefork worker outright.
    int parent_death_signal = SIGTERM;
    // The exit status of a child whose body threw. prefork makes it "could not start".
    int exception_status = 1;
    // How the log names a child ("connection child", "worker").
    std::string_view name = "child";
  };
  // In the parent, from reap() and stop(), once per child of ours that ended; the child is no
  // longer counted when this runs, and it may spawn() a replacement (except during stop()).
  using OnExit = std::function<void(const ChildExit&)>;

  // How long stop() usually leaves between SIGTERM and SIGKILL.
  static constexpr std::chrono::seconds kKillGrace{1};

  ChildProcesses(Options options, OnExit on_exit);
  ~ChildProcesses();
  ChildProcesses(const ChildProcesses&) = delete;
  ChildProcesses& operator=(const ChildProcesses&) = delete;

  // Forks a child that runs `body` and _exits with what it returns; it never returns or
  // unwinds into the parent's objects. Returns the child's pid, or -1 with errno set when
  // fork() failed: a refused connection or an empty slot, not an exception in an accept loop.
  // Needs stop_signal::install() to have run: the child installs a fresh copy of it.
  [[nodiscard]] pid_t spawn(const std::function<int()>& body);

  // On a readable stop_signal::child_fd(): reaps every child that has exited.
  void reap();

  // Escalating stop. Waits (reaping) until `term_at`, SIGTERMs the children left, waits until
  // `kill_at`, then SIGKILLs the rest and reaps them. Returns early once none is left.
  // fork: stop(drain, drain + kKillGrace); prefork (workers drain on their own SIGTERM):
  // stop(now, now + drain_timeout + kKillGrace).
  void stop(Clock::time_point term_at, Clock::time_point kill_at);

  [[nodiscard]] bool empty() const noexcept { return pids_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return pids_.size(); }

 private:
  // Reaps until none is left (true) or `deadline` passes (false), woken by SIGCHLD.
  bool wait_until(Clock::time_point deadline);
  void signal_all(int signal_number) const noexcept;
  [[noreturn]] void run_child(pid_t parent, const std::function<int()>& body) const noexcept;
  // Debug builds: the children are touched on the thread that created this object only.
  void assert_owner_thread() const noexcept { assert(std::this_thread::get_id() == owner_); }

  Options options_;
  OnExit on_exit_;
  std::unordered_set<pid_t> pids_;  // alive or not yet reaped
  std::thread::id owner_ = std::this_thread::get_id();
};

}  // namespace polyecho
