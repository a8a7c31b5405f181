#pragma once

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <string>

#include "metrics/metrics_snapshot.hpp"
#include "polyecho/endpoint.hpp"
#include "polyecho/stats.hpp"

struct mg_context;
struct mg_connection;

namespace polyecho {

// --stats HOST:PORT: a small HTTP server, off the echo path, that shows the shared Stats.
//   GET /metrics     Prometheus text format
//   GET /stats.json  the same figures as JSON
//   GET /            the live page (its chart library is embedded in the binary)
// HTTP is civetweb's (Debian's libcivetweb): parsing, timeouts and limits are the library's.
// It runs on civetweb's own few threads, started with the stop signals blocked, so a slow or
// hostile client of this port costs those threads, never an event loop. Read-only: it serves
// counters and nothing a client sent. Owns the civetweb context; stopping joins its threads.
//
// Lives in the master process: a forked child gets no copy of these threads, and every
// process adds to the same shared Stats, so the figures are process-wide.
class StatsServer {
 public:
  // Why civetweb cannot serve on `where`, or empty when it can: Debian 12's civetweb is built
  // without IPv6, so an IPv6 address is refused up front (exit 2) instead of failing to bind.
  [[nodiscard]] static std::string unsupported(const Endpoint& where);
  // Binds and starts serving; throws std::runtime_error naming the address when it cannot.
  StatsServer(const Endpoint& where, const Stats& stats, ServerDescription description);
  ~StatsServer();
  StatsServer(const StatsServer&) = delete;
  StatsServer& operator=(const StatsServer&) = delete;

  // The address it listens on, with the real port when 0 was asked for.
  [[nodiscard]] const Endpoint& bound() const noexcept { return bound_; }

 private:
  static int serve(mg_connection* connection, void* self) noexcept;
  int answer(mg_connection* connection);
  // The counters now, with process figures no older than kProcessReuse: a flood of requests
  // walks /proc once per period (the counters cost a few microseconds to sum).
  MetricsSnapshot snapshot();
  static constexpr std::chrono::milliseconds kProcessReuse{200};

  const Stats& stats_;
  const ServerDescription description_;
  const pid_t server_;
  const std::chrono::steady_clock::time_point started_;
  std::mutex process_mutex_;
  ProcessFigures process_;
  std::chrono::steady_clock::time_point process_at_{};
  Endpoint bound_;
  mg_context* context_ = nullptr;
};

}  // namespace polyecho
