#include "metrics/stats_server.hpp"

#include <civetweb.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string_view>

#include "lifecycle/threads.hpp"
#include "metrics/live_page.hpp"

namespace polyecho {

namespace {

// Limits for a client of the stats port (civetweb's options).
constexpr const char* kThreads = "2";              // requests served at once
constexpr const char* kRequestTimeoutMs = "2000";  // to send a request, or to take a reply
constexpr const char* kMaxRequestBytes = "4096";   // request line and headers
constexpr const char* kQueue = "32";               // accepted connections waiting for a thread

void reply(mg_connection* connection, const char* type, std::string_view body) {
  mg_send_http_ok(connection, type, static_cast<long long>(body.size()));
  mg_write(connection, body.data(), body.size());
}

// civetweb's own log lines (a bad request, a timeout): not the operator's business at info.
int log_message(const mg_connection* /*connection*/, const char* message) {
  spdlog::debug("stats server: {}", message);
  return 1;
}

// civetweb's "listening_ports" is written like Endpoint::to_string(): "127.0.0.1:0", "[::1]:0".
std::string listening_port(const Endpoint& where) {
  return where.to_string();
}

}  // namespace

std::string StatsServer::unsupported(const Endpoint& where) {
  constexpr unsigned kIpv6Feature = 8;  // civetweb.h: mg_check_feature's bit for USE_IPV6
  if (where.family() == AF_INET6 && mg_check_feature(kIpv6Feature) == 0)
    return "this build's civetweb has no IPv6; use an IPv4 address such as 127.0.0.1:9100";
  return {};
}

StatsServer::StatsServer(const Endpoint& where, const Stats& stats, ServerDescription description)
    : stats_(stats),
      description_(std::move(description)),
      server_(::getpid()),
      started_(std::chrono::steady_clock::now()) {
  mg_init_library(0);
  const std::string ports = listening_port(where);
  const char* options[] = {"listening_ports",
                           ports.c_str(),
                           "num_threads",
                           kThreads,
                           "request_timeout_ms",
                           kRequestTimeoutMs,
                           "max_request_size",
                           kMaxRequestBytes,
                           "connection_queue",
                           kQueue,
                           "enable_keep_alive",
                           "no",
                           nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = log_message;
  {
    // civetweb's threads are born here and inherit the mask: SIGINT/SIGTERM stay with the
    // thread that watches for them.
    const StopSignalsBlocked blocked;
    context_ = mg_start(&callbacks, this, options);
  }
  if (context_ == nullptr) {
    mg_exit_library();
    throw std::runtime_error(fmt::format("--stats: cannot listen on {}", where.to_string()));
  }
  for (const char* path : {"/", "/metrics", "/stats.json", "/dygraph.min.js", "/dygraph.min.css"})
    mg_set_request_handler(context_, fmt::format("{}$", path).c_str(), serve, this);
  mg_server_port port{};
  bound_ = where;
  if (mg_get_server_ports(context_, 1, &port) == 1)
    bound_ = resolve_endpoint(where.host(), static_cast<std::uint16_t>(port.port));
}

StatsServer::~StatsServer() {
  mg_stop(context_);  // joins civetweb's threads
  mg_exit_library();
}

MetricsSnapshot StatsServer::snapshot() {
  ProcessFigures process;
  const auto now = std::chrono::steady_clock::now();
  {
    const std::lock_guard lock(process_mutex_);
    if (process_at_ == std::chrono::steady_clock::time_point{} ||
        now - process_at_ >= kProcessReuse) {
      process_ = read_process_figures(server_);
      process_at_ = now;
    }
    process = process_;
  }
  return take_snapshot(stats_, process, std::chrono::duration<double>(now - started_).count());
}

// On a civetweb thread. Only GET (and only these paths, registered above: anything else is
// civetweb's 404, since no document root is set). Nothing may escape into civetweb's C code.
int StatsServer::serve(mg_connection* connection, void* self_pointer) noexcept {
  try {
    return static_cast<StatsServer*>(self_pointer)->answer(connection);
  } catch (const std::exception& e) {
    spdlog::warn("stats server: {}", e.what());
    mg_send_http_error(connection, 500, "internal error\n");
    return 500;
  }
}

int StatsServer::answer(mg_connection* connection) {
  const mg_request_info* request = mg_get_request_info(connection);
  if (std::strcmp(request->request_method, "GET") != 0) {
    mg_send_http_error(connection, 405, "only GET\n");
    return 405;
  }
  const std::string_view path = request->local_uri;
  if (path == "/metrics") {
    reply(connection, "text/plain; version=0.0.4; charset=utf-8",
          to_prometheus_text(snapshot(), description_));
  } else if (path == "/stats.json") {
    reply(connection, "application/json", to_json(snapshot(), description_));
  } else if (path == "/dygraph.min.js") {
    reply(connection, "text/javascript", live_page::kDygraphJs);
  } else if (path == "/dygraph.min.css") {
    reply(connection, "text/css", live_page::kDygraphCss);
  } else {
    reply(connection, "text/html; charset=utf-8", live_page::kHtml);
  }
  return 200;
}

}  // namespace polyecho
