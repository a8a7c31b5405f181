// epoll: the shared Reactor on epoll(7), the default model. Level-triggered unless
// --edge-triggered (EPOLLET: the connection code then reads and accepts until EAGAIN).
//
// --workers N runs N independent reactor threads, each with its own epoll instance and its
// own SO_REUSEPORT listener on the same port: the kernel hashes each new connection to one
// listener, so exactly one worker wakes for it (no thundering herd) and no lock is shared.
// The alternative, one listener in every epoll with EPOLLEXCLUSIVE, wakes "one or more"
// waiters and keeps a shared accept queue; docs/REACTOR.md compares the two.
#include <algorithm>

#include "app/backend_registry.hpp"
#include "reactor/reactor.hpp"

namespace polyecho {
namespace {

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(const ServerConfig& config)
      : workers_(std::max(config.workers, 1u)), edge_triggered_(config.edge_triggered) {}

  void adjust_listener(ListenerOptions& options) const override {
    if (workers_ > 1) options.reuse_port = true;  // so sibling listeners can join the port
  }

  int run(ServerContext& context) override {
    return run_reactors(context, workers_, [this] { return make_epoll_poller(edge_triggered_); });
  }

 private:
  unsigned workers_;
  bool edge_triggered_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "epoll",
    .description = "reactor on epoll(7); --edge-triggered, --workers N threads with SO_REUSEPORT",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "--workers",
    .supports_offload = true,
    .default_rank = 100,
    .variants = {"--edge-triggered", "--workers 2", "--edge-triggered --workers 2", "--offload 2",
                 "--edge-triggered --workers 2 --offload 2 --offload-queue 1"},
    .create = [](const ServerConfig& config) { return std::make_unique<EpollBackend>(config); },
}};

}  // namespace
}  // namespace polyecho
