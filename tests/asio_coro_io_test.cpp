// asio-coro --io uring where it cannot run. When the build has it, a seccomp filter makes
// io_uring_setup fail (as Docker's default profile does) in the server's process alone; the
// server must refuse on one line, before it listens. Without liburing the flag says so instead.
// (The io_uring variants themselves run in the conformance, flow-control and hostile suites.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "polyecho/unique_fd.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"

namespace polyecho::test {
namespace {

#if defined(__x86_64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "add this architecture's AUDIT_ARCH_* constant"
#endif

bool uring_variants_registered() {
  const auto& cases = all_backend_cases();
  return std::any_of(cases.begin(), cases.end(), [](const BackendCase& c) {
    return c.backend == "asio-coro" &&
           std::find(c.flags.begin(), c.flags.end(), "uring") != c.flags.end();
  });
}

// In the forked child, before exec: from here on io_uring_setup fails with `error` in this
// process and whatever it execs (no_new_privs lets an unprivileged process install the filter;
// it cannot be removed). Every other syscall, and other architectures' numbering, pass.
bool forbid_io_uring_setup(int error) {
  sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K,
               SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(error) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  const sock_fprog filter{.len = static_cast<unsigned short>(std::size(program)),
                          .filter = program};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) == 0;
}

struct Outcome {
  int status = -1;     // exit code, or -1 when it did not exit normally
  std::string output;  // stdout and stderr together
};

// Runs the server to completion under the filter. The server's output goes to a pipe that we
// read until EOF, so the wait needs no timeout of its own: a server that started listening would
// keep the pipe open, and the test's safety timeout (ctest's) ends it.
Outcome run_without_io_uring(const std::vector<std::string>& args, int error) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return {};
  unique_fd read_end(pipe_fds[0]);
  unique_fd write_end(pipe_fds[1]);
  std::vector<std::string> command{server_binary()};
  command.insert(command.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(command.size() + 1);
  for (auto& arg : command) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return {};
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::dup2(write_end.get(), STDOUT_FILENO);
    ::dup2(write_end.get(), STDERR_FILENO);
    if (!forbid_io_uring_setup(error)) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  write_end.reset();
  Outcome outcome;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(read_end.get(), chunk, sizeof chunk);
    if (n > 0) {
      outcome.output.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) outcome.status = WEXITSTATUS(status);
  return outcome;
}

class AsioCoroUringRefused : public ::testing::TestWithParam<int> {};

TEST_P(AsioCoroUringRefused, OnOneLineBeforeListening) {
  if (!uring_variants_registered()) {
    const auto [status, error] =
        ServerProcess::run_to_exit({"--backend", "asio-coro", "--io", "uring", "--port", "0"});
    EXPECT_EQ(status, 1);
    EXPECT_NE(error.find("liburing missing at build time"), std::string::npos) << error;
    return;
  }
  const Outcome outcome =
      run_without_io_uring({"--backend", "asio-coro", "--io", "uring", "--port", "0"}, GetParam());
  ASSERT_NE(outcome.status, 126) << "could not install the seccomp filter";
  EXPECT_EQ(outcome.status, 1) << outcome.output;
  EXPECT_EQ(outcome.output.find("listening on"), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("asio-coro --io uring: io_uring is unavailable"), std::string::npos)
      << outcome.output;
  EXPECT_NE(outcome.output.find(std::strerror(GetParam())), std::string::npos) << outcome.output;
  EXPECT_NE(outcome.output.find("--io epoll"), std::string::npos)
      << "should name the way out: " << outcome.output;
  EXPECT_EQ(std::count(outcome.output.begin(), outcome.output.end(), '\n'), 1) << outcome.output;
}

// EPERM is what Docker's default seccomp profile answers; ENOSYS is a kernel without io_uring.
INSTANTIATE_TEST_SUITE_P(Errors, AsioCoroUringRefused, ::testing::Values(EPERM, ENOSYS),
                         [](const auto& test) {
                           return std::string(test.param == EPERM ? "EPERM" : "ENOSYS");
                         });

}  // namespace
}  // namespace polyecho::test
