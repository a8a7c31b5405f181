// uring: completion-based IO with io_uring. The kernel performs accept, recv and send and
// posts their results; the worker only reacts to completions (see server/uring/).
// --workers N runs N rings on N threads, each with its own SO_REUSEPORT listener, so the
// kernel spreads connections across them and no state is shared but Stats.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>
#include <vector>

#include "polyecho/stop_signal.hpp"
#include "uring/uring_worker.hpp"

namespace polyecho {
namespace {

class UringBackend final : public Backend {
 public:
  void adjust_listener(ListenerOptions& options) const override { options.reuse_port = true; }

  int run(ServerContext& context) override {
    const unsigned count = std::max(1u, context.config.workers);
    // Rings are set up here, on the main thread, so a failure is reported before serving.
    std::vector<std::unique_ptr<uring::UringWorker>> workers;
    workers.push_back(std::make_unique<uring::UringWorker>(context, std::move(context.listener)));
    for (unsigned i = 1; i < count; ++i) {
      ListenerOptions options{.backlog = context.config.backlog, .reuse_port = true};
      workers.push_back(
          std::make_unique<uring::UringWorker>(context, make_listener(context.bound, options)));
    }
    std::atomic<bool> failed{false};
    auto serve = [&failed](uring::UringWorker& worker) {
      try {
        worker.run();
      } catch (const std::exception& e) {
        spdlog::error("uring worker: {}", e.what());
        failed = true;
        stop_signal::request();  // the siblings drain and stop too
      }
    };
    std::vector<std::jthread> threads;
    {
      // Signals must land on the main thread (worker 0), whose poll on the stop fd wakes all.
      sigset_t all, previous;
      ::sigfillset(&all);
      ::pthread_sigmask(SIG_BLOCK, &all, &previous);
      for (unsigned i = 1; i < count; ++i) threads.emplace_back(serve, std::ref(*workers[i]));
      ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    }
    serve(*workers[0]);
    threads.clear();  // joins
    return failed ? 1 : 0;
  }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "uring",
    .description =
        "io_uring completions: multishot accept, recv into provided buffers; --workers rings",
    .uses_workers = true,
    .serves_concurrently = true,
    .default_rank = 5,  // never the default: io_uring may be disabled at run time
    .variants = {"--workers 2"},
    .create =
        [](const ServerConfig& config) {
          // Probe with a tiny ring: if io_uring is unusable here, say so before binding.
          uring::Ring probe(
              uring::RingOptions{.sq_entries = 2, .cq_entries = 4, .sqpoll = config.sqpoll});
          return std::make_unique<UringBackend>();
        },
}};

}  // namespace
}  // namespace polyecho
