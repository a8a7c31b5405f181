#include "support/bench_run.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "support/server_process.hpp"

namespace polyecho::test {

BenchRun run_bench(std::uint16_t port, const std::string& flags) {
  // stderr stays out of the JSON.
  const std::string command = client_binary() + " --port " + std::to_string(port) +
                              " --timeout 10 bench --json " + flags + " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  BenchRun run;
  char chunk[4096];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, pipe.get())) > 0) run.output.append(chunk, n);
  const int status = ::pclose(pipe.release());
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

void expect_fair_share(std::uint16_t port, int connections) {
  const BenchRun run = run_bench(port, "--connections " + std::to_string(connections) +
                                           " --duration 2 --warmup 1 --threads 1");
  ASSERT_EQ(run.status, 0) << run.output;
  const auto report = nlohmann::json::parse(run.output);
  const auto& spread = report["per_connection_messages"];
  ASSERT_EQ(spread["count"], connections) << run.output;
  const auto median = spread["median"].get<std::uint64_t>();
  ASSERT_GE(median, 4u) << "too little traffic to judge: " << run.output;
  EXPECT_GE(spread["min"].get<std::uint64_t>() * 4, median) << run.output;
  EXPECT_LE(spread["max"].get<std::uint64_t>(), median * 2) << run.output;
  EXPECT_GE(spread["jain"].get<double>(), 0.9) << run.output;
}

}  // namespace polyecho::test
