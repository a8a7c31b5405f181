#include "blocking/worker_pool.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "blocking/accept_loop.hpp"
#include "blocking/blocking_connection.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/threads.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

unsigned pool_size(const ServerConfig& config, unsigned per_core) {
  if (config.workers > 0) return config.workers;
  return std::max(4u, std::thread::hardware_concurrency() * per_core);
}

void serve_pooled(AdmittedConnection connection, const PoolContext& pool) {
  const int fd = connection.fd.get();
  if (!pool.active.add(fd)) {
    connection.ticket.refuse(std::move(connection.fd));
    return;
  }
  serve_blocking(fd, pool.config, pool.stats, {.input_cut = pool.active.input_cut()});
  pool.active.remove(fd);  // before close, so the drain never shuts down a reused number
}  // the ticket goes back here, then the connection closes (AdmittedConnection's order)

void accept_and_serve(int shared_listener, const PoolContext& pool) {
  BlockingAcceptLoop loop(shared_listener, pool.stats);
  loop.run([&](unique_fd connection) {
    if (auto admitted = pool.admission.admit(std::move(connection)))
      serve_pooled(std::move(*admitted), pool);
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
    threads_.push_back(start_thread([this, body, i] {
      body(i);
      std::lock_guard lock(mutex_);
      if (--running_ == 0) all_returned_.notify_all();
    }));
  }
}

void WorkerThreads::drain(ActiveConnections& active, std::chrono::milliseconds drain_timeout) {
  DrainTimeline timeline(drain_timeout);
  timeline.stop(DrainTimeline::Clock::now());
  bool returned;
  {
    std::unique_lock lock(mutex_);
    returned =
        all_returned_.wait_until(lock, timeline.input_cut_at(), [this] { return running_ == 0; });
  }
  if (!returned) active.end_drain(timeline.close_at());
  join();
}

void WorkerThreads::join() {
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

}  // namespace polyecho
