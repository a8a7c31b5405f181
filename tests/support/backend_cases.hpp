#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace polyecho::test {

// One way to run a model: a registered backend plus one of its variants' flags.
struct BackendCase {
  std::string backend;
  std::vector<std::string> flags;  // e.g. {"--workers", "2"}
  bool serves_concurrently = true;
  bool uses_workers = false;
  bool loop_model = false;  // event loops, each serving many connections on one thread
  std::string label;        // gtest-safe name, e.g. "epoll_workers_2"

  // Processes that serve connections, each with its own descriptor table: N with
  // "--processes N", else 1.
  [[nodiscard]] unsigned serving_processes() const;
  // "--backend NAME FLAGS... EXTRA..."
  [[nodiscard]] std::vector<std::string> args(const std::vector<std::string>& extra = {}) const;
};

// Every backend the server binary registers, times each variant it declares (plus its
// defaults), read from `polyecho-server --list-backends --json`. This is what makes a new
// backend join every suite the moment it registers.
const std::vector<BackendCase>& all_backend_cases();
std::string case_name(const BackendCase& c);
// gtest prints parameters with this instead of a byte dump.
void PrintTo(const BackendCase& c, std::ostream* out);

}  // namespace polyecho::test
