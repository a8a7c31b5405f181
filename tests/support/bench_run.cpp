#include "support/bench_run.hpp"

#include <sys/wait.h>

#include <cstdio>
#include <memory>

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

}  // namespace polyecho::test
