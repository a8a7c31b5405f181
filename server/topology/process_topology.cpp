#include "topology/process_topology.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <vector>

#include "blocking/accept_loop.hpp"
#include "polyecho/stop_signal.hpp"
#include "process/fd_passing.hpp"
#include "process/worker_processes.hpp"
#include "topology/loop_topology.hpp"

namespace polyecho {

namespace {

// --acceptor main across processes: the master's ends of the workers' channels, by slot. The
// master end is non-blocking, so a worker that does not keep up fills its channel and is
// skipped while the others have room. Master thread only.
class Channels {
 public:
  explicit Channels(unsigned workers) : master_(workers), worker_(workers) {}

  // WorkerProcesses hooks, master side.
  void before_fork(unsigned slot) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0)
      throw_errno("socketpair");
    master_[slot].reset(ends[0]);
    worker_[slot].reset(ends[1]);
    set_nonblocking(ends[0]);
  }
  void after_fork(unsigned slot) { worker_[slot].reset(); }
  void on_exit(unsigned slot) { master_[slot].reset(); }  // what it had not taken died with it

  // In the worker, once after fork: its own end, and none of the master's.
  unique_fd enter_worker(unsigned slot) {
    for (auto& end : master_) end.reset();
    return std::move(worker_[slot]);
  }

  // Round-robin over the workers that are alive. When every channel is full (a burst outran
  // the workers) the master waits for room, at most kFullWait: holding the next connection
  // back is better than refusing one it has already accepted, and the backlog queues the rest
  // meanwhile. False when there is still no room after that, or a stop came.
  bool pass(int connection) {
    const auto deadline = std::chrono::steady_clock::now() + kFullWait;
    for (;;) {
      for (std::size_t tried = 0; tried < master_.size(); ++tried) {
        const unique_fd& channel = master_[next_];
        next_ = (next_ + 1) % master_.size();
        if (channel && send_fd(channel.get(), connection) == 0) return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_for_room(static_cast<int>(left.count()))) return false;
    }
  }

 private:
  static constexpr std::chrono::milliseconds kFullWait{1000};

  // Until a channel can take a record, the stop, or `timeout_ms`. False on the stop.
  bool wait_for_room(int timeout_ms) {
    std::vector<pollfd> fds{{stop_signal::stop_fd(), POLLIN, 0}};
    for (const auto& channel : master_) {
      if (channel) fds.push_back({channel.get(), POLLOUT, 0});
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) throw_errno("poll");
    return !stop_signal::requested();
  }

  std::vector<unique_fd> master_;
  std::vector<unique_fd> worker_;  // only between before_fork and after_fork
  std::size_t next_ = 0;
};

}  // namespace

int run_processes(ServerContext& context, Backend& backend, AcceptorMode model_default) {
  const ServerConfig& config = context.config;
  const AcceptorMode mode = resolve_acceptor(config, model_default);
  const unsigned count = config.processes;
  Channels channels(mode == AcceptorMode::main ? count : 0);
  std::unique_ptr<WorkerProcesses> processes;
  WorkerProcesses::Hooks hooks;
  if (mode == AcceptorMode::main) {
    hooks.before_fork = [&](unsigned slot) { channels.before_fork(slot); };
    hooks.after_fork = [&](unsigned slot, pid_t) { channels.after_fork(slot); };
    hooks.on_exit = [&](unsigned slot) { channels.on_exit(slot); };
  }
  hooks.run = [&](unsigned slot) {
    // The worker: this process's tickets also count in its slot, where the master reads them
    // to account for a worker killed mid-connection.
    context.admission.count_held_in(&processes->held(slot));
    if (mode == AcceptorMode::main) {
      context.listener.reset();
      context.channel = channels.enter_worker(slot);
    } else if (mode == AcceptorMode::reuseport && slot > 0) {
      try {
        context.listener =
            make_listener(context.bound, {.backlog = config.backlog, .reuse_port = true});
      } catch (const std::system_error& e) {
        spdlog::error("worker {}: {}", slot, e.what());
        return WorkerProcesses::kSetupFailed;
      }
    }
    return backend.run(context);
  };
  processes = std::make_unique<WorkerProcesses>(count, hooks, context.stats, context.peers);
  processes->start_all();
  if (mode == AcceptorMode::main) {
    BlockingAcceptLoop loop(context);  // owns the listener; closes it at the stop
    loop.accept_nonblocking();         // O_NONBLOCK travels with the descriptor
    loop.watch_extra(stop_signal::child_fd(), [&] { processes->reap(); });
    loop.run([&](unique_fd connection) {
      if (!channels.pass(connection.get())) context.admission.reject(std::move(connection));
      // Our copy closes here; the worker's copy keeps the connection open.
    });
  } else {
    processes->supervise_until_stop();
    // Shutting the shared socket down (not just closing our copy) refuses new connections at
    // once for every worker; reuseport siblings close when their workers exit.
    ::shutdown(context.listener.get(), SHUT_RDWR);
  }
  processes->stop(config.drain_timeout);
  return 0;
}

}  // namespace polyecho
