#pragma once

#include <nlohmann/json.hpp>

#include "bench_command.hpp"
#include "bench_plan.hpp"

namespace polyecho::bench {

// The merged result of a run, ready to print.
struct BenchReport {
  const BenchPlan& plan;
  const BenchOptions& options;
  const client::ConnectOptions& connect;
  const BenchTotals& totals;
  double seconds = 0;   // the measured window
  double cpu_user = 0;  // the client's own CPU time (getrusage)
  double cpu_system = 0;
  std::string failure;  // a worker thread that threw, if any

  [[nodiscard]] bool ok() const noexcept {
    return failure.empty() && totals.errors.total() == 0 && totals.connections_failed == 0 &&
           totals.messages > 0;
  }
  [[nodiscard]] nlohmann::json to_json() const;
  void print_human() const;
};

}  // namespace polyecho::bench
