#include "metrics/metrics_snapshot.hpp"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace polyecho {

namespace {

struct StatLine {
  bool ok = false;
  std::uint64_t cpu_ticks = 0;  // utime + stime + cutime + cstime
  std::uint64_t threads = 0;
  std::uint64_t rss_pages = 0;
};

// /proc/PID/stat: the command name is in parentheses and may hold spaces, so fields are
// counted after the last ')'. Field 3 is the state; 14-17 the CPU ticks, 20 the threads,
// 24 the resident pages (proc(5)).
StatLine read_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  const auto close = text.rfind(')');
  StatLine line;
  if (close == std::string::npos) return line;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index >= 14 && index <= 17) line.cpu_ticks += std::stoull(field);
    if (index == 20) line.threads = std::stoull(field);
    if (index == 24) {
      line.rss_pages = std::stoull(field);
      line.ok = true;
      break;
    }
  }
  return line;
}

// Children of every thread of `pid` (each thread lists the children it forked).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> children;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (dir == nullptr) return children;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream in(tasks + "/" + entry->d_name + "/children");
    pid_t child = 0;
    while (children.size() < kMaxChildren && in >> child) children.push_back(child);
  }
  ::closedir(dir);
  return children;
}

}  // namespace

ProcessFigures read_process_figures(pid_t server) {
  static const auto kTicks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const auto kPage = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  ProcessFigures figures;
  std::uint64_t ticks = 0;
  const auto add = [&](pid_t pid) {
    const StatLine line = read_stat(pid);
    if (!line.ok) return false;  // gone meanwhile
    ticks += line.cpu_ticks;
    figures.threads += line.threads;
    figures.rss_bytes += line.rss_pages * kPage;
    return true;
  };
  add(server);
  for (const pid_t child : children_of(server)) {
    if (add(child)) ++figures.workers;
  }
  figures.cpu_seconds = static_cast<double>(ticks) / kTicks;
  return figures;
}

MetricsSnapshot take_snapshot(const Stats& stats, const ProcessFigures& process,
                              double uptime_seconds) {
  MetricsSnapshot s;
  s.uptime_seconds = uptime_seconds;
  s.accepted = stats.accepted.load(std::memory_order_relaxed);
  s.rejected = stats.rejected.load(std::memory_order_relaxed);
  s.active = stats.active.load(std::memory_order_relaxed);
  for (std::size_t k = 0; k < kErrorKinds; ++k)
    s.errors_by_kind[k] = stats.errors_by_kind[k].load(std::memory_order_relaxed);
  s.offloaded = stats.offloaded.load(std::memory_order_relaxed);
  s.offload_queue_depth = stats.offload_queue_depth.load(std::memory_order_relaxed);
  s.traffic = stats.traffic_totals();
  const std::size_t loops =
      std::min<std::size_t>(stats.loops_started.load(std::memory_order_relaxed), Stats::kMaxLoops);
  for (std::size_t i = 0; i < loops; ++i) {
    const LoopStats& loop = stats.loops[i];
    s.loops.push_back({loop.connections.load(std::memory_order_relaxed),
                       loop.wakeups.load(std::memory_order_relaxed),
                       loop.events.load(std::memory_order_relaxed),
                       loop.moderated.load(std::memory_order_relaxed)});
  }
  s.process = process;
  return s;
}

}  // namespace polyecho
