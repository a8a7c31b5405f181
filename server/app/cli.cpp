// The command line of polyecho-server: each flag, its check, and its --help section.
#include "app/cli.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "app/backend_registry.hpp"

#ifndef POLYECHO_VERSION
#define POLYECHO_VERSION "0.0.0"
#endif

namespace polyecho {
namespace {

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
  for (const auto& info : BackendRegistry::all()) names.push_back(info.name);
  return names;
}

// From the registry rather than written out, so the lists match what this build has.
std::string models_where(bool BackendInfo::*property) {
  std::vector<std::string> names;
  for (const auto& info : BackendRegistry::all()) {
    if (info.*property) names.push_back(info.name);
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string loop_models() {
  return models_where(&BackendInfo::loop_model);
}

// --acceptor and --processes shape the event loops of a model; a model without any (a thread or
// a process per connection, a pool) has nothing for them to shape, so they are an error there
// rather than silently ignored.
std::optional<std::string> check_topology(const ServerConfig& c) {
  if (c.acceptor == AcceptorMode::model_default && c.processes == 0) return std::nullopt;
  const BackendInfo* info =
      c.backend.empty() ? BackendRegistry::preferred_default() : BackendRegistry::find(c.backend);
  if (info == nullptr) return std::nullopt;  // reported later: nothing is compiled in
  if (!info->loop_model) {
    return fmt::format("--acceptor and --processes apply to the event-loop models ({}), not {}",
                       loop_models(), info->name);
  }
  // sigio steers its signals to the thread that built its multiplexer, and an inbox's eventfd
  // cannot raise SIGIO: one loop that accepts for itself, in each process.
  if (info->name == "sigio" && c.acceptor == AcceptorMode::main) {
    return "--acceptor main: sigio's loop must accept for itself (its signals go to one thread)";
  }
  return std::nullopt;
}

// --wait-moderation's number: whole microseconds, 0 to 100000 (a tenth of a second).
std::optional<std::chrono::microseconds> parse_moderation(const std::string& value) {
  unsigned long long us = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), us);
  if (error != std::errc{} || end != value.data() + value.size() || us > 100'000) {
    return std::nullopt;
  }
  return std::chrono::microseconds(us);
}

std::chrono::milliseconds to_millis(double seconds) {
  return std::chrono::milliseconds(std::llround(seconds * 1000.0));
}

// Options added after this call are listed under `heading` in --help. Option::group, not
// App::add_option_group: CLI11 2.1 prints an option group as a nested "[Option Group: ...]"
// block with an "Options:" heading of its own, while Option::group gives each section one
// plain heading and keeps every flag on the one App.
void start_section(CLI::App& app, const std::string& heading) {
  app.option_defaults()->group(heading);
}

// A flag's valid names, in the order --help lists them, each with the value it stands for.
template <typename Enum>
using Choices = std::vector<std::pair<std::string, Enum>>;

// A flag that takes one of `choices` by name and stores its enumerator in `target`. IsMember
// rejects any other name (its error lists the valid ones) before the callback runs, so the
// lookup there always finds one. --help shows the name of `target`'s initial value as default.
template <typename Enum>
CLI::Option* add_choice(CLI::App& app, const std::string& flag, Enum& target,
                        const Choices<Enum>& choices, const std::string& description) {
  const auto store = [&target, choices](const std::string& name) {
    target = std::find_if(choices.begin(), choices.end(), [&](const auto& choice) {
               return choice.first == name;
             })->second;
  };
  const auto initial = std::find_if(choices.begin(), choices.end(),
                                    [&](const auto& choice) { return choice.second == target; });
  return app.add_option_function<std::string>(flag, store, description)
      ->check(CLI::IsMember(choices))
      ->default_str(initial->first);
}

// --stats: "HOST:PORT", "[IPV6]:PORT" (refused later if civetweb has no IPv6), or "PORT" alone
// for loopback. Returns an error text.
std::optional<std::string> parse_stats_address(const std::string& text, ServerConfig& c) {
  std::string host = "127.0.0.1";
  std::string port = text;
  if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    if (host.empty()) return "--stats: no host before ':' (e.g. 127.0.0.1:9100)";
  }
  const bool numeric = !port.empty() && port.size() <= 5 &&
                       port.find_first_not_of("0123456789") == std::string::npos;
  if (!numeric || std::stoul(port) > 65535)
    return fmt::format("--stats: '{}' is not HOST:PORT with a port from 0 to 65535", text);
  c.stats_host = host;
  c.stats_port = static_cast<std::uint16_t>(std::stoul(port));
  return std::nullopt;
}

