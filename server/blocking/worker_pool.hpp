#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "blocking/active_connections.hpp"
#include "lifecycle/admission.hpp"
#include "lifecycle/server_config.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Pool size when --workers is 0: `per_core` per hardware thread, but never fewer than 4, so
// that even a one- or two-core machine serves a handful of clients at once instead of making
// the third one wait behind two slow peers.
[[nodiscard]] unsigned pool_size(const ServerConfig& config, unsigned per_core);

// What every pool thread needs to serve connections; all shared, nothing owned.
struct PoolContext {
  const ServerConfig& config;
  Stats& stats;
  Admission& admission;
  ActiveConnections& active;  // for the drain: the owner cuts what is left at the deadline
};

// Serves one admitted connection on the calling thread until it ends, registered for the
// drain. Refuses it at once (counted as rejected) if the drain deadline already cut
// everything. The ticket is given back before the connection closes.
void serve_pooled(AdmittedConnection connection, const PoolContext& pool);

// The prethreaded/preforked accept loop (UNP ch. 30): block in poll+accept on a listener that
// other threads or processes share, admit, serve the connection, repeat, until a stop is
// requested.
void accept_and_serve(int shared_listener, const PoolContext& pool);

// Blocks the calling thread until stop_signal::requested().
void wait_for_stop();

// A fixed set of threads created once, with start_thread() (SIGINT/SIGTERM land on the thread
// that owns the pool). The destructor joins. Not copyable; owner thread only.
class WorkerThreads {
 public:
  WorkerThreads(unsigned count, const std::function<void(unsigned index)>& body);
  ~WorkerThreads() { join(); }
  WorkerThreads(const WorkerThreads&) = delete;
  WorkerThreads& operator=(const WorkerThreads&) = delete;

  // After a stop request, along the DrainTimeline: gives the bodies until now + drain_timeout
  // to return, then cuts the connections still in `active` (which wakes threads blocked in
  // recv/send; they get the flush grace) and joins.
  void drain(ActiveConnections& active, std::chrono::milliseconds drain_timeout);
  void join();

 private:
  std::mutex mutex_;
  std::condition_variable all_returned_;
  unsigned running_ = 0;  // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace polyecho
