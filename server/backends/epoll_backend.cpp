// epoll: the shared Reactor on epoll(7), the default model. Level-triggered unless
// --edge-triggered (EPOLLET: the connection code then reads and accepts until EAGAIN).
//
// --workers N runs N independent reactor threads, each with its own epoll instance. By default
// each has its own SO_REUSEPORT listener on the same port: the kernel hashes each new
// connection to one listener, so exactly one worker wakes for it (no thundering herd) and no
// lock is shared. --acceptor shared (one listener in every epoll, EPOLLEXCLUSIVE) and main (an
// acceptor thread feeding the reactors) are the alternatives; docs/TOPOLOGIES.md compares them.
#include <algorithm>

#include "app/backend_registry.hpp"
#include "reactor/reactor.hpp"
#include "topology/loop_topology.hpp"

namespace polyecho {
namespace {

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(const ServerConfig& config)
      : config_(config),
        workers_(std::max(config.workers, 1u)),
        edge_triggered_(config.edge_triggered) {}

  void adjust_listener(ListenerOptions& options) const override {
    adjust_for_topology(options, config_, kReactorAcceptor, workers_);
  }

  int run(ServerContext& context) override {
    return run_reactors(context, workers_, [this] { return make_epoll_poller(edge_triggered_); });
  }

 private:
  const ServerConfig& config_;
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
    .loop_model = true,
    .default_acceptor = kReactorAcceptor,
    .supports_offload = true,
    .default_rank = 100,
    // The topologies (docs/TOPOLOGIES.md): main-sub reactors, one shared listener, worker
    // processes fed by reuseport (the default) or by the master (fd passing; poll's variant
    // covers a shared listener across processes), and two loops sharing one offload pool
    // whose queue holds one job (backpressure on every other message).
    .variants = {"--edge-triggered", "--workers 2", "--edge-triggered --workers 2",
                 "--acceptor main --workers 2", "--acceptor shared --workers 2", "--processes 2",
                 "--processes 2 --acceptor main",
                 "--edge-triggered --workers 2 --offload 2 --offload-queue 1"},
    .create = [](const ServerConfig& config) { return std::make_unique<EpollBackend>(config); },
}};

}  // namespace
}  // namespace polyecho
