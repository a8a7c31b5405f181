// asio-coro: C++20 stackless coroutines on standalone Asio. Each connection is one straight-line
// coroutine (read into the Session, write its output, repeat); a parked connection costs its
// coroutine frame, its socket and its Session buffer, and no stack.
//
// Threads: --workers N io_contexts (default 1), each run by one thread; the main thread runs
// context 0, which also owns the stop watcher. By default (--acceptor main) one accepting
// coroutine on context 0 hands sockets to the contexts round-robin (docs/COROUTINES.md says why
// not SO_REUSEPORT); with --acceptor reuseport or shared, or in a worker process of --processes
// under main, every context runs its own accepting coroutine on its own ConnectionSource
// (topology/loop_topology.hpp). A connection lives on one context for its whole life, so its
// Session is only ever touched by one thread.
//
// Stopping: the core's stop_signal owns SIGINT/SIGTERM. We watch its sticky stop fd rather than
// use asio::signal_set, which would install its own handler over the core's and lose "a second
// signal exits at once" (and stop_signal::requested()).
//
// IO: --io epoll runs the coroutines on Asio's default reactor, --io uring on its io_uring
// backend (the kernel performs the reads and writes). Asio fixes that at compile time, so CMake
// compiles this file twice (server/CMakeLists.txt says how); only the end of the file differs.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "app/backend_registry.hpp"
#include "backends/asio_coro_uring.hpp"
#include "lifecycle/connection_options.hpp"
#include "lifecycle/connection_source.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/messages.hpp"
#include "lifecycle/threads.hpp"
#include "polyecho/session.hpp"
#include "polyecho/stop_signal.hpp"
#include "topology/channel_source.hpp"
#include "topology/loop_topology.hpp"

namespace polyecho {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;

// Without --acceptor: one accepting coroutine hands connections to the contexts in turn.
constexpr AcceptorMode kAsioAcceptor = AcceptorMode::main;

// Every await hands back its error code instead of throwing: a peer's error is a normal result.
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

struct Connection;

// One io_context and the connections it serves. `live` and `input_cut` are touched only on
// this context's thread. `live` is declared before `io` because destroying `io` destroys any
// coroutine frame still parked in it, and those frames deregister from `live`.
struct Worker {
  ~Worker() {
    if (source_watch.is_open()) (void)source_watch.release();  // the source closes its own fd
  }
  std::unordered_set<Connection*> live;
  bool input_cut = false;  // the drain deadline passed: read no more, flush what is owed
  asio::io_context io{1};  // concurrency hint: exactly one thread runs it
  asio::executor_work_guard<asio::io_context::executor_type> keep_running{io.get_executor()};
  // Where this context's connections come from; null when context 0 accepts for everyone.
  std::unique_ptr<ConnectionSource> source;
  asio::posix::stream_descriptor source_watch{io};  // waits for `source` to be readable
  asio::steady_timer backoff{io};                   // out of descriptors: wait, never spin
  LoopStats* loop = nullptr;  // counted here when context 0 hands this context a connection
};

// One connection's state, held in its coroutine frame: allocated once per connection, never per
// message. Holds its admission ticket for its lifetime and adds its bytes to Stats when it ends.
struct Connection {
  // Takes the admitted socket and its ticket only once nothing can throw any more: until then
  // `admitted` still owns both, so a failed setup can refuse the connection.
  Connection(Worker& owner, const tcp& protocol, AdmittedConnection& admitted,
             const ServerContext& context)
      : worker(owner), socket(owner.io), session(context.config.protocol) {
    socket.assign(protocol, admitted.fd.get());
    (void)admitted.fd.release();  // the socket owns it now
#if !defined(POLYECHO_ASIO_CORO_URING)
    socket.non_blocking(true);  // read_some() in echo() says would_block rather than wait
#endif
    if (context.config.work.kind == WorkKind::wait)
      work_timer = std::make_unique<asio::steady_timer>(socket.get_executor());
    ticket = std::move(admitted.ticket);
    worker.live.insert(this);
  }
  ~Connection() {
    worker.live.erase(this);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Worker& worker;
  tcp::socket socket;
  AdmissionTicket ticket;  // after `socket`: given back before the socket closes
  Session session;
  Clock::time_point deadline{};  // idle deadline; every read and write pushes it forward
  std::unique_ptr<asio::steady_timer> work_timer;  // --work wait only (120 bytes otherwise)

  // Ends whatever the echo coroutine awaits: a read or write fails with operation_aborted
  // (or bad_descriptor), and so does a --work wait, which is not on the socket.
  void close() {
    socket.close();
    if (work_timer) work_timer->cancel();
  }
};

class Server {
 public:
  explicit Server(ServerContext& context)
      : context_(context), workers_(make_workers(context.config)) {}

