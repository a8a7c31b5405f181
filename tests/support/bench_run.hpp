#pragma once

#include <cstdint>
#include <string>

namespace polyecho::test {

// One `polyecho-client bench --json` run against 127.0.0.1:port.
struct BenchRun {
  int status = -1;     // the client's exit status (0: every byte verified, nothing failed)
  std::string output;  // stdout only: the JSON object
};

// `flags` go after `bench --json`; --timeout 10 bounds every wait inside the bench.
BenchRun run_bench(std::uint16_t port, const std::string& flags);

// Runs `connections` ping-pong connections against the server for 2 s (after a 1 s warmup that
// lets them all open) and checks (gtest) that each got a fair share of the messages: the
// slowest at least a quarter of the median, the busiest at most twice it, Jain's index at least
// 0.9. The bounds leave wide room for a slow or loaded machine and sanitizers; a starved
// connection or a hog shows up far outside them. One client thread drives them all: with two,
// a client thread that got less CPU would make its half of the connections look starved.
void expect_fair_share(std::uint16_t port, int connections);

}  // namespace polyecho::test
