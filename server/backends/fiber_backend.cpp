// fiber: stackful coroutines on Boost.Context. Every connection runs in its own fiber as
// straight-line, blocking-style code (read, Session, write, repeat); a syscall that would
// block parks the fiber in the thread's FiberScheduler until epoll says the socket is ready.
// A parked connection costs its fiber stack (--stack-size reserved, with a guard page; only
// touched pages are resident), its socket and its Session buffer, and no thread.
//
// --workers N: N schedulers on N threads, each with its own epoll and its own acceptor fiber.
// By default all watch the one listener the core bound (each through a dup, EPOLLEXCLUSIVE):
// one accept queue keeps arrival order and admission is checked against the process-wide
// Stats::active at accept time, so --max-connections admits exactly the first comers.
// --acceptor reuseport or main (an acceptor thread handing connections to the schedulers'
// inboxes) and --processes are the other topologies (topology/loop_topology.hpp).
// A connection stays on the scheduler that accepted it: its Session needs no lock.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "app/backend_registry.hpp"
#include "fiber/fiber_scheduler.hpp"
#include "lifecycle/connection_options.hpp"
#include "lifecycle/connection_source.hpp"
#include "lifecycle/messages.hpp"
#include "lifecycle/threads.hpp"
#include "poller/multiplexer.hpp"
#include "polyecho/session.hpp"
#include "topology/loop_topology.hpp"

namespace polyecho {
namespace {

using Wake = FiberScheduler::Wake;

// --work for what is pending. cpu and block run right here, on the scheduler's thread, for
// every pending message: each other fiber of this thread waits meanwhile. A wait is a fiber
// sleep for the first message only, which parks this fiber alone; the input cut does not end
// it early. Returns false when the fiber was cancelled (the flush grace is over).
bool work_on_pending(FiberScheduler& scheduler, Session& session, const WorkConfig& work) {
  if (work.kind != WorkKind::wait) {
    work_pending_inline(session, work);
    return true;
  }
  if (scheduler.sleep(work.duration) == Wake::cancelled) return false;
  session.release_message();
  return true;
}

// Reads a connection may do in a row before it lets the others of its thread run (see serve()).
// One read per turn is what a reactor does per readiness event; a few more keep a busy stream
// from paying a scheduler pass per read.
constexpr unsigned kReadsPerTurn = 2;

// One connection, start to end, on its fiber's stack. The socket is non-blocking: EAGAIN
// becomes a wait. A wait that times out (idle) or is cancelled (flush grace over) ends it; at
// the drain deadline the scheduler cuts input and the connection flushes as after a peer EOF.
void serve(FiberScheduler& scheduler, unique_fd connection, const ServerConfig& config,
           Stats& stats) {
  const WatchedFd fd(scheduler, std::move(connection));
  Session session(config.protocol);
  int error = 0;
  const auto idle = config.idle_timeout;
  unsigned reads_this_turn = 0;  // reads that found data since this fiber last gave up the thread
  for (;;) {
    while (error == 0 && session.has_output()) {
      const IoResult r = send_some(fd.get(), session.output());  // MSG_NOSIGNAL, EINTR retried
      if (r.bytes > 0) {
        session.on_sent(static_cast<std::size_t>(r.bytes));
      } else if (!r.would_block()) {
        error = r.error;  // reset or worse: this connection only
      } else if (scheduler.wait(fd.get(), kWritable, idle) != Wake::ready) {
        break;  // a slow reader blocks only this fiber, until idle or the drain cut
      }
    }
    if (error != 0 || session.has_output() || session.finished()) break;
    if (config.work.enabled() && session.pending_count() > 0) {
      // One message's work, then its echo (above), then the next: straight-line, so this
      // fiber does not read while work is pending; the socket buffers what the peer sends.
      if (!work_on_pending(scheduler, session, config.work)) break;
      continue;
    }
    if (scheduler.input_cut()) {
      session.on_peer_eof();  // the drain deadline: read no more, echo what was received
      continue;
    }
    // A few reads per turn, then the next one waits for the scheduler's next pass
    // (level-triggered, so data already there is reported at once). Reading on for as long as
    // the peer keeps up let one connection hold the thread: at 10,000 ping-pong connections one
    // completed 3,258 messages while the median completed 10.
    if (reads_this_turn == kReadsPerTurn) {
      reads_this_turn = 0;
      session.park();  // holding nothing: no buffer while it waits
      if (const Wake wake = scheduler.wait(fd.get(), kReadable, idle);
          wake == Wake::timed_out || wake == Wake::cancelled) {
        break;
      }
      continue;  // the input cut may have come meanwhile
    }
    const auto space = session.input_space();
    if (space.empty()) break;  // cannot happen after a full flush; never spin on it
    const IoResult r = read_some(fd.get(), space);
    if (r.ok()) {
      session.on_received(static_cast<std::size_t>(r.bytes));
      ++reads_this_turn;
    } else if (r.eof()) {
      session.on_peer_eof();  // half-close: flush what is owed, then finish
    } else if (!r.would_block()) {
      error = r.error;
      break;
    } else {
      session.park();  // an idle connection holds no buffer while it waits for its peer
      if (const Wake wake = scheduler.wait(fd.get(), kReadable, idle);
          wake == Wake::timed_out || wake == Wake::cancelled) {
        break;
      }
    }  // `input_cut` is seen at the top of the next pass
  }
  count_protocol_error(session, stats, fd.get());
  if (error != 0) {
    stats.count_error(ErrorKind::connection);
    spdlog::debug("connection fd {} ended: {}", fd.get(), std::strerror(error));
  }
}

// A connection's fiber body: holds the admitted connection (and so its ticket) until it ends.
struct ConnectionFiber {
  FiberScheduler& scheduler;
  const ServerConfig& config;
  Stats& stats;
  AdmittedConnection admitted;
  void operator()() {
    const AdmissionTicket held = std::move(admitted.ticket);  // until the connection ends
    serve(scheduler, std::move(admitted.fd), config, stats);
  }
};

// On the accepting fiber: a fiber of its own for a connection the source admitted.
void start(FiberScheduler& scheduler, AdmittedConnection admitted, ServerContext& context) {
  ConnectionFiber body{scheduler, context.config, context.stats, std::move(admitted)};
  try {
    prepare_connection(body.admitted.fd.get(), context.config, /*blocking=*/false);
    scheduler.spawn(FiberScheduler::Kind::connection, std::move(body));
  } catch (const std::exception& e) {
    // setsockopt on a peer already gone, or no stack to be had (mmap): refuse this one only.
    // spawn() left `body` untouched when it threw.
    spdlog::debug("connection setup failed: {}", e.what());
    body.admitted.ticket.refuse(std::move(body.admitted.fd));
  }
}

// The accepting fiber of one scheduler: takes from its ConnectionSource (a listener, shared or
// its own, or a main acceptor's inbox; it admits). Would-block waits for the source, exhaustion
// sleeps instead of spinning. Cancelled (a stop) at once; an inbox's or channel's connections
// already accepted are started before the source goes, and a listener closing refuses the rest.
void accept_loop(FiberScheduler& scheduler, std::unique_ptr<ConnectionSource> source,
                 ServerContext& context) {
  const int fd = source->fd();
  const std::uint32_t interest = kReadable | (source->shared() ? kExclusive : 0u);
  scheduler.count_waits_in(source->loop_stats());
  bool serving = true;
  while (serving) {
    auto taken = source->take();
    switch (taken.status) {
      case ConnectionSource::Status::admitted:
        start(scheduler, std::move(taken.connection), context);
        continue;
      case ConnectionSource::Status::skipped:
        continue;
      case ConnectionSource::Status::would_block:
        serving = scheduler.wait(fd, interest, std::chrono::milliseconds{0}) != Wake::cancelled;
        continue;
      case ConnectionSource::Status::exhausted:
        serving = scheduler.sleep(ConnectionSource::kBackoff) != Wake::cancelled;
        continue;
      case ConnectionSource::Status::ended:
        serving = false;
        continue;
    }
  }
  scheduler.forget(fd);  // before the source closes it
  if (!source->holds_accepted()) return;
  for (auto taken = source->take(); taken.status == ConnectionSource::Status::admitted ||
                                    taken.status == ConnectionSource::Status::skipped;
       taken = source->take()) {
    if (taken.connection.fd) start(scheduler, std::move(taken.connection), context);
  }
}

// Without --acceptor every scheduler watches the one listener (EPOLLEXCLUSIVE): one accept
// queue keeps arrival order, and an idle scheduler takes the next connection.
constexpr AcceptorMode kFiberAcceptor = AcceptorMode::shared;

class FiberBackend final : public Backend {
 public:
  explicit FiberBackend(const ServerConfig& config)
      : config_(config), workers_(std::max(config.workers, 1u)) {}

