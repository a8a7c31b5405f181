// prefork: a master and --workers N worker processes (default: one per core, at least 4),
// forked before any connection and kept alive by a supervisor (WorkerProcesses). Each worker
// serves one connection at a time with blocking IO, or --worker-threads M at once. How a
// connection reaches a worker (--accept-strategy):
//  - shared (default): every worker blocks in poll+accept on the inherited listener.
//  - reuseport: each worker has its own SO_REUSEPORT listener on the same port and the kernel
//    spreads connections by a hash of the addresses; slot 0 uses the master's listener so
//    connections hashed to it wait in its backlog while a replacement starts.
//  - fdpass: only the master accepts, and hands each connection to an idle worker over a Unix
//    socket (FdDispatcher); --queue-limit bounds the wait for one.
// Processes: the master never serves; it accepts (fdpass only), reaps and replaces dead
// workers, and on SIGTERM tells every worker to drain (WorkerProcesses::stop). Stats are in
// shared memory, so the workers' counts add up in the master's final line.
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <functional>
#include <memory>

#include "app/backend_registry.hpp"
#include "blocking/accept_loop.hpp"
#include "blocking/worker_pool.hpp"
#include "polyecho/stop_signal.hpp"
#include "process/fd_dispatcher.hpp"
#include "process/worker_processes.hpp"

namespace polyecho {
namespace {

class PreforkBackend final : public Backend {
 public:
  explicit PreforkBackend(const ServerConfig& config) : config_(config) {}

  void adjust_listener(ListenerOptions& options) const override {
    options.reuse_port = config_.accept_strategy == AcceptStrategy::reuseport;
  }

  int run(ServerContext& context) override {
    const unsigned workers = pool_size(context.config, 1);
    return context.config.accept_strategy == AcceptStrategy::fdpass
               ? run_fdpass(context, workers)
               : run_accepting(context, workers);
  }

 private:
  // shared and reuseport: the workers accept, the master only supervises.
  int run_accepting(ServerContext& context, unsigned workers) {
    std::unique_ptr<WorkerProcesses> processes;
    WorkerProcesses::Hooks hooks;
    hooks.run = [&](unsigned slot) {
      unique_fd own_listener;
      if (context.config.accept_strategy == AcceptStrategy::reuseport && slot > 0) {
        try {
          own_listener =
              make_listener(context.bound, {.backlog = context.config.backlog, .reuse_port = true});
        } catch (const std::system_error& e) {
          spdlog::error("worker {}: {}", slot, e.what());
          return WorkerProcesses::kSetupFailed;
        }
        context.listener.reset();
      }
      const int listener = own_listener ? own_listener.get() : context.listener.get();
      return serve_in_worker(context, processes->held(slot),
                             [&](const PoolContext& pool) { accept_and_serve(listener, pool); });
    };
    processes = std::make_unique<WorkerProcesses>(workers, hooks, context.stats, context.peers);
    processes->start_all();
    processes->supervise_until_stop();
    // Shutting the shared socket down (not just closing our copy) refuses new connections at
    // once for everybody; reuseport siblings close when their workers exit.
    ::shutdown(context.listener.get(), SHUT_RDWR);
    processes->stop(context.config.drain_timeout);
    return 0;
  }

  int run_fdpass(ServerContext& context, unsigned workers) {
    FdDispatcher dispatcher(workers, context.config.worker_threads, context.config,
                            context.admission);
    std::unique_ptr<WorkerProcesses> processes;
    WorkerProcesses::Hooks hooks;
    hooks.before_fork = [&](unsigned slot) { dispatcher.before_fork(slot); };
    hooks.after_fork = [&](unsigned slot, pid_t pid) { dispatcher.after_fork(slot, pid); };
    hooks.on_exit = [&](unsigned slot) { dispatcher.on_worker_exit(slot); };
    hooks.run = [&](unsigned slot) {
      context.listener.reset();
      dispatcher.enter_worker(slot);
      return serve_in_worker(context, processes->held(slot),
                             [&](const PoolContext& pool) { dispatcher.receive_and_serve(pool); });
    };
    processes = std::make_unique<WorkerProcesses>(workers, hooks, context.stats, context.peers);
    processes->start_all();
    BlockingAcceptLoop loop(context);
    loop.watch_extra(stop_signal::child_fd(), [&] { processes->reap(); });
    loop.watch_extra(dispatcher.done_fd(), [&] { dispatcher.on_done(); });
    loop.run([&](unique_fd connection) { dispatcher.dispatch(std::move(connection)); });
    dispatcher.reject_queued();
    processes->stop(context.config.drain_timeout);
    return 0;
  }

  // The worker process's side, common to every strategy: --worker-threads threads each run
  // `serve` until the stop (SIGTERM from the master), then the drain.
  static int serve_in_worker(ServerContext& context, std::atomic<std::int64_t>& held,
                             const std::function<void(const PoolContext&)>& serve) {
    // This process's tickets also count in its slot's `held`, where the master can read them
    // to account for a worker killed mid-connection.
    context.admission.count_held_in(&held);
    ActiveConnections active;
    const PoolContext pool{context.config, context.stats, context.admission, active};
    WorkerThreads threads(context.config.worker_threads, [&](unsigned) { serve(pool); });
    wait_for_stop();
    threads.drain(active, context.config.drain_timeout);
    return 0;
  }

  const ServerConfig& config_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "prefork",
    .description = "worker processes forked up front; shared accept, SO_REUSEPORT or fd passing",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "--worker-threads",
    .default_rank = 4,
    // reuseport hashes clients to workers regardless of who is idle, and separate listeners
    // give no order between near-simultaneous clients (which one --max-connections refuses),
    // so its variant keeps one worker with spare threads for the conformance semantics to hold.
    .variants = {"--accept-strategy reuseport --workers 1 --worker-threads 3",
                 "--accept-strategy fdpass", "--workers 2 --worker-threads 2",
                 "--accept-strategy fdpass --worker-threads 2"},
    .create = [](const ServerConfig& config) { return std::make_unique<PreforkBackend>(config); },
}};

}  // namespace
}  // namespace polyecho
