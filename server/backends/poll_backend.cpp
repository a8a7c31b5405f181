// poll: the shared Reactor on poll(2). No FD_SETSIZE ceiling, but every wait copies and scans
// the whole pollfd array: O(connections) per wakeup however few are ready.
#include "app/backend_registry.hpp"
#include "reactor/reactor.hpp"

namespace polyecho {
namespace {

class PollBackend final : public Backend {
 public:
  int run(ServerContext& context) override { return run_reactors(context, 1, make_poll_poller); }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "poll",
    .description = "one reactor thread on poll(2); no fd ceiling, O(connections) per wakeup",
    .uses_workers = false,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "",
    .loop_model = true,
    .default_acceptor = kReactorAcceptor,
    .supports_offload = true,
    .default_rank = 4,
    .variants = {"--processes 2 --acceptor shared"},
    .create = [](const ServerConfig&) { return std::make_unique<PollBackend>(); },
}};

}  // namespace
}  // namespace polyecho
