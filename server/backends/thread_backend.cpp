// thread: one thread per connection, blocking IO. Simple and fast for few connections; each
// thread costs a kernel task and a stack, so it is bounded by --max-connections (and by
// pid_max / RLIMIT_NPROC on the machine).
//
// Threads: the main thread accepts and runs the drain; every connection thread owns its
// socket. A finished thread parks its id in `finished_` and pokes `reap_`, and the main thread
// joins it, so finished threads never pile up.
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>

#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "core/accept_loop.hpp"
#include "core/active_connections.hpp"
#include "core/blocking_connection.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {
namespace {

class ThreadBackend final : public Backend {
 public:
  int run(ServerContext& context) override {
    reap_ = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!reap_) throw_errno("eventfd");
    BlockingAcceptLoop loop(context);
    loop.watch_extra(reap_.get(), [this] { join_finished(); });
    loop.run([&](unique_fd connection) { start(context, std::move(connection)); });

    const auto deadline = std::chrono::steady_clock::now() + context.config.drain_timeout;
    if (!active_.wait_until_empty(deadline)) active_.end_drain(ActiveConnections::kFlushGrace);
    std::map<std::uint64_t, std::thread> remaining;
    {
      std::lock_guard lock(mutex_);  // not held while joining: exiting threads take it in finish()
      remaining.swap(threads_);
    }
    for (auto& [id, thread] : remaining) thread.join();
    return 0;
  }

 private:
  void start(ServerContext& context, unique_fd connection) {
    auto lease = context.peers.admit(connection.get());
    if (!lease || active_.size() >= context.config.max_connections) {
      reject_connection(std::move(connection), context.stats);
      return;
    }
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_id_++;
    // The raw number crosses into the thread: if std::thread fails, its copy of the lambda is
    // destroyed, and that must not close a descriptor the catch below still refuses.
    const int fd = connection.release();
    active_.add(fd);
    try {
      threads_.emplace(id,
                       std::thread([this, &context, id, fd, peer = std::move(*lease)]() mutable {
                         unique_fd conn(fd);
                         {
                           // Given back before the close, so a peer that saw our FIN finds
                           // its place free.
                           const PeerLease held = std::move(peer);
                           ActiveGuard guard(context.stats);
                           serve_blocking(conn.get(), context.config, context.stats,
                                          {.input_cut = active_.input_cut()});
                           active_.remove(conn.get());
                         }
                         conn.reset();
                         finish(id);
                       }));
    } catch (const std::system_error& e) {
      // No thread to serve it (RLIMIT_NPROC, memory): refuse it rather than leave it hanging.
      active_.remove(fd);
      spdlog::warn("cannot start a connection thread: {}", e.what());
      reject_connection(unique_fd(fd), context.stats);
    }
  }

  void finish(std::uint64_t id) {
    {
      std::lock_guard lock(mutex_);
      finished_.push_back(id);
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto ignored = ::write(reap_.get(), &one, sizeof one);
  }

  void join_finished() {
    std::uint64_t count = 0;
    [[maybe_unused]] auto ignored = ::read(reap_.get(), &count, sizeof count);
    std::vector<std::thread> done;
    {
      std::lock_guard lock(mutex_);
      for (std::uint64_t id : finished_) {
        if (auto it = threads_.find(id); it != threads_.end()) {
          done.push_back(std::move(it->second));
          threads_.erase(it);
        }
      }
      finished_.clear();
    }
    for (auto& thread : done) thread.join();  // outside the lock: they may still be exiting
  }

  ActiveConnections active_;
  unique_fd reap_;
  std::mutex mutex_;  // guards threads_, finished_, next_id_
  std::map<std::uint64_t, std::thread> threads_;
  std::vector<std::uint64_t> finished_;
  std::uint64_t next_id_ = 0;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "thread",
    .description = "a thread per connection with blocking IO; bounded by --max-connections",
    .uses_workers = false,
    .serves_concurrently = true,
    .default_rank = 10,
    .variants = {},
    .create = [](const ServerConfig&) { return std::make_unique<ThreadBackend>(); },
}};

}  // namespace
}  // namespace polyecho
