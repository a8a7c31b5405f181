// iterative: one connection at a time, the baseline every other model is measured against.
// While a client is served, the others wait in the kernel's listen backlog; a slow client
// therefore stalls everybody, which is exactly what this model exists to show.
// Threads: one. Signals land on this thread, so a stop interrupts the blocking read and the
// current client gets --drain-timeout to finish.
#include "app/backend_registry.hpp"
#include "blocking/accept_loop.hpp"
#include "blocking/blocking_connection.hpp"

namespace polyecho {
namespace {

class IterativeBackend final : public Backend {
 public:
  int run(ServerContext& context) override {
    BlockingAcceptLoop loop(context);
    const BlockingServeOptions options{.on_interrupt = BlockingServeOptions::OnStop::drain};
    loop.run([&](unique_fd connection) {
      // One connection at a time, so admission never refuses here; admitting anyway keeps the
      // gate's counts true for every model.
      if (const auto admitted = context.admission.admit(std::move(connection)))
        serve_blocking(admitted->fd.get(), context.config, context.stats, options);
    });
    return 0;
  }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "iterative",
    .description = "one connection at a time on one thread; the rest wait in the backlog",
    .uses_workers = false,
    .serves_concurrently = false,
    .threaded = false,
    .threads_flag = "",
    .default_rank = 0,
    .variants = {},
    .create = [](const ServerConfig&) { return std::make_unique<IterativeBackend>(); },
}};

}  // namespace
}  // namespace polyecho
