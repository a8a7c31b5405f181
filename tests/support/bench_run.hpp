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

}  // namespace polyecho::test
