#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/active_connections.hpp"
#include "core/peer_limit.hpp"
#include "core/server_config.hpp"
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
  PeerLimit& peers;
  ActiveConnections& active;  // for the drain: the owner cuts what is left at the deadline
  // Prefork workers: this process's share of Stats::active, kept where the master can read it
  // (WorkerProcesses::held) so that a worker killed mid-connection is accounted for.
  std::atomic<std::int64_t>* held = nullptr;
};

// Serves one connection a pool admitted, on the calling thread, until it ends: counted as
// accepted and active, registered for the drain. Closes it at once (counted as rejected) if
// the drain deadline already cut everything. `lease` (--max-per-ip) is given back at the end.
void serve_pooled(unique_fd connection, PeerLease lease, const PoolContext& pool);

// The prethreaded/preforked accept loop (UNP ch. 30): block in poll+accept on a listener that
// other threads or processes share, serve the connection, repeat, until a stop is requested.
// --max-per-ip is checked first, then --max-connections against the shared active count;
// racing acceptors can overshoot the latter by at most one connection each.
void accept_and_serve(int shared_listener, const PoolContext& pool);

// Blocks the calling thread until stop_signal::requested().
void wait_for_stop();

// A fixed set of threads created once. Signals are blocked in them so SIGINT/SIGTERM land on
// the thread that owns the pool. The destructor joins. Not copyable; owner thread only.
class WorkerThreads {
 public:
  WorkerThreads(unsigned count, const std::function<void(unsigned index)>& body);
  ~WorkerThreads() { join(); }
  WorkerThreads(const WorkerThreads&) = delete;
  WorkerThreads& operator=(const WorkerThreads&) = delete;

  // After a stop request: gives the bodies until now + drain_timeout to return, then cuts the
  // connections still in `active` (which wakes threads blocked in recv/send) and joins.
  void drain(ActiveConnections& active, std::chrono::milliseconds drain_timeout);
  void join();

 private:
  std::mutex mutex_;
  std::condition_variable all_returned_;
  unsigned running_ = 0;  // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace polyecho
