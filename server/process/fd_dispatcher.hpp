#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "blocking/worker_pool.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// The master side of prefork's fdpass strategy: only the master accepts, and it hands each
// connection to a worker with a free serving thread over that worker's SOCK_SEQPACKET channel
// (SCM_RIGHTS). Workers report every finished connection on one shared pipe as a {slot, pid}
// record (8 bytes, below PIPE_BUF, so records never interleave), which is how the master
// knows who is idle. With no idle worker, a connection waits in a bounded queue; beyond it,
// or beyond --max-connections (served + queued), it is closed and counted as rejected.
// Owns every channel end the master holds, and the queued connections. Master thread only.
class FdDispatcher {
 public:
  FdDispatcher(unsigned workers, unsigned threads_per_worker, const ServerConfig& config,
               Admission& admission);

  // WorkerProcesses hooks, master side.
  void before_fork(unsigned slot);            // a fresh channel for the new worker
  void after_fork(unsigned slot, pid_t pid);  // drops the child's end, all threads free
  void on_worker_exit(unsigned slot);         // its in-flight connections died with it
  [[nodiscard]] int done_fd() const noexcept { return done_read_.get(); }
  // Readable done_fd(): frees threads and feeds them from the queue.
  void on_done();
  void dispatch(unique_fd connection);
  // At stop: connections still waiting are closed (rejected); nobody will serve them.
  void reject_queued();

  // In the worker, once after fork: closes every master-side descriptor it inherited.
  void enter_worker(unsigned slot);
  // In the worker, on each serving thread: serves what arrives on the channel until the stop.
  void receive_and_serve(const PoolContext& pool);

 private:
  struct Worker {
    pid_t pid = 0;
    unique_fd channel;     // master end
    unique_fd worker_end;  // only between before_fork and after_fork
    unsigned free_threads = 0;
  };
  bool hand_over(unique_fd& connection);

  const ServerConfig& config_;
  Admission& admission_;  // master: refusals only; the workers admit what they are passed
  unsigned threads_per_worker_;
  std::vector<Worker> workers_;
  std::deque<unique_fd> waiting_;
  std::size_t serving_ = 0;   // handed to workers and not reported done
  unique_fd worker_channel_;  // in a worker: its end of its channel
  std::uint32_t worker_slot_ = 0;
  unique_fd done_read_;
  unique_fd done_write_;
};

}  // namespace polyecho
