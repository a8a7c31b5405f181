// uring: completion-based IO with io_uring. The kernel performs accept, recv and send and
// posts their results; the worker only reacts to completions (see server/uring/).
// --workers N runs N rings on N threads, by default each with its own SO_REUSEPORT listener,
// so the kernel spreads connections across them and no state is shared but Stats. With
// --acceptor shared every ring has a multishot accept on the one listener; with main an
// acceptor thread fills each ring's inbox, which the ring polls (topology/loop_topology.hpp).
#include <algorithm>
#include <memory>
#include <vector>

#include "app/backend_registry.hpp"
#include "lifecycle/threads.hpp"
#include "topology/loop_topology.hpp"
#include "uring/uring_worker.hpp"

namespace polyecho {
namespace {

constexpr AcceptorMode kUringAcceptor = AcceptorMode::reuseport;

class UringBackend final : public Backend {
 public:
  explicit UringBackend(const ServerConfig& config)
      : config_(config), workers_(std::max(1u, config.workers)) {}

  void adjust_listener(ListenerOptions& options) const override {
    adjust_for_topology(options, config_, kUringAcceptor, workers_);
  }

  int run(ServerContext& context) override {
    // Rings are set up here, on the main thread, so a failure is reported before serving.
    LoopTopology topology(context, workers_, kUringAcceptor);
    std::vector<std::unique_ptr<uring::UringWorker>> workers;
    for (unsigned i = 0; i < workers_; ++i) {
      workers.push_back(std::make_unique<uring::UringWorker>(context, topology.source(i)));
    }
    // Every worker's poll on the stop fd wakes it, whichever thread it runs on.
    return topology.run([&workers](std::size_t i) { workers[i]->run(); });
  }

 private:
  const ServerConfig& config_;
  unsigned workers_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "uring",
    .description =
        "io_uring completions: multishot accept, recv into provided buffers; --workers rings",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "--workers",
    .loop_model = true,
    .default_acceptor = kUringAcceptor,
    .default_rank = 5,  // never the default: io_uring may be disabled at run time
    .variants = {"--workers 2", "--acceptor main --workers 2", "--acceptor shared --workers 2",
                 "--processes 2"},
    .create =
        [](const ServerConfig& config) {
          // Probe with a tiny ring: if io_uring is unusable here, say so before binding.
          uring::Ring probe(
              uring::RingOptions{.sq_entries = 2, .cq_entries = 4, .sqpoll = config.sqpoll});
          return std::make_unique<UringBackend>(config);
        },
}};

}  // namespace
}  // namespace polyecho
