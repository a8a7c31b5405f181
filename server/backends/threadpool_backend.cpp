// threadpool: a fixed set of threads created once (--workers, default 2 per core, at least 4),
// each serving one connection at a time with blocking IO. Two ways to feed them
// (--pool-strategy):
//  - queue (default): the main thread accepts and pushes connections into a bounded queue
//    (--queue-limit); an idle thread pops one and serves it to the end. A full queue means
//    the connection is closed at once and counted as rejected.
//  - accept: no queue; every thread blocks in poll+accept on the shared listener (the
//    prethreaded server of UNP ch. 30) and the main thread only waits for the stop.
// --max-connections counts every connection the server holds: served plus queued.
// Threads: the main thread accepts (queue) or idles (accept), and runs the drain; pool threads
// own the connection they serve. Signals are blocked in pool threads.
#include <sys/socket.h>

#include "app/backend_registry.hpp"
#include "blocking/accept_loop.hpp"
#include "blocking/connection_queue.hpp"
#include "blocking/worker_pool.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {
namespace {

class ThreadPoolBackend final : public Backend {
 public:
  int run(ServerContext& context) override {
    const PoolContext pool{context.config, context.stats, context.admission, active_};
    const unsigned workers = pool_size(context.config, 2);
    if (context.config.pool_strategy == PoolStrategy::accept) {
      const int listener = context.listener.get();
      WorkerThreads threads(workers, [&](unsigned) { accept_and_serve(listener, pool); });
      wait_for_stop();
      // Wakes every thread still in accept() and makes the kernel refuse new connections;
      // the descriptor itself is closed only after the threads are gone.
      ::shutdown(listener, SHUT_RDWR);
      threads.drain(active_, context.config.drain_timeout);
      return 0;
    }
    ConnectionQueue queue(context.config.queue_limit);
    WorkerThreads threads(workers, [&](unsigned) {
      while (auto connection = queue.pop()) serve_pooled(std::move(*connection), pool);
    });
    BlockingAcceptLoop loop(context);
    loop.run([&](unique_fd connection) {
      // Admitted here, not when a thread pops it: a queued connection holds its address's
      // place and its slot too, so one address cannot fill the queue, and --max-connections
      // counts queued and served alike.
      auto admitted = context.admission.admit(std::move(connection));
      if (admitted && !queue.try_push(*admitted)) admitted->ticket.refuse(std::move(admitted->fd));
    });
    // Queued connections are still served during the drain; whatever is popped after the
    // deadline is closed at once (serve_pooled sees the cut).
    queue.close();
    threads.drain(active_, context.config.drain_timeout);
    return 0;
  }

 private:
  ActiveConnections active_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "threadpool",
    .description = "a fixed pool of blocking threads fed by a bounded queue or shared accept()",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = true,
    .threads_flag = "--workers",
    .default_rank = 5,
    // Three threads at least: the conformance scenarios hold three clients open at once.
    .variants = {"--workers 3", "--pool-strategy accept", "--pool-strategy accept --workers 3"},
    .create = [](const ServerConfig&) { return std::make_unique<ThreadPoolBackend>(); },
}};

}  // namespace
}  // namespace polyecho