  // Every thread is joined by now. Contexts 1..N-1 die first because their frames may post to
  // context 0, which dies last, after the acceptor and timers that live on it.
  ~Server() {
    while (workers_.size() > 1) workers_.pop_back();
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int run() {
    const int stop_fd = ::dup(stop_signal::stop_fd());  // stop_watch_ closes its own copy
    if (stop_fd < 0) throw_errno("dup");
    stop_watch_.assign(stop_fd);
    // Setup failures (a reuseport sibling's bind, dup) happen here, before any thread.
    if (resolve_acceptor(context_.config, kAsioAcceptor) == AcceptorMode::main) {
      // Asio's own main acceptor: context 0 takes from the listener (or, in a worker process,
      // from the master's channel) and hands connections to the contexts in turn.
      auto& source = workers_.front()->source;
      if (context_.channel) {
        source = std::make_unique<ChannelSource>(std::move(context_.channel), false,
                                                 context_.admission, nullptr);
      } else {
        source = std::make_unique<ListenerSource>(std::move(context_.listener), false,
                                                  context_.admission, nullptr);
      }
      for (auto& w : workers_) w->loop = context_.stats.register_loop();
      asio::co_spawn(main_io(), take_loop(*workers_.front(), /*spread=*/true), asio::detached);
    } else {
      LoopTopology topology(context_, static_cast<unsigned>(workers_.size()), kAsioAcceptor);
      for (std::size_t i = 0; i < workers_.size(); ++i) {
        workers_[i]->source = topology.source(static_cast<unsigned>(i));
        asio::co_spawn(workers_[i]->io, take_loop(*workers_[i], /*spread=*/false), asio::detached);
      }
    }
    asio::co_spawn(main_io(), supervise(), asio::detached);
    // Context 0 runs on this thread, which keeps the signals. If one context fails, the stop
    // watcher (on context 0) may be gone with it, so every context is stopped outright.
    return run_loop_threads(workers_.size(), [this](std::size_t i) {
      try {
        workers_[i]->io.run();
      } catch (...) {
        for (auto& w : workers_) w->io.stop();
        throw;
      }
    });
  }

 private:
  static std::vector<std::unique_ptr<Worker>> make_workers(const ServerConfig& config) {
    std::vector<std::unique_ptr<Worker>> workers(config.workers == 0 ? 1 : config.workers);
    for (auto& w : workers) w = std::make_unique<Worker>();
    return workers;
  }
  asio::io_context& main_io() { return workers_.front()->io; }

  // Takes from `home`'s ConnectionSource (which accepts and admits) until the stop; Asio only
  // tells us when the source is readable. We wait only after would_block: Asio's epoll is
  // edge-triggered, so a backlog left half-drained would never wake us. With `spread` (context
  // 0 accepting for all) each connection goes to the next context round-robin; otherwise it
  // stays on `home`. At the stop, connections an inbox or channel already holds are served.
  asio::awaitable<void> take_loop(Worker& home, bool spread) {
    ConnectionSource& source = *home.source;
    home.source_watch.assign(source.fd());
    bool serving = true;
    while (serving && !stopping_.load()) {
      auto taken = source.take();
      switch (taken.status) {
        case ConnectionSource::Status::admitted:
          start(spread ? next_worker() : home, std::move(taken.connection));
          break;
        case ConnectionSource::Status::skipped:
          break;
        case ConnectionSource::Status::would_block:
          co_await home.source_watch.async_wait(asio::posix::stream_descriptor::wait_read,
                                                kNoThrow);
          break;
        case ConnectionSource::Status::exhausted:
          home.backoff.expires_after(ConnectionSource::kBackoff);
          co_await home.backoff.async_wait(kNoThrow);
          break;
        case ConnectionSource::Status::ended:
          serving = false;
          break;
      }
    }
    (void)home.source_watch.release();  // the source owns the descriptor
    if (source.holds_accepted()) {
      for (auto taken = source.take(); taken.status == ConnectionSource::Status::admitted ||
                                       taken.status == ConnectionSource::Status::skipped;
           taken = source.take()) {
        if (taken.connection.fd) start(home, std::move(taken.connection));
      }
    }
    home.source.reset();  // a listener closes: the kernel refuses new connections on it
  }

  Worker& next_worker() {
    Worker& worker = *workers_[next_worker_++ % workers_.size()];
    if (worker.loop != nullptr) worker.loop->connections.fetch_add(1, std::memory_order_relaxed);
    return worker;
  }

  // On the taking context's thread. The connection is set up, and then served, on `worker`'s:
  // its Connection registers in `worker.live`, which only that thread touches.
  void start(Worker& worker, AdmittedConnection admitted) {
    open_.fetch_add(1);
    asio::post(worker.io, [this, &worker, admitted = std::move(admitted)]() mutable {
      std::unique_ptr<Connection> connection;
      try {
        prepare_connection(admitted.fd.get(), context_.config, /*blocking=*/false);
#if defined(POLYECHO_ASIO_CORO_URING)
        // Sources hand out non-blocking sockets (what a readiness loop wants). On a blocking
        // one the kernel performs the read or write inside io_uring; on a non-blocking one
        // Asio's io_uring backend falls back to a poll plus a syscall per operation.
        set_nonblocking(admitted.fd.get(), false);
#endif
        connection = std::make_unique<Connection>(worker, protocol_, admitted, context_);
      } catch (const std::exception& e) {
        spdlog::debug("connection setup failed: {}", e.what());
        if (admitted.ticket) {
          admitted.ticket.refuse(std::move(admitted.fd));  // never served
        } else {
          context_.stats.count_error(ErrorKind::connection);  // failed after taking both
        }
        connection_ended();
        return;
      }
      // One coroutine per connection owns it and accounts for its end, so an idle connection
      // costs that one frame (plus Asio's spawn record and its pending wait), not a chain of
      // frames. An exception escaping it (it awaits without throwing) is the only other end.
      const auto on_exception = [this](const std::exception_ptr& failure) {
        if (!failure) return;
        try {
          std::rethrow_exception(failure);
        } catch (const std::exception& e) {
          spdlog::debug("connection failed: {}", e.what());
        }
        context_.stats.count_error(ErrorKind::connection);
        connection_ended();
      };
      Connection& c = *connection;
      if (context_.config.idle_timeout.count() > 0) {
        asio::co_spawn(worker.io, echo_until_idle(std::move(connection)), on_exception);
      } else {
        asio::co_spawn(worker.io, echo(std::move(connection), c), on_exception);
      }
    });
  }

  // Stop, along the shared DrainTimeline: close the listener and let connections finish until
  // --drain-timeout. Then cut their input (each echoes what it received and finishes, as on the
  // peer's EOF), give them the flush grace, close the rest, and release every context so that
  // run() returns once its last coroutine has ended. Either wait ends early when the last
  // connection ends (connection_ended cancels drain_; open_ is re-checked before each arm, and
  // the cancel is posted to this thread, so it cannot fall between the check and the arm).
  asio::awaitable<void> supervise() {
    co_await stop_watch_.async_wait(asio::posix::stream_descriptor::wait_read, kNoThrow);
    stopping_.store(true);
    for (auto& w : workers_) {
      asio::post(w->io, [&worker = *w] {  // each taking coroutine ends on its own thread
        if (worker.source_watch.is_open()) worker.source_watch.cancel();
        worker.backoff.cancel();
      });
    }
    DrainTimeline timeline(context_.config.drain_timeout);
    timeline.stop(Clock::now());
    co_await drain_wait(timeline.input_cut_at());
    if (open_.load() > 0) {
      for (auto& w : workers_) asio::post(w->io, [&worker = *w] { cut_input(worker); });
      co_await drain_wait(timeline.close_at());
    }
    for (auto& w : workers_) {
      asio::post(w->io, [&worker = *w] {
        for (Connection* c : worker.live) c->close();  // aborts its pending read/write/wait
        worker.keep_running.reset();
      });
    }
  }

  asio::awaitable<void> drain_wait(Clock::time_point until) {
    if (open_.load() == 0) co_return;
    drain_.expires_at(until);
    co_await drain_.async_wait(kNoThrow);
  }

  // On `worker`'s thread. A read already pending is woken by SHUT_RD: it completes with the data
  // still queued or with EOF, and echo() then stops reading. Linux still queues bytes that arrive
  // after SHUT_RD, so the flag, not the shutdown, is what ends the reading.
  static void cut_input(Worker& worker) {
    worker.input_cut = true;
    std::error_code ignored;
    for (Connection* c : worker.live) c->socket.shutdown(tcp::socket::shutdown_receive, ignored);
  }

  // The echo loop, straight-line. Session decides what to send and when to stop; no allocation
  // or copy per message (Asio recycles the per-operation frames; see docs/COROUTINES.md).
  // `owned`: this coroutine owns `c` and ends it (the usual case); null when
  // echo_until_idle() owns it and races this loop against the watchdog.
  asio::awaitable<void> echo(std::unique_ptr<Connection> owned, Connection& c) {
    const WorkConfig& work = context_.config.work;
    for (;;) {
      if (c.session.has_output()) {
        const auto out = c.session.output();
        auto [error, sent] =
            co_await asio::async_write(c.socket, asio::buffer(out.data(), out.size()), kNoThrow);
        if (error) {
          count_error(error);
          break;
        }
        c.session.on_sent(sent);
        touch(c);
      }
      if (c.session.finished()) break;
      if (work.enabled() && c.session.pending_count() > 0) {
        // One message's work, then its echo (above), then the next. Straight-line: no read
        // while work is pending; the socket buffers what the peer sends meanwhile.
        if (!c.work_timer) {  // cpu or block: right here, and this context's thread waits
          work_pending_inline(c.session, work);
          touch(c);  // time spent working for the peer is not its idle time
          continue;
        }
        // A wait parks this coroutine alone. The input cut leaves it be; a close cancels it.
        touch(c, work.duration);  // working for the peer is not idling
        c.work_timer->expires_after(work.duration);
        auto [error] = co_await c.work_timer->async_wait(kNoThrow);
        if (error) break;  // cancelled by the idle watchdog (operator||) or the drain
        c.session.release_message();
        continue;
      }
      if (c.worker.input_cut) {  // the drain deadline: like the peer's EOF, all received is owed
        c.session.on_peer_eof();
        continue;
      }
      if (c.session.buffered() == 0) {
        // Holding nothing: wait for the peer without a buffer, so an idle connection costs its
        // frame and its socket only. Asio's epoll reactor is edge-triggered and forgets an
        // edge that no operation waited for, so there the wait comes only after the kernel
        // said EAGAIN; io_uring's poll sees readiness that is already there, so it waits first.
#if defined(POLYECHO_ASIO_CORO_URING)
        c.session.park();
        if (auto [error] = co_await c.socket.async_wait(tcp::socket::wait_read, kNoThrow); error) {
          count_error(error);
          break;
        }
#else
        const auto space = c.session.input_space();
        std::error_code error;
        const std::size_t received =
            c.socket.read_some(asio::buffer(space.data(), space.size()), error);
        if (error == asio::error::would_block) {
          c.session.park();
          if (auto [waited] = co_await c.socket.async_wait(tcp::socket::wait_read, kNoThrow);
              waited) {
            count_error(waited);
            break;
          }
          continue;  // the input cut may have come meanwhile
        }
        if (!on_read(c, error, received)) break;
        continue;
#endif
      }
      const auto space = c.session.input_space();
      if (space.empty()) break;  // cannot happen after a full flush; never spin on it
      auto [error, received] =
          co_await c.socket.async_read_some(asio::buffer(space.data(), space.size()), kNoThrow);
      if (!on_read(c, error, received)) break;
    }
    if (owned) end(std::move(owned));
  }

  // What a read brought; false when the connection ends.
  bool on_read(Connection& c, const std::error_code& error, std::size_t received) {
    if (error == asio::error::eof) {
      c.session.on_peer_eof();  // half-close: flush what is owed, then finish
    } else if (error) {
      count_error(error);
      return false;
    } else {
      c.session.on_received(received);
      touch(c);
    }
    return true;
  }

  // The echo with its idle watchdog. A coroutine of its own because every connection's frame
  // would otherwise reserve room for operator||'s state, idle timeout or not.
  asio::awaitable<void> echo_until_idle(std::unique_ptr<Connection> owned) {
    Connection& c = *owned;
    touch(c);
    co_await (echo(nullptr, c) || watchdog(c));  // the loser is cancelled
    end(std::move(owned));
  }

  // The connection is over: its protocol error counted, its socket closed and its ticket given
  // back (by its destructor), then the drain told.
  void end(std::unique_ptr<Connection> connection) {
    count_protocol_error(connection->session, context_.stats, connection->socket.native_handle());
    connection.reset();
    connection_ended();
  }

  // Returns (and so, through operator||, cancels the echo) once the connection has been idle
  // for --idle-timeout. The timer is re-armed once per idle period, not once per message.
  asio::awaitable<void> watchdog(Connection& c) {
    asio::steady_timer timer(c.socket.get_executor());
    while (Clock::now() < c.deadline) {
      timer.expires_at(c.deadline);
      auto [error] = co_await timer.async_wait(kNoThrow);
      if (error) co_return;  // cancelled: the echo ended first
    }
  }

  // `busy`: work about to run for the connection, which does not count as idle time.
  void touch(Connection& c, Clock::duration busy = {}) const {
    if (context_.config.idle_timeout.count() > 0)
      c.deadline = Clock::now() + context_.config.idle_timeout + busy;
  }

  // Our own cancellation (idle timeout, drain cut) is not an error; a peer's reset is.
  void count_error(const std::error_code& error) {
    if (error == asio::error::operation_aborted || error == asio::error::bad_descriptor) return;
    context_.stats.count_error(ErrorKind::connection);
    spdlog::debug("connection ended: {}", error.message());
  }

  // Any thread. The last connection out during a drain ends the drain wait early.
  void connection_ended() {
    if (open_.fetch_sub(1) == 1 && stopping_.load()) {
      asio::post(main_io(), [this] { drain_.cancel(); });
    }
  }

  ServerContext& context_;
  tcp protocol_ = context_.bound.family() == AF_INET6 ? tcp::v6() : tcp::v4();
  std::vector<std::unique_ptr<Worker>> workers_;  // workers_[0] runs on the main thread
  // The following live on context 0 and are only touched by the main thread.
  asio::posix::stream_descriptor stop_watch_{main_io()};
  asio::steady_timer drain_{main_io()};
  std::size_t next_worker_ = 0;  // --acceptor main: the context that gets the next connection
  // Shared between threads: admitted connections not yet ended, and "drain in progress".
  std::atomic<std::size_t> open_{0};
  std::atomic<bool> stopping_{false};
};

class AsioCoroBackend final : public Backend {
 public:
  explicit AsioCoroBackend(const ServerConfig& config) : config_(config) {}

