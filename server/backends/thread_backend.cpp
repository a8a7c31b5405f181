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
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "app/backend_registry.hpp"
#include "blocking/accept_loop.hpp"
#include "blocking/active_connections.hpp"
#include "blocking/blocking_connection.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/threads.hpp"
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

    DrainTimeline timeline(context.config.drain_timeout);
    timeline.stop(DrainTimeline::Clock::now());
    if (!active_.wait_until_empty(timeline.input_cut_at())) active_.end_drain(timeline.close_at());
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
    auto admitted = context.admission.admit(std::move(connection));
    if (!admitted) return;
    // The connection crosses into the thread by address (one allocation, beside the thread's
    // own stack): if the thread cannot start, its copy of the lambda is destroyed without
    // touching the connection, which the catch below still refuses properly.
    auto owned = std::make_unique<AdmittedConnection>(std::move(*admitted));
    AdmittedConnection* handed = owned.get();
    const int fd = handed->fd.get();
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_id_++;
    active_.add(fd);
    try {
      threads_.emplace(id, start_thread([this, &context, id, handed] {
                         {
                           const std::unique_ptr<AdmittedConnection> conn(handed);
                           serve_blocking(conn->fd.get(), context.config, context.stats,
                                          {.input_cut = active_.input_cut()});
                           active_.remove(conn->fd.get());
                         }  // the ticket goes back, then the connection closes
                         finish(id);
                       }));
      (void)owned.release();  // the thread owns it now
    } catch (const std::system_error& e) {
      // No thread to serve it (RLIMIT_NPROC, memory): refuse it rather than leave it hanging.
      active_.remove(fd);
      spdlog::warn("cannot start a connection thread: {}", e.what());
      owned->ticket.refuse(std::move(owned->fd));
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
    .threaded = true,
    .threads_flag = "",
    .default_rank = 10,
    .variants = {},
    .create = [](const ServerConfig&) { return std::make_unique<ThreadBackend>(); },
}};

}  // namespace
}  // namespace polyecho
