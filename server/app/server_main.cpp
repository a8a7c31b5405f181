#include "app/server_main.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/backend_registry.hpp"
#include "polyecho/stop_signal.hpp"

#ifndef POLYECHO_VERSION
#define POLYECHO_VERSION "0.0.0"
#endif

namespace polyecho {

namespace {

struct CommandLine {
  ServerConfig config;
  bool list_backends = false;
  bool json = false;
};

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
  for (const auto& info : BackendRegistry::all()) names.push_back(info.name);
  return names;
}

std::chrono::milliseconds to_millis(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0 + 0.5));
}

// Fills `line` from argv. Returns an exit code when the program should stop here.
std::optional<int> parse_command_line(int argc, char** argv, CommandLine& line) {
  ServerConfig& c = line.config;
  CLI::App app{"polyecho-server: a TCP echo server with pluggable concurrency models",
               "polyecho-server"};
  app.set_version_flag("--version", std::string("polyecho ") + POLYECHO_VERSION);
  // Last one wins, as in most Unix tools: wrappers (the container entrypoint, scripts) put
  // defaults first and let the user's flags override them.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string mode = "raw";
  std::string transform = "none";
  double idle_seconds = 0;
  double drain_seconds = 5;

  app.add_flag("--list-backends", line.list_backends, "List the concurrency models and exit");
  app.add_flag("--json", line.json, "With --list-backends: print JSON");
  app.add_option("--backend", c.backend, "Concurrency model (see --list-backends)")
      ->check(CLI::IsMember(backend_names()));
  app.add_option("--host", c.host, "Address to bind (IPv4 or IPv6)")->capture_default_str();
  app.add_option("--port", c.port, "TCP port; 0 picks a free one")->capture_default_str();
  app.add_option("--backlog", c.backlog, "listen() backlog")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--mode", mode, "raw: RFC 862 byte echo; line: LF-delimited lines")
      ->check(CLI::IsMember({"raw", "line"}))
      ->capture_default_str();
  app.add_option("--transform", transform, "Line mode: transform echoed lines")
      ->check(CLI::IsMember({"none", "upper"}))
      ->capture_default_str();
  app.add_option("--max-line", c.protocol.max_line, "Line mode: longest line in bytes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-buffer", c.protocol.max_buffer, "Per-connection cap on buffered bytes")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
      ->capture_default_str();
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
                 "Threads, processes or loops for models that have them (0 = model default)")
      ->check(CLI::Range(0u, 4096u))
      ->capture_default_str();
  app.add_option("--user", c.user, "Drop privileges to this user after binding");
  app.add_flag("--edge-triggered", c.edge_triggered, "epoll: use EPOLLET");
  app.add_option("--pool-strategy", c.pool_strategy, "threadpool: queue | accept")
      ->check(CLI::IsMember({"queue", "accept"}))
      ->capture_default_str();
  app.add_option("--queue-limit", c.queue_limit, "Pooled models: bound of the hand-off queue")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--accept-strategy", c.accept_strategy, "prefork: shared | reuseport | fdpass")
      ->check(CLI::IsMember({"shared", "reuseport", "fdpass"}))
      ->capture_default_str();
  app.add_option("--worker-threads", c.worker_threads, "prefork: threads per worker process")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--stack-size", c.stack_size, "fiber: stack bytes per connection")
      ->check(CLI::Range(std::size_t{16} * 1024, std::size_t{64} * 1024 * 1024))
      ->capture_default_str();
  app.add_flag("--sqpoll", c.sqpoll, "uring: kernel-side submission polling");
  app.add_option("--log-level", c.log_level, "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();

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
  c.protocol.mode = *parse_mode(mode);
  c.protocol.transform = *parse_transform(transform);
  c.idle_timeout = to_millis(idle_seconds);
  c.drain_timeout = to_millis(drain_seconds);
  return std::nullopt;
}