  void adjust_listener(ListenerOptions& options) const override {
    adjust_for_topology(options, config_, kAsioAcceptor, std::max(config_.workers, 1u));
  }

  int run(ServerContext& context) override {
    Server server(context);
    return server.run();
  }

 private:
  const ServerConfig& config_;
};

}  // namespace

#if defined(POLYECHO_ASIO_CORO_URING)
// This is the second compilation (the io_uring one): it registers nothing and only makes the
// backend for the asio-coro registered by the first. Asio sets up an io_context's ring when its
// first I/O object is made, and throws there; that would be after binding, so probe now.
std::unique_ptr<Backend> make_asio_coro_uring_backend(const ServerConfig& config) {
  try {
    asio::io_context probe{1};
    const asio::steady_timer timer(probe);  // io_uring_queue_init happens here
  } catch (const std::system_error& e) {
    std::string why = e.what();
    std::ifstream sysctl("/proc/sys/kernel/io_uring_disabled");
    int disabled = 0;
    if (sysctl >> disabled && disabled != 0)
      why += fmt::format("; kernel.io_uring_disabled={}", disabled);
    throw BackendUnavailable(fmt::format(
        "asio-coro --io uring: io_uring is unavailable on this system ({}); use --io epoll", why));
  }
  return std::make_unique<AsioCoroBackend>(config);
}

bool asio_coro_uring_built() {
  return true;
}
#else
namespace {
std::vector<std::string> variants() {
  std::vector<std::string> flags{"--workers 2", "--acceptor reuseport --workers 2",
                                 "--processes 2 --workers 2"};
  if (asio_coro_uring_built()) flags.insert(flags.end(), {"--io uring", "--io uring --workers 2"});
  return flags;
}

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "asio-coro",
    .description = "C++20 coroutines on Asio (--io epoll|uring): a coroutine per connection, "
                   "--workers io_contexts",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = false,
    .threads_flag = "--workers",
    .loop_model = true,
    .default_acceptor = kAsioAcceptor,
    .default_rank = 20,  // below epoll (100), above the blocking models
    .variants = variants(),
    .create = [](const ServerConfig& config) -> std::unique_ptr<Backend> {
      if (config.asio_io == AsioIo::uring) return make_asio_coro_uring_backend(config);
      return std::make_unique<AsioCoroBackend>(config);
    },
}};
}  // namespace
#endif

}  // namespace polyecho
