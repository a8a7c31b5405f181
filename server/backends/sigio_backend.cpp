// sigio: signal-driven IO. The shared Reactor on a multiplexer that learns readiness from
// realtime signals: every socket (and the stop pipe) is O_ASYNC with F_SETSIG, the kernel
// queues SIGRTMIN+4 with the fd in si_fd, and the loop dequeues them with sigtimedwait().
// Edge-like, so the connection code reads and accepts until EAGAIN. When the signal queue
// overflows (RLIMIT_SIGPENDING) the kernel falls back to a bare SIGIO and the loop re-checks
// every connection. server/poller/sigio_poller.cpp explains why the model is rarely used.
//
// One thread: the fd's owner is per open file description, so a listener shared by several
// loops could signal only one of them; --workers would need a listener per thread.
#include "app/backend_registry.hpp"
#include "reactor/reactor.hpp"

namespace polyecho {
namespace {

class SigioBackend final : public Backend {
 public:
  // run_reactors() builds the multiplexer on this thread and runs it here: the signals are
  // directed to, and blocked in, the thread that waits for them.
  int run(ServerContext& context) override { return run_reactors(context, 1, make_sigio_poller); }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "sigio",
    .description = "one reactor thread on signal-driven IO (O_ASYNC, F_SETSIG realtime "
                   "signals, sigtimedwait); re-checks all fds when the queue overflows",
    .uses_workers = false,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "",
    .loop_model = true,
    .default_acceptor = kReactorAcceptor,
    .supports_offload = true,
    .default_rank = 1,
    .variants = {"--processes 2"},
    .create = [](const ServerConfig&) { return std::make_unique<SigioBackend>(); },
}};

}  // namespace
}  // namespace polyecho