void print_backends(bool json) {
  if (json) {
    auto list = nlohmann::json::array();
    for (const auto& b : BackendRegistry::all()) {
      list.push_back({{"name", b.name},
                      {"description", b.description},
                      {"uses_workers", b.uses_workers},
                      {"serves_concurrently", b.serves_concurrently},
                      {"threaded", b.threaded},
                      {"threads_flag", b.threads_flag},
                      {"variants", b.variants}});
    }
    fmt::print("{}\n", list.dump(2));
    return;
  }
  const auto* preferred = BackendRegistry::preferred_default();
  for (const auto& b : BackendRegistry::all()) {
    fmt::print("{:<12} {:<9} {}{}\n", b.name, b.uses_workers ? "workers" : "-", b.description,
               &b == preferred ? " [default]" : "");
  }
  for (const auto& m : BackendRegistry::missing()) fmt::print("{} ({})\n", m.name, m.reason);
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("polyecho");
  logger->set_pattern("polyecho[%P] %l: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// Binding to port 7 needs root; serving it does not. Called after bind, before any connection.
void drop_privileges(const std::string& user) {
  const passwd* entry = ::getpwnam(user.c_str());
  if (entry == nullptr) throw std::runtime_error(fmt::format("--user: no such user '{}'", user));
  if (::setgroups(0, nullptr) != 0) throw_errno("setgroups");
  if (::setgid(entry->pw_gid) != 0) throw_errno("setgid");
  if (::setuid(entry->pw_uid) != 0) throw_errno("setuid");
  // Make sure there is no way back.
  if (::setuid(0) == 0 && entry->pw_uid != 0)
    throw std::runtime_error("--user: privileges were not dropped");
}

}  // namespace

int server_main(int argc, char** argv) {
  CommandLine line;
  if (auto exit_code = parse_command_line(argc, argv, line)) return *exit_code;
  const ServerConfig& config = line.config;
  if (line.list_backends) {
    print_backends(line.json);
    return 0;
  }
  setup_logging(config.log_level);

  const BackendInfo* info = config.backend.empty() ? BackendRegistry::preferred_default()
                                                   : BackendRegistry::find(config.backend);
  if (info == nullptr) {
    fmt::print(stderr, "polyecho-server: error: no backend is compiled in\n");
    return 1;
  }

  Endpoint endpoint;
  try {
    endpoint = resolve_endpoint(config.host, config.port);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "polyecho-server: error: --host: {}\n", e.what());
    return 2;
  }

  std::unique_ptr<Backend> backend;
  try {
    backend = info->create(config);
  } catch (const BackendUnavailable& e) {
    fmt::print(stderr, "polyecho-server: {}\n", e.what());
    return 1;
  }

  ignore_sigpipe();
  SharedStats stats;
  try {
    PeerLimit peers(config.max_per_ip, config.max_connections);  // before any fork: shared
    stop_signal::install();
    ListenerOptions options{.backlog = config.backlog};
    backend->adjust_listener(options);
    unique_fd listener;
    try {
      listener = make_listener(endpoint, options);
    } catch (const std::system_error& e) {
      fmt::print(stderr, "polyecho-server: cannot listen on {}: {}\n", endpoint.to_string(),
                 e.what());
      return 1;
    }
    const Endpoint bound = local_endpoint(listener.get());
    if (!config.user.empty()) drop_privileges(config.user);

    fmt::print("polyecho: {} listening on {}\n", info->name, bound.to_string());
    std::fflush(stdout);

    Admission admission(config.max_connections, stats.get(), peers);
    ServerContext context{config, std::move(listener), bound, stats.get(), peers, admission};
    const int rc = backend->run(context);
    fmt::print("polyecho: stopped; {}\n", stats.get().summary());
    std::fflush(stdout);
    return rc;
  } catch (const std::exception& e) {
    fmt::print(stderr, "polyecho-server: {}\n", e.what());
    return 1;
  }
}

}  // namespace polyecho
