#include "core/worker_pool.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "core/accept_loop.hpp"
#include "core/blocking_connection.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

unsigned pool_size(const ServerConfig& config, unsigned per_core) {
  if (config.workers > 0) return config.workers;
  return std::max(4u, std::thread::hardware_concurrency() * per_core);
}

void serve_pooled(unique_fd connection, PeerLease lease, const PoolContext& pool) {
  const PeerLease held = std::move(lease);  // given back on every way out
  const int fd = connection.get();
  if (!pool.active.add(fd)) {
    reject_connection(std::move(connection), pool.stats);
    return;
  }
  if (pool.held != nullptr) pool.held->fetch_add(1, std::memory_order_relaxed);
  {
    ActiveGuard guard(pool.stats);
    serve_blocking(fd, pool.config, pool.stats, {.input_cut = pool.active.input_cut()});
  }
  if (pool.held != nullptr) pool.held->fetch_sub(1, std::memory_order_relaxed);
  pool.active.remove(fd);  // before close, so the drain never shuts down a reused number
}

void accept_and_serve(int shared_listener, const PoolContext& pool) {
  BlockingAcceptLoop loop(shared_listener, pool.stats);
  loop.run([&](unique_fd connection) {
    auto lease = pool.peers.admit(connection.get());
    const auto active = pool.stats.active.load(std::memory_order_relaxed);
    if (!lease || active >= static_cast<std::int64_t>(pool.config.max_connections)) {
      reject_connection(std::move(connection), pool.stats);
      return;
    }
    serve_pooled(std::move(connection), std::move(*lease), pool);
  });
}

void wait_for_stop() {
  while (!stop_signal::requested()) {
    pollfd fd{stop_signal::stop_fd(), POLLIN, 0};
    if (::poll(&fd, 1, -1) < 0 && errno != EINTR) throw_errno("poll");
  }
}

WorkerThreads::WorkerThreads(unsigned count, const std::function<void(unsigned)>& body) {
  threads_.reserve(count);
  running_ = count;
  for (unsigned i = 0; i < count; ++i) {
    threads_.emplace_back([this, body, i] {
      stop_signal::block_in_this_thread();
      body(i);
      std::lock_guard lock(mutex_);
      if (--running_ == 0) all_returned_.notify_all();
    });
  }
}

void WorkerThreads::drain(ActiveConnections& active, std::chrono::milliseconds drain_timeout) {
  const auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  bool returned;
  {
    std::unique_lock lock(mutex_);
    returned = all_returned_.wait_until(lock, deadline, [this] { return running_ == 0; });
  }
  if (!returned) active.end_drain(ActiveConnections::kFlushGrace);
  join();
}

void WorkerThreads::join() {
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

}  // namespace polyecho
