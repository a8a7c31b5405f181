// fork: a child process per connection, the classic inetd/Apache-prefork-less design. Full
// isolation (a crashing child loses only its own client) at the price of a fork() per
// connection and a process per client.
//
// Processes: the parent only accepts, counts and reaps; it closes its copy of every
// connection. Children add their byte counts to the shared Stats mapping before exiting.
// SIGCHLD wakes the accept loop through stop_signal::child_fd(); reaping loops on
// waitpid(WNOHANG) because several exits can arrive as one signal.
// Stop: the parent stops accepting, waits up to --drain-timeout for children to finish, then
// SIGTERMs the rest (SIGKILL if they linger) and reaps every one: no zombie, no orphan.
// Children also get PR_SET_PDEATHSIG so they die if the parent is killed outright.
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <unordered_map>

#include "app/backend_registry.hpp"
#include "blocking/accept_loop.hpp"
#include "blocking/blocking_connection.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {
namespace {

using Clock = std::chrono::steady_clock;

class ForkBackend final : public Backend {
 public:
  int run(ServerContext& context) override {
    stop_signal::watch_children();
    const pid_t parent = ::getpid();
    BlockingAcceptLoop loop(context);
    loop.watch_extra(stop_signal::child_fd(), [&] { reap(context.stats); });
    loop.run([&](unique_fd connection) { spawn(context, parent, std::move(connection)); });
    drain(context);
    return 0;
  }

 private:
  void spawn(ServerContext& context, pid_t parent, unique_fd connection) {
    auto admitted = context.admission.admit(std::move(connection));
    if (!admitted) return;
    const pid_t pid = ::fork();
    if (pid < 0) {
      spdlog::warn("fork: {}; refusing the connection", std::strerror(errno));
      admitted->ticket.refuse(std::move(admitted->fd));
      return;
    }
    if (pid == 0) {
      // SIGTERM from the parent (at its drain deadline) interrupts the child's recv: it stops
      // reading, echoes what it already received and exits. Ctrl-C reaches the whole process
      // group, but the parent runs the drain, so the child ignores SIGINT.
      stop_signal::reinstall_in_child();
      ::signal(SIGINT, SIG_IGN);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(0);  // the parent died before prctl took effect
      context.listener.reset();
      admitted->ticket.leave_to_parent();  // the parent gives it back when it reaps this child
      int status = 0;
      try {
        serve_blocking(admitted->fd.get(), context.config, context.stats,
                       {.on_interrupt = BlockingServeOptions::OnStop::cut});
      } catch (const std::exception& e) {
        spdlog::error("connection child: {}", e.what());
        status = 1;
      }
      // _exit, never a return or an exception out of here: the parent's objects (its leases
      // among them), atexit handlers and static destructors are not ours to run.
      ::_exit(status);
    }
    children_.emplace(pid, std::move(admitted->ticket));  // given back when the child is reaped
  }  // our copy of the connection closes here; the child has its own

  void reap(Stats& stats) {
    stop_signal::clear_child_fd();
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (children_.erase(pid) == 0) continue;
      if (WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM) {
        stats.errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("connection child {} died from signal {}", pid, WTERMSIG(status));
      }
    }
  }

  // Waits for the children (woken by SIGCHLD) until `deadline`; true when none is left.
  bool wait_children(Stats& stats, Clock::time_point deadline) {
    while (!children_.empty()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd fd{stop_signal::child_fd(), POLLIN, 0};
      ::poll(&fd, 1, static_cast<int>(left.count()) + 1);
      reap(stats);
    }
    return true;
  }

  void drain(ServerContext& context) {
    if (wait_children(context.stats, Clock::now() + context.config.drain_timeout)) return;
    for (const auto& [pid, ticket] : children_) ::kill(pid, SIGTERM);
    if (wait_children(context.stats, Clock::now() + std::chrono::seconds(1))) return;
    for (const auto& [pid, ticket] : children_) ::kill(pid, SIGKILL);
    // SIGKILL cannot be ignored, so blocking waits here end promptly.
    for (const auto& [pid, ticket] : children_) {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    children_.clear();
  }

  // Live children and their connections' admission tickets; parent's accept thread only.
  std::unordered_map<pid_t, AdmissionTicket> children_;
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
