#include "app/server_main.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "app/backend_registry.hpp"
#include "app/cli.hpp"
#include "metrics/stats_server.hpp"
#include "polyecho/stop_signal.hpp"
#include "topology/loop_topology.hpp"
#include "topology/process_topology.hpp"

namespace polyecho {

namespace {

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
                      {"loop_model", b.loop_model},
                      {"supports_offload", b.supports_offload},
                      {"variants", b.variants}});
    }
    fmt::print("{}\n", list.dump(2));
    return;
  }
  const auto* preferred = BackendRegistry::preferred_default();
  std::size_t name_width = 12;  // a column as wide as the longest name
  for (const auto& b : BackendRegistry::all()) name_width = std::max(name_width, b.name.size());
  for (const auto& b : BackendRegistry::all()) {
    fmt::print("{:<{}} {:<9} {}{}\n", b.name, name_width, b.uses_workers ? "workers" : "-",
               b.description, &b == preferred ? " [default]" : "");
  }
  for (const auto& m : BackendRegistry::missing()) fmt::print("{} ({})\n", m.name, m.reason);
}

std::string offload_models() {
  std::vector<std::string> names;
  for (const auto& b : BackendRegistry::all()) {
    if (b.supports_offload) names.push_back(b.name);
  }
  return fmt::format("{}", fmt::join(names, ", "));
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

  if (config.offload_threads > 0 && !info->supports_offload) {
    fmt::print(stderr,
               "polyecho-server: error: --offload: the {} model does not support it (it does: "
               "{})\n",
               info->name, offload_models());
    return 2;
  }

  Endpoint endpoint;
  Endpoint stats_endpoint;
  try {
    endpoint = resolve_endpoint(config.host, config.port);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "polyecho-server: error: --host: {}\n", e.what());
    return 2;
  }
  try {
    if (config.stats_enabled()) {
      stats_endpoint = resolve_endpoint(config.stats_host, config.stats_port);
      if (auto why = StatsServer::unsupported(stats_endpoint); !why.empty())
        throw std::invalid_argument(why);
    }
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "polyecho-server: error: --stats: {}\n", e.what());
    return 2;
  }

  SharedStats stats;
  // Every Session of every model reports its traffic here (before any fork: children share it).
  StatsObserver observer(stats.get());
  line.config.protocol.observer = &observer;
  std::unique_ptr<Backend> backend;
  try {
    backend = info->create(config);
  } catch (const BackendUnavailable& e) {
    fmt::print(stderr, "polyecho-server: {}\n", e.what());
    return 1;
  }

  ignore_sigpipe();
  try {
    PeerLimit peers(config.max_per_ip, config.max_connections);  // before any fork: shared
    stop_signal::install();
    ListenerOptions options{.backlog = config.backlog};
    backend->adjust_listener(options);
    if (info->loop_model) adjust_for_topology(options, config, info->default_acceptor, 1);
    unique_fd listener;
    try {
      listener = make_listener(endpoint, options);
    } catch (const std::system_error& e) {
      fmt::print(stderr, "polyecho-server: cannot listen on {}: {}\n", endpoint.to_string(),
                 e.what());
      return 1;
    }
    const Endpoint bound = local_endpoint(listener.get());
    // Before dropping privileges (a low port) and before any fork: its threads stay in this
    // process, and children only add to the shared Stats it reads.
    std::optional<StatsServer> stats_server;
    if (config.stats_enabled()) {
      try {
        stats_server.emplace(stats_endpoint, stats.get(),
                             ServerDescription{info->name, config.flags});
      } catch (const std::runtime_error& e) {
        fmt::print(stderr, "polyecho-server: {}\n", e.what());
        return 1;
      }
    }
    if (!config.user.empty()) drop_privileges(config.user);
    if (config.work.kind == WorkKind::cpu) {
      // Before the first connection, and before any fork: every process shares the figure.
      CpuWork::calibrate();
      spdlog::debug("cpu work: {:.0f} kernel rounds per microsecond",
                    CpuWork::rounds_per_microsecond());
    }

    fmt::print("polyecho: {} listening on {}\n", info->name, bound.to_string());
    if (stats_server)
      fmt::print("polyecho: stats on http://{}/\n", stats_server->bound().to_string());
    std::fflush(stdout);

    Admission admission(config.max_connections, stats.get(), peers);
    ServerContext context{config, std::move(listener), bound, stats.get(), peers, admission};
    const int rc = config.processes > 0 ? run_processes(context, *backend, info->default_acceptor)
                                        : backend->run(context);
    fmt::print("polyecho: stopped; {}\n", stats.get().summary());
    std::fflush(stdout);
    return rc;
  } catch (const std::exception& e) {
    fmt::print(stderr, "polyecho-server: {}\n", e.what());
    return 1;
  }
}

}  // namespace polyecho
