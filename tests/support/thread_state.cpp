#include "support/thread_state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "polyecho/unique_fd.hpp"
#include "support/server_process.hpp"

namespace polyecho::test {
namespace {

// The state letter of /proc/self/task/TID/stat: "TID (COMM) S ...". COMM may itself hold
// spaces and parentheses, so the state is found after the *last* ')'. '\0' when unreadable.
char thread_state(pid_t tid) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
  const unique_fd stat(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!stat) return '\0';
  char bytes[512];  // the state comes within the first few dozen bytes
  const ssize_t n = ::read(stat.get(), bytes, sizeof bytes);
  if (n <= 0) return '\0';
  const std::string_view line(bytes, static_cast<std::size_t>(n));
  const auto close = line.rfind(')');
  if (close == std::string_view::npos || close + 2 >= line.size()) return '\0';
  return line[close + 2];
}

}  // namespace

pid_t current_thread_id() noexcept {
  return ::gettid();
}

bool wait_until_blocked(pid_t tid) {
  const auto deadline = std::chrono::steady_clock::now() + kSafetyTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const char state = thread_state(tid);
    if (state == 'S') return true;
    if (state == '\0') return false;
    std::this_thread::yield();
  }
  return false;
}

bool wait_until_blocked(const std::atomic<pid_t>& tid) {
  const auto deadline = std::chrono::steady_clock::now() + kSafetyTimeout;
  while (tid.load() == 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return wait_until_blocked(tid.load());
}

}  // namespace polyecho::test
