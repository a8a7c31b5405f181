#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "lifecycle/child_processes.hpp"
#include "lifecycle/peer_limit.hpp"
#include "polyecho/stats.hpp"

namespace polyecho {

// A small supervisor for preforked workers (master side): forks `count` workers before any
// connection, reaps the ones that die and forks a replacement in the same slot, and stops
// them all on shutdown. The forking, reaping and killing are the shared child-process
// lifecycle (ChildProcesses, which owns the processes: none outlives this object); the policy
// is this class's: slots, respawning, and the accounting of what a dead worker held.
// Master thread only; the master must be single-threaded when it forks.
//
// Each worker starts with a fresh stop_signal (SIGTERM from the master starts its drain),
// ignores SIGINT (a terminal's Ctrl-C reaches the whole group; the master relays it as
// SIGTERM) and dies with the master (PR_SET_PDEATHSIG SIGKILL, plus a getppid() check for a
// master that died before prctl took effect).
class WorkerProcesses {
 public:
  struct Hooks {
    // In the child; its return value is the worker's exit status. kSetupFailed stops the
    // server instead of being replaced in a loop.
    std::function<int(unsigned slot)> run;
    std::function<void(unsigned slot)> before_fork;            // master, optional
    std::function<void(unsigned slot, pid_t pid)> after_fork;  // master, optional
    std::function<void(unsigned slot)> on_exit;                // master, optional
  };
  static constexpr int kSetupFailed = 3;

  WorkerProcesses(unsigned count, Hooks hooks, Stats& stats, PeerLimit& peers);
  ~WorkerProcesses();
  WorkerProcesses(const WorkerProcesses&) = delete;
  WorkerProcesses& operator=(const WorkerProcesses&) = delete;

  void start_all();
  // On SIGCHLD (stop_signal::child_fd()): reaps every exited worker and, unless stopping,
  // forks its replacement.
  void reap();
  // The master's loop when it has nothing else to watch: reaps (and replaces) on SIGCHLD until
  // a stop is requested.
  void supervise_until_stop();
  // SIGTERM to all; waits for them until drain_timeout plus a grace second (they cut their own
  // connections at drain_timeout), then SIGKILLs and reaps the rest.
  void stop(std::chrono::milliseconds drain_timeout);

  // Connections a worker holds, in shared memory: a worker that dies without unwinding leaves
  // them counted active, and the master takes them back out of Stats when it reaps it.
  [[nodiscard]] std::atomic<std::int64_t>& held(unsigned slot) const noexcept {
    return held_[slot];
  }
  [[nodiscard]] pid_t pid(unsigned slot) const noexcept { return pids_[slot]; }

 private:
  void spawn(unsigned slot);
  void on_exited(const ChildExit& exit);

  Hooks hooks_;
  Stats& stats_;
  PeerLimit& peers_;
  std::vector<pid_t> pids_;          // by slot; 0 when the slot is empty
  std::atomic<std::int64_t>* held_;  // MAP_SHARED array, one per slot
  bool stopping_ = false;
  ChildProcesses children_;  // last: its workers are killed and reaped before the rest goes
};

}  // namespace polyecho
