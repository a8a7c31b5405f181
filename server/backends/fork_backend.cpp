// fork: a child process per connection, the classic inetd/Apache-prefork-less design. Full
// isolation (a crashing child loses only its own client) at the price of a fork() per
// connection and a process per client.
//
// Processes: the parent only accepts, counts and reaps; it closes its copy of every
// connection. Children add their byte counts to the shared Stats mapping before exiting.
// Forking, reaping (SIGCHLD wakes the accept loop through stop_signal::child_fd()) and the
// stop are the shared child-process lifecycle (ChildProcesses); this file only keeps each
// child's admission ticket until it is reaped and decides which deaths count as errors.
// Stop: the parent stops accepting, waits up to --drain-timeout for children to finish, then
// SIGTERMs the rest (SIGKILL a second later) and reaps every one: no zombie, no orphan.
// Children also get PR_SET_PDEATHSIG so they die if the parent is killed outright.
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <unordered_map>

#include "app/backend_registry.hpp"
#include "blocking/accept_loop.hpp"
#include "blocking/blocking_connection.hpp"
#include "lifecycle/child_processes.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {
namespace {

class ForkBackend final : public Backend {
 public:
  int run(ServerContext& context) override {
    // Each live child's admission ticket, by pid: given back (the active slot and the
    // --max-per-ip place) when the child is reaped. Declared first, so it outlives `children`.
    std::unordered_map<pid_t, AdmissionTicket> tickets;
    // SIGTERM on the parent's death: the child stops reading, echoes what it received, exits.
    ChildProcesses children({.parent_death_signal = SIGTERM, .name = "connection child"},
                            [&](const ChildExit& exit) {
                              on_exit(context.stats, exit);
                              tickets.erase(exit.pid);
                            });
    BlockingAcceptLoop loop(context);
    loop.watch_extra(stop_signal::child_fd(), [&] { children.reap(); });
    loop.run([&](unique_fd connection) {
      auto admitted = context.admission.admit(std::move(connection));
      if (!admitted) return;
      const pid_t pid = children.spawn([&] {
        context.listener.reset();
        admitted->ticket.leave_to_parent();  // the parent gives it back when it reaps this child
        // SIGTERM from the parent (at its drain deadline) interrupts the recv: the child stops
        // reading, echoes what it already received and exits.
        serve_blocking(admitted->fd.get(), context.config, context.stats,
                       {.on_interrupt = BlockingServeOptions::OnStop::cut});
        return 0;
      });
      if (pid < 0) {
        spdlog::warn("fork: {}; refusing the connection", std::strerror(errno));
        admitted->ticket.refuse(std::move(admitted->fd));
        return;
      }
      tickets.emplace(pid, std::move(admitted->ticket));
    });  // our copy of each connection closes as soon as its child has it
    const auto term_at = ChildProcesses::Clock::now() + context.config.drain_timeout;
    children.stop(term_at, term_at + ChildProcesses::kKillGrace);
    return 0;
  }

 private:
  // SIGTERM is the stop's (or an operator's) and the SIGKILL at the stop's last deadline is
  // the stop's too: any other signal means the child died before finishing its connection.
  static void on_exit(Stats& stats, const ChildExit& exit) {
    if (!WIFSIGNALED(exit.status) || WTERMSIG(exit.status) == SIGTERM || exit.killed) return;
    stats.count_error(ErrorKind::process);
    spdlog::warn("connection child {} died from signal {}", exit.pid, WTERMSIG(exit.status));
  }
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "fork",
    .description = "a child process per connection; the parent accepts and reaps",
    .uses_workers = false,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "",
    .default_rank = 1,
    .variants = {},
    .create = [](const ServerConfig&) { return std::make_unique<ForkBackend>(); },
}};

}  // namespace
}  // namespace polyecho
