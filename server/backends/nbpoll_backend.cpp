// nbpoll: the readiness loop with no readiness API. Every socket is non-blocking and each
// pass simply tries them all (accept, recv, send) and lets EAGAIN say "not yet". It shows why
// select/poll/epoll exist: a pass costs one syscall per connection whether or not anything
// happened. To not burn a core while idle, a fruitless pass makes the next one wait (50 us
// doubling to 4 ms); any progress resets the wait. So: idle CPU stays low, but the first byte
// after a quiet spell may wait up to 4 ms to be noticed (see docs/REACTOR.md).
// The connection handling, timers, backpressure and stop are the shared Reactor's.
#include "app/backend_registry.hpp"
#include "reactor/reactor.hpp"

namespace polyecho {
namespace {

class NbpollBackend final : public Backend {
 public:
  int run(ServerContext& context) override { return run_reactors(context, 1, make_spin_poller); }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "nbpoll",
    .description =
        "non-blocking sockets tried in turn, no readiness API; backs off (<=4 ms) when idle",
    .uses_workers = false,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "",
    .loop_model = true,
    .default_acceptor = kReactorAcceptor,
    .supports_offload = true,
    .default_rank = 2,
    .variants = {},
    .create = [](const ServerConfig&) { return std::make_unique<NbpollBackend>(); },
}};

}  // namespace
}  // namespace polyecho
