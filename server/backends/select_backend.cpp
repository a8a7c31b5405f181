// select: the shared Reactor on select(2). Portable and simple, but an fd_set is a bitmap of
// FD_SETSIZE (1024) bits: a connection whose fd is at or above that cannot be watched and is
// refused with a log line (never written out of bounds). Each wait also costs O(highest fd).
#include "app/backend_registry.hpp"
#include "reactor/reactor.hpp"

namespace polyecho {
namespace {

class SelectBackend final : public Backend {
 public:
  int run(ServerContext& context) override { return run_reactors(context, 1, make_select_poller); }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "select",
    .description = "one reactor thread on select(2); fds >= FD_SETSIZE (1024) are refused",
    .uses_workers = false,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "",
    .loop_model = true,
    .default_acceptor = kReactorAcceptor,
    .supports_offload = true,
    .default_rank = 3,
    .variants = {},
    .create = [](const ServerConfig&) { return std::make_unique<SelectBackend>(); },
}};

}  // namespace
}  // namespace polyecho
