// uring: completion-based IO with io_uring. The kernel performs accept, recv and send and
// posts their results; the worker only reacts to completions (see server/uring/).
// --workers N runs N rings on N threads, each with its own SO_REUSEPORT listener, so the
// kernel spreads connections across them and no state is shared but Stats.
#include <algorithm>
#include <memory>
#include <vector>

#include "app/backend_registry.hpp"
#include "lifecycle/threads.hpp"
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
    // Worker 0 runs on this thread, which keeps the signals; its poll on the stop fd, like
    // every other worker's, wakes it.
    return run_loop_threads(count, [&workers](std::size_t i) { workers[i]->run(); });
  }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "uring",
    .description =
        "io_uring completions: multishot accept, recv into provided buffers; --workers rings",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "--workers",
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
