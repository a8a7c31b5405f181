#include "bench_plan.hpp"

#include <time.h>

#include <algorithm>

namespace polyecho::bench {

const char* to_string(BenchMode mode) noexcept {
  switch (mode) {
    case BenchMode::closed_loop:
      return "closed_loop";
    case BenchMode::open_loop:
      return "open_loop";
    case BenchMode::reconnect:
      return "reconnect";
    case BenchMode::idle:
      return "idle";
    case BenchMode::stream:
      return "stream";
  }
  return "?";
}

std::int64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no syscall, about 20 ns
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Fairness fairness_of(std::vector<std::uint64_t>& counts) {
  Fairness f;
  if (counts.empty()) return f;
  std::sort(counts.begin(), counts.end());
  const std::size_t n = counts.size();
  f.min = counts.front();
  f.p1 = counts[n / 100];
  f.median = counts[n / 2];
  f.max = counts.back();
  double sum = 0;
  double squares = 0;
  for (const std::uint64_t x : counts) {
    sum += static_cast<double>(x);
    squares += static_cast<double>(x) * static_cast<double>(x);
  }
  f.jain = squares > 0 ? sum * sum / (static_cast<double>(n) * squares) : 0;
  return f;
}

void BenchTotals::merge(const BenchTotals& o) {
  messages += o.messages;
  connections_ok += o.connections_ok;
  connections_failed += o.connections_failed;
  starved += o.starved;
  not_opened += o.not_opened;
  behind_schedule += o.behind_schedule;
  last_completion = std::max(last_completion, o.last_completion);
  errors.merge(o.errors);
  latency.merge(o.latency);
  per_connection.insert(per_connection.end(), o.per_connection.begin(), o.per_connection.end());
  if (first_error.empty()) first_error = o.first_error;
}

}  // namespace polyecho::bench