std::string joined_flags(int argc, char** argv) {
  std::string flags;
  for (int i = 1; i < argc; ++i) {
    if (i > 1) flags += ' ';
    flags += argv[i];
  }
  return flags;
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, CommandLine& line) {
  ServerConfig& c = line.config;
  CLI::App app{"polyecho-server: a TCP echo server with pluggable concurrency models",
               "polyecho-server"};
  // Last one wins, as in most Unix tools: wrappers (the container entrypoint, scripts) put
  // defaults first and let the user's flags override them.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string mode = "raw";
  std::string transform = "none";
  double idle_seconds = 0;
  double drain_seconds = 5;
  std::string moderation = "auto";
  std::string stats_address;

  start_section(app, "Server");
  app.get_help_ptr()->group("Server");
  app.set_version_flag("--version", std::string("polyecho ") + POLYECHO_VERSION);
  app.add_flag("--list-backends", line.list_backends, "List the concurrency models and exit");
  app.add_flag("--json", line.json, "With --list-backends: print JSON");
  app.add_option("--backend", c.backend, "Concurrency model (see --list-backends)")
      ->check(CLI::IsMember(backend_names()));
  app.add_option("--host", c.host, "Address to bind (IPv4 or IPv6)")->capture_default_str();
  app.add_option("--port", c.port, "TCP port; 0 picks a free one")->capture_default_str();
  app.add_option("--backlog", c.backlog, "listen() backlog")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--user", c.user, "Drop privileges to this user after binding");
  app.add_option("--stats", stats_address,
                 "HOST:PORT (or PORT for loopback): serve /metrics (Prometheus), /stats.json and "
                 "a live page; off by default; port 0 picks a free one (docs/METRICS.md)");
  app.add_option("--log-level", c.log_level, "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();

  start_section(app, "Protocol (every model)");
  app.add_option("--mode", mode,
                 "raw: RFC 862 byte echo; line: LF-delimited lines; frame: 4-byte big-endian "
                 "length, then the payload")
      ->check(CLI::IsMember({"raw", "line", "frame"}))
      ->capture_default_str();
  app.add_option("--transform", transform, "Line mode: transform echoed lines")
      ->check(CLI::IsMember({"none", "upper"}))
      ->capture_default_str();
  app.add_option("--max-line", c.protocol.max_line, "Line mode: longest line in bytes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-frame", c.protocol.max_frame,
                 "Frame mode: largest payload in bytes; a longer frame closes the connection")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-buffer", c.protocol.max_buffer, "Per-connection cap on buffered bytes")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
      ->capture_default_str();

  start_section(app, "Work per message (line and frame modes; docs/WORK.md)");
  std::string work_error;
  app.add_option_function<std::string>(
         "--work",
         [&c, &work_error](const std::string& text) {
           if (auto work = parse_work(text, work_error)) {
             c.work.kind = work->kind;
             c.work.duration = work->duration;
           } else {
             throw CLI::ValidationError("--work", work_error);
           }
         },
         "KIND:MICROSECONDS once per message: cpu (calibrated computation), block (a blocking "
         "sleep on the handling thread), wait (the model's own non-blocking wait)")
      ->type_name("KIND:US");
  app.add_flag("--gil", c.work.gil,
               "Hold one process-wide lock while cpu or block work runs (CPython's GIL)");

  start_section(app, "Limits and lifecycle");
  app.add_option("--max-connections", c.max_connections,
                 "Connections served at once; extras are closed")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--max-per-ip", c.max_per_ip,
                 "Connections one client address may hold at once, across all workers (0 = no "
                 "limit)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--idle-timeout", idle_seconds,
                 "Close a connection idle this many seconds (0 = off)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--drain-timeout", drain_seconds,
                 "On SIGINT/SIGTERM, seconds to let connections finish")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--keepalive", c.keepalive_seconds, "TCP keepalive idle seconds (0 = off)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  app.add_option("--workers", c.workers,
                 models_where(&BackendInfo::uses_workers) +
                     ": threads, processes or loops (0 = model default; leader-follower: "
                     "threads taking turns at one shared epoll, default 4)")
      ->check(CLI::Range(0u, 4096u))
      ->capture_default_str();

  start_section(app, "Topology (event-loop models; docs/TOPOLOGIES.md)");
  add_choice(app, "--acceptor", c.acceptor,
             {{"default", AcceptorMode::model_default},
              {"main", AcceptorMode::main},
              {"reuseport", AcceptorMode::reuseport},
              {"shared", AcceptorMode::shared}},
             loop_models() +
                 ": how connections reach the loops (and worker processes): main: one acceptor "
                 "hands them out round-robin; reuseport: a SO_REUSEPORT listener each; shared: "
                 "one listener, woken one at a time; default: the model's own");
  app.add_option("--processes", c.processes,
                 "Worker processes, each running the model with its --workers loops, under a "
                 "master that replaces a dead one (0 = run in this process)")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();

  start_section(app, "Offload (" + models_where(&BackendInfo::supports_offload) + ")");
  app.add_option("--offload", c.offload_threads,
                 "Run cpu and block work on a pool of N threads while the event loop keeps "
                 "doing the IO (0 = off: the loop does the work itself); waits stay on the "
                 "loop's timers")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();
  app.add_option("--offload-queue", c.offload_queue,
                 "--offload: jobs that may wait for a pool thread; when full, connections are "
                 "not read until there is room")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();

  start_section(app, "Readiness (epoll, leader-follower, nbpoll, poll, select, sigio)");
  app.add_flag("--edge-triggered", c.edge_triggered, "epoll: edge-triggered readiness (EPOLLET)");
  app.add_flag("--splice,!--no-splice", c.splice,
               "Raw mode without --work: a stream is echoed through a kernel pipe with "
               "splice(2), zero copy (default); --no-splice copies it through the connection's "
               "buffer");
  app.add_option("--wait-moderation", moderation,
                 "poll, select: after a wakeup that moved a stream, when nothing is ready, "
                 "pause this many microseconds (0 = off, at most 100000) before the next wait, "
                 "so it finds several sockets ready: each wait scans every fd. auto: 2 us per "
                 "connection, at least 25 and at most 1000")
      ->check(
          [](const std::string& value) -> std::string {
            if (value == "auto" || parse_moderation(value)) return {};
            return "expected auto or microseconds from 0 to 100000";
          },
          "auto|USEC")
      ->capture_default_str();

  start_section(app, "Pools (threadpool, prefork)");
  add_choice(app, "--pool-strategy", c.pool_strategy,
             {{"queue", PoolStrategy::queue}, {"accept", PoolStrategy::accept}},
             "threadpool: how connections reach the threads: a queue the main thread accepts "
             "into, or every thread accepts");
  app.add_option("--queue-limit", c.queue_limit,
                 "threadpool queue, prefork fdpass: connections that may wait for a free thread "
                 "or worker")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  add_choice(app, "--accept-strategy", c.accept_strategy,
             {{"shared", AcceptStrategy::shared},
              {"reuseport", AcceptStrategy::reuseport},
              {"fdpass", AcceptStrategy::fdpass}},
             "prefork: how connections reach the workers: one shared listener, an SO_REUSEPORT "
             "listener each, or passed over a Unix socket by the accepting master");
  app.add_option("--worker-threads", c.worker_threads, "prefork: threads per worker process")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();

  start_section(app, "Fibers (fiber)");
  app.add_option("--stack-size", c.stack_size, "fiber: stack bytes per connection")
      ->check(CLI::Range(std::size_t{16} * 1024, std::size_t{64} * 1024 * 1024))
      ->capture_default_str();

  start_section(app, "Completion (uring)");
  app.add_flag("--sqpoll", c.sqpoll, "uring: kernel-side submission polling");

  start_section(app, "Coroutines (asio-coro)");
  const CLI::Option* asio_io =
      add_choice(app, "--io", c.asio_io, {{"epoll", AsioIo::epoll}, {"uring", AsioIo::uring}},
                 "asio-coro: the Asio backend under the coroutines: its epoll reactor, or "
                 "io_uring (docs/COROUTINES.md)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "polyecho-server: error: {} (see --help)\n", e.what());
    return 2;
  }
  if (auto error = stats_address.empty() ? std::nullopt : parse_stats_address(stats_address, c)) {
    fmt::print(stderr, "polyecho-server: error: {}\n", *error);
    return 2;
  }
  c.flags = joined_flags(argc, argv);
  if (auto error = check_topology(c)) {
    fmt::print(stderr, "polyecho-server: error: {}\n", *error);
    return 2;
  }
  c.protocol.mode = *parse_mode(mode);
  c.protocol.transform = *parse_transform(transform);
  if (c.work.enabled() && c.protocol.mode == Mode::raw) {
    fmt::print(stderr,
               "polyecho-server: error: --work: raw mode has no messages to work on; use --mode "
               "line or --mode frame\n");
    return 2;
  }
  if (c.work.gil && c.work.kind != WorkKind::cpu && c.work.kind != WorkKind::block) {
    fmt::print(stderr,
               "polyecho-server: error: --gil: only cpu and block work take the lock; "
               "add --work cpu:N or --work block:N\n");
    return 2;
  }
  // Only asio-coro runs on Asio; elsewhere --io would be silently ignored.
  const BackendInfo* chosen =
      c.backend.empty() ? BackendRegistry::preferred_default() : BackendRegistry::find(c.backend);
  if (asio_io->count() > 0 && (chosen == nullptr || chosen->name != "asio-coro")) {
    fmt::print(stderr,
               "polyecho-server: error: --io: only asio-coro runs on Asio; add --backend "
               "asio-coro\n");
    return 2;
  }
  // Messages wait in the Session until their work is done, so their echo follows it.
  c.protocol.hold_messages = c.work.enabled();
  c.idle_timeout = to_millis(idle_seconds);
  c.drain_timeout = to_millis(drain_seconds);
  if (moderation != "auto") c.wait_moderation = parse_moderation(moderation);
  return std::nullopt;
}

}  // namespace polyecho