  void adjust_listener(ListenerOptions& options) const override {
    adjust_for_topology(options, config_, kFiberAcceptor, workers_);
  }

  int run(ServerContext& context) override {
    const ServerConfig& config = context.config;
    // Setup failures (epoll_create, dup, the first stack) happen here, before any thread.
    LoopTopology topology(context, workers_, kFiberAcceptor);
    std::vector<std::unique_ptr<FiberScheduler>> schedulers;
    for (unsigned i = 0; i < workers_; ++i) {
      auto scheduler = std::make_unique<FiberScheduler>(make_epoll_poller(/*edge_triggered=*/false),
                                                        config.stack_size, config.drain_timeout);
      scheduler->spawn(FiberScheduler::Kind::service,
                       [&s = *scheduler, source = topology.source(i), &context]() mutable {
                         accept_loop(s, std::move(source), context);
                       });
      schedulers.push_back(std::move(scheduler));
    }
    return topology.run([&schedulers](std::size_t i) { schedulers[i]->run(); });
  }

 private:
  const ServerConfig& config_;
  unsigned workers_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "fiber",
    .description = "stackful fibers (Boost.Context): a fiber per connection on an epoll "
                   "scheduler; --workers N threads, --stack-size",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "--workers",
    .loop_model = true,
    .default_acceptor = kFiberAcceptor,
    .default_rank = 15,  // below epoll (100) and asio-coro (20), above the blocking models
    .variants = {"--workers 2", "--acceptor main --workers 2", "--processes 2 --acceptor main"},
    .create = [](const ServerConfig& config) { return std::make_unique<FiberBackend>(config); },
}};

}  // namespace
}  // namespace polyecho
