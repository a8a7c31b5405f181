#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "polyecho/stats.hpp"

namespace polyecho {

// What the server process and its children cost the machine right now, read from /proc.
struct ProcessFigures {
  std::uint64_t rss_bytes = 0;  // resident set of the server and its children, summed
  std::uint64_t threads = 0;    // threads of the server and its children
  std::uint64_t workers = 0;    // child processes (fork, prefork, --processes)
  double cpu_seconds = 0;       // user + system, children included (reaped ones too)
};

// Every figure the stats endpoints show, taken at one moment (each counter read once).
struct MetricsSnapshot {
  double uptime_seconds = 0;
  std::uint64_t accepted = 0;
  std::uint64_t rejected = 0;
  std::int64_t active = 0;
  std::uint64_t errors_by_kind[kErrorKinds] = {};
  std::uint64_t offloaded = 0;
  std::int64_t offload_queue_depth = 0;
  TrafficTotals traffic;
  struct Loop {
    std::uint64_t connections = 0;
    std::uint64_t wakeups = 0;
    std::uint64_t events = 0;
    std::uint64_t moderated = 0;
  };
  std::vector<Loop> loops;  // in the order the loops started
  ProcessFigures process;
};

// What the page and the info series name: the model and the flags it was started with.
struct ServerDescription {
  std::string model;
  std::string flags;
};

// Reads /proc/PID/stat for `server` and each of its children (at most kMaxChildren of them,
// so a scrape's work is bounded however many connections a fork model holds).
[[nodiscard]] ProcessFigures read_process_figures(pid_t server);
inline constexpr std::size_t kMaxChildren = 4096;

// The counters as they are now, with process figures read earlier (they cost a /proc walk).
[[nodiscard]] MetricsSnapshot take_snapshot(const Stats& stats, const ProcessFigures& process,
                                            double uptime_seconds);

// The Prometheus text exposition format (version 0.0.4) of a snapshot, through prometheus-cpp.
[[nodiscard]] std::string to_prometheus_text(const MetricsSnapshot& snapshot,
                                             const ServerDescription& description);
// The same figures as one JSON object (GET /stats.json; the live page reads it).
[[nodiscard]] std::string to_json(const MetricsSnapshot& snapshot,
                                  const ServerDescription& description);

}  // namespace polyecho
