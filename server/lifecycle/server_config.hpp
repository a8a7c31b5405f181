#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "polyecho/protocol.hpp"
#include "polyecho/work.hpp"

namespace polyecho {

// threadpool (--pool-strategy): how accepted connections reach the pool threads.
enum class PoolStrategy {
  queue,   // the main thread accepts into a bounded queue; an idle thread pops and serves
  accept,  // every pool thread accepts on the shared listener itself
};

// prefork (--accept-strategy): how connections reach the worker processes.
enum class AcceptStrategy {
  shared,     // every worker accepts on the listener it inherited
  reuseport,  // each worker has its own SO_REUSEPORT listener; the kernel spreads connections
  fdpass,     // only the master accepts, and passes each connection to an idle worker
};

// The event-loop models (--acceptor): how new connections reach a model's loops, and with
// --processes its worker processes (docs/TOPOLOGIES.md).
enum class AcceptorMode {
  model_default,  // the model's own: reuseport for the reactors and uring, shared for fiber,
                  // main for asio-coro
  main,           // one acceptor hands each connection to the next loop (process) in turn
  reuseport,      // a SO_REUSEPORT listener per loop (process): the kernel spreads connections
  shared,         // one listener watched by every loop (process), woken one at a time
};

// asio-coro (--io): the Asio backend its coroutines run on. Asio picks it per translation unit at
// compile time, so the build holds asio-coro twice (server/CMakeLists.txt says how).
enum class AsioIo {
  epoll,  // Asio's default reactor: readiness through epoll, then non-blocking syscalls
  uring,  // Asio's io_uring backend: the kernel performs the reads and writes
};

// Every knob of polyecho-server, filled once by the CLI (server/app/cli.cpp) and read-only
// after. Model-specific knobs live here too so that a backend file never parses flags itself;
// choices arrive as enums, already validated, so a backend never compares strings.
struct ServerConfig {
  std::string backend;  // empty: the registry's preferred default
  std::string host = "127.0.0.1";
  std::uint16_t port = 7007;
  int backlog = 4096;
  ProtocolConfig protocol;
  // --work and --gil: done once per message (line and frame modes), each model its own way.
  WorkConfig work;

  std::size_t max_connections = 10000;        // finite by default: the fd limit is the real ceiling
  std::size_t max_per_ip = 0;                 // 0 = off; see PeerLimit
  std::chrono::milliseconds idle_timeout{0};  // 0 = off
  std::chrono::milliseconds drain_timeout{5000};
  int keepalive_seconds = 0;  // 0 = off; otherwise TCP keepalive idle time
  unsigned workers = 0;       // 0 = the model's own default
  // Event-loop models: where connections come from, and worker processes (0: none, the
  // model runs in this process). Each worker process runs the model with its --workers loops.
  AcceptorMode acceptor = AcceptorMode::model_default;
  unsigned processes = 0;
  std::string user;  // drop privileges to this user after binding

  // Readiness models (reactor issue).
  bool edge_triggered = false;
  // A raw stream goes back out through a kernel pipe with splice(2), not through the Session's
  // buffer (relay/relay_pipe.hpp); --no-splice copies it as every other model does.
  bool splice = true;
  // poll and select (multiplexers that scan every fd per wait): after a wakeup that moved a
  // stream, when nothing is ready, let this much time pass before waiting, so that the next
  // scan finds several sockets ready rather than the first one (Reactor::wait_for_events()).
  // 0 = off; nullopt ("auto") = in proportion to the connections the scan walks.
  std::optional<std::chrono::microseconds> wait_moderation;
  // --offload N: cpu and block work run on a pool of N threads while the loops keep the IO
  // (0 = off: inline on the loop). --offload-queue: jobs that may wait for a pool thread.
  unsigned offload_threads = 0;
  std::size_t offload_queue = 1024;
  // Pooled models.
  PoolStrategy pool_strategy = PoolStrategy::queue;  // threadpool
  std::size_t queue_limit = 1024;                    // threadpool queue / prefork fdpass queue
  AcceptStrategy accept_strategy = AcceptStrategy::shared;  // prefork
  unsigned worker_threads = 1;                              // prefork: threads per worker process
  // Stackful fibers. 32 KiB: the echo path touches one page or two of it (docs/COROUTINES.md),
  // and every fiber also reserves its size in address space and a guard page below it.
  std::size_t stack_size = std::size_t{32} * 1024;
  // io_uring.
  bool sqpoll = false;
  // C++20 coroutines on Asio.
  AsioIo asio_io = AsioIo::epoll;  // asio-coro

  std::string log_level = "info";

  // --stats HOST:PORT: the metrics endpoint and live page (docs/METRICS.md); off when empty.
  // Only the host given, or loopback: nothing is exposed beyond the machine unless asked.
  std::string stats_host;
  std::uint16_t stats_port = 0;
  [[nodiscard]] bool stats_enabled() const noexcept { return !stats_host.empty(); }
  // The flags as given, after the program name (the live page and the info series show them).
  std::string flags;
};

}  // namespace polyecho
