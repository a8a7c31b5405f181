// epoll: the shared Reactor on epoll(7), the default model. Level-triggered unless
// --edge-triggered (EPOLLET: the connection code then reads and accepts until EAGAIN).
//
// --workers N runs N independent reactor threads, each with its own epoll instance, all
// watching the one listening socket with EPOLLEXCLUSIVE: a new connection wakes one worker
// (sometimes a few, never all: no thundering herd), which drains the shared accept queue.
// One queue keeps connections in arrival order, so --max-connections admits the first comers
// and a busy worker leaves new connections to idle ones. SO_REUSEPORT listeners per worker
// were tried first: the kernel hashes each connection to a fixed worker, so a late connection
// on an idle worker can take the last slot from an earlier one queued on a busy worker (the
// conformance suite caught it). docs/REACTOR.md has the figures.
#include <algorithm>

#include "core/reactor.hpp"

namespace polyecho {
namespace {

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(const ServerConfig& config)
      : workers_(std::max(config.workers, 1u)), edge_triggered_(config.edge_triggered) {}

  int run(ServerContext& context) override {
    return run_reactors(context, workers_, [this] { return make_epoll_poller(edge_triggered_); });
  }

 private:
  unsigned workers_;
  bool edge_triggered_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "epoll",
    .description = "reactor on epoll(7); --edge-triggered; --workers N threads sharing the "
                   "listener (EPOLLEXCLUSIVE)",
    .uses_workers = true,
    .serves_concurrently = true,
    .default_rank = 100,
    .variants = {"--edge-triggered", "--workers 2", "--edge-triggered --workers 2"},
    .create = [](const ServerConfig& config) { return std::make_unique<EpollBackend>(config); },
}};

}  // namespace
}  // namespace polyecho
