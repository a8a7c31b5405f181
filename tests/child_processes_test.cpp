// ChildProcesses, the child-process lifecycle fork and prefork share, with real processes:
// exit statuses reported on reap, the escalating stop (SIGTERM, then SIGKILL at the second
// deadline), the child's signal set-up, and no zombie left behind. A child tells the test it is
// ready through a pipe; timeouts are only safety nets for a broken implementation.
#include "lifecycle/child_processes.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <vector>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho::test {
namespace {

using namespace std::chrono_literals;
using Clock = ChildProcesses::Clock;

constexpr auto kSafetyTimeout = 10s;

int poll_timeout(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}

// One byte from one process to the other, either way: "I am ready, go on now" (the child's
// handlers are in place; the test wants the child to end).
class ReadyPipe {
 public:
  ReadyPipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
    read_.reset(fds[0]);
    write_.reset(fds[1]);
  }
  void tell() const noexcept {
    const char byte = 1;
    [[maybe_unused]] auto ignored = ::write(write_.get(), &byte, 1);
  }
  // True once the other side told, false at the safety timeout.
  [[nodiscard]] bool wait() const {
    pollfd fd{read_.get(), POLLIN, 0};
    if (::poll(&fd, 1, poll_timeout(Clock::now() + kSafetyTimeout)) != 1) return false;
    char byte = 0;
    return ::read(read_.get(), &byte, 1) == 1;
  }

 private:
  unique_fd read_;
  unique_fd write_;
};

// True when the test process has no child left at all, reaped or not.
bool no_child_left() {
  return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

[[noreturn]] void block_forever() {
  for (;;) ::pause();
}

class ChildProcessesTest : public ::testing::Test {
 protected:
  // The child installs a fresh copy of the parent's stop_signal, as in the server.
  static void SetUpTestSuite() { stop_signal::install(); }

  void TearDown() override { EXPECT_TRUE(children_.empty()) << "a test left a child running"; }

  // Reaps on SIGCHLD until `count` exits were reported (or the safety timeout passed).
  void reap_until(std::size_t count) {
    const auto deadline = Clock::now() + kSafetyTimeout;
    while (exits_.size() < count && Clock::now() < deadline) {
      pollfd fd{stop_signal::child_fd(), POLLIN, 0};
      ::poll(&fd, 1, poll_timeout(deadline));
      children_.reap();
    }
  }

  [[nodiscard]] const ChildExit* exit_of(pid_t pid) const {
    const auto it = std::find_if(exits_.begin(), exits_.end(),
                                 [pid](const ChildExit& exit) { return exit.pid == pid; });
    return it == exits_.end() ? nullptr : &*it;
  }

  std::vector<ChildExit> exits_;
  ChildProcesses children_{{}, [this](const ChildExit& exit) { exits_.push_back(exit); }};
};

TEST_F(ChildProcessesTest, ReapReportsEachExitStatusEvenWhenExitsCollapse) {
  // Three exits may arrive as one SIGCHLD; every one must still be reported.
  std::vector<pid_t> pids;
  for (int status : {0, 7, 42}) pids.push_back(children_.spawn([status] { return status; }));
  for (pid_t pid : pids) ASSERT_GT(pid, 0);
  EXPECT_EQ(children_.size(), 3u);
  reap_until(3);
  ASSERT_EQ(exits_.size(), 3u);
  const int expected[] = {0, 7, 42};
  for (std::size_t i = 0; i < pids.size(); ++i) {
    const ChildExit* exit = exit_of(pids[i]);
    ASSERT_NE(exit, nullptr) << pids[i];
    ASSERT_TRUE(WIFEXITED(exit->status));
    EXPECT_EQ(WEXITSTATUS(exit->status), expected[i]);
    EXPECT_FALSE(exit->killed);
  }
  EXPECT_TRUE(children_.empty());
  EXPECT_TRUE(no_child_left());
}

TEST_F(ChildProcessesTest, ExceptionInTheBodyGivesTheExceptionStatus) {
  ASSERT_GT(children_.spawn([]() -> int { throw std::runtime_error("body failed on purpose"); }),
            0);
  reap_until(1);
  ASSERT_EQ(exits_.size(), 1u);
  ASSERT_TRUE(WIFEXITED(exits_[0].status));
  EXPECT_EQ(WEXITSTATUS(exits_[0].status), 1);

  // prefork's choice: a worker that throws "could not start".
  std::vector<ChildExit> own;
  ChildProcesses workers({.exception_status = 3},
                         [&](const ChildExit& exit) { own.push_back(exit); });
  ASSERT_GT(workers.spawn([]() -> int { throw std::runtime_error("setup failed on purpose"); }), 0);
  workers.stop(Clock::now() + kSafetyTimeout, Clock::now() + 2 * kSafetyTimeout);
  ASSERT_EQ(own.size(), 1u);
  ASSERT_TRUE(WIFEXITED(own[0].status));
  EXPECT_EQ(WEXITSTATUS(own[0].status), 3);
}

TEST_F(ChildProcessesTest, ChildIgnoresSigintAndGetsTheParentDeathSignal) {
  std::vector<ChildExit> own;
  ChildProcesses workers({.parent_death_signal = SIGKILL},
                         [&](const ChildExit& exit) { own.push_back(exit); });
  const pid_t pid = workers.spawn([] {
    struct sigaction action {};
    ::sigaction(SIGINT, nullptr, &action);
    int death_signal = 0;
    ::prctl(PR_GET_PDEATHSIG, &death_signal);
    return (action.sa_handler == SIG_IGN ? 0 : 1) | (death_signal == SIGKILL ? 0 : 2);
  });
  ASSERT_GT(pid, 0);
  workers.stop(Clock::now() + kSafetyTimeout, Clock::now() + 2 * kSafetyTimeout);
  ASSERT_EQ(own.size(), 1u);
  ASSERT_TRUE(WIFEXITED(own[0].status));
  EXPECT_EQ(WEXITSTATUS(own[0].status), 0) << "1: SIGINT not ignored, 2: wrong death signal";
}

TEST_F(ChildProcessesTest, StopWaitsForAChildThatEndsBeforeTheFirstDeadline) {
  ReadyPipe go;
  const pid_t pid = children_.spawn([&] {
    ::signal(SIGTERM, SIG_DFL);  // a SIGTERM before the first deadline would show as a kill
    return go.wait() ? 0 : 1;
  });
  ASSERT_GT(pid, 0);
  go.tell();
  const auto start = Clock::now();
  children_.stop(start + kSafetyTimeout, start + 2 * kSafetyTimeout);
  EXPECT_LT(Clock::now() - start, kSafetyTimeout) << "stop did not return when the child ended";
  ASSERT_EQ(exits_.size(), 1u);
  EXPECT_EQ(exits_[0].pid, pid);
  ASSERT_TRUE(WIFEXITED(exits_[0].status)) << "signalled before the first deadline";
  EXPECT_EQ(WEXITSTATUS(exits_[0].status), 0);
}

TEST_F(ChildProcessesTest, ChildThatExitsOnSigtermIsNotKilled) {
  ReadyPipe ready;
  const pid_t pid = children_.spawn([&] {
    // Its own stop_signal (reinstalled by spawn) turns the SIGTERM into a readable stop fd.
    ready.tell();
    pollfd fd{stop_signal::stop_fd(), POLLIN, 0};
    ::poll(&fd, 1, -1);
    return stop_signal::requested() ? 5 : 6;
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(ready.wait());
  const auto start = Clock::now();
  children_.stop(start, start + kSafetyTimeout);  // SIGTERM at once, as prefork does
  EXPECT_LT(Clock::now() - start, kSafetyTimeout);
  ASSERT_EQ(exits_.size(), 1u);
  EXPECT_EQ(exits_[0].pid, pid);
  ASSERT_TRUE(WIFEXITED(exits_[0].status));
  EXPECT_EQ(WEXITSTATUS(exits_[0].status), 5);
  EXPECT_FALSE(exits_[0].killed);
  EXPECT_TRUE(no_child_left());
}

TEST_F(ChildProcessesTest, ChildThatIgnoresSigtermIsKilledAtTheSecondDeadline) {
  ReadyPipe ready;
  const pid_t pid = children_.spawn([&]() -> int {
    ::signal(SIGTERM, SIG_IGN);
    ready.tell();
    block_forever();
  });
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(ready.wait());
  constexpr auto kGrace = 200ms;
  const auto start = Clock::now();
  children_.stop(start, start + kGrace);
  const auto took = Clock::now() - start;
  EXPECT_GE(took, kGrace) << "killed before the second deadline";
  EXPECT_LT(took, kSafetyTimeout);
  ASSERT_EQ(exits_.size(), 1u);
  EXPECT_EQ(exits_[0].pid, pid);
  ASSERT_TRUE(WIFSIGNALED(exits_[0].status));
  EXPECT_EQ(WTERMSIG(exits_[0].status), SIGKILL);
  EXPECT_TRUE(exits_[0].killed);
  EXPECT_TRUE(children_.empty());
  EXPECT_TRUE(no_child_left());
}

TEST_F(ChildProcessesTest, DestructorKillsAndReapsWhatIsLeft) {
  pid_t pid = 0;
  bool reported = false;
  {
    ReadyPipe ready;
    ChildProcesses scoped({}, [&](const ChildExit&) { reported = true; });
    pid = scoped.spawn([&]() -> int {
      ::signal(SIGTERM, SIG_IGN);
      ready.tell();
      block_forever();
    });
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(ready.wait());
  }
  EXPECT_FALSE(reported) << "the owner is gone; nobody is told";
  EXPECT_TRUE(no_child_left()) << "zombie or orphan " << pid;
  if (::kill(pid, SIGKILL) == 0)
    ::waitpid(pid, nullptr, 0);  // broken: clean up after it
  else
    EXPECT_EQ(errno, ESRCH);
}

TEST_F(ChildProcessesTest, AnotherChildIsReapedButNotReported) {
  const pid_t stranger = ::fork();
  ASSERT_GE(stranger, 0);
  if (stranger == 0) ::_exit(0);
  siginfo_t info{};
  // Waits for it to end but leaves it a zombie (WNOWAIT), for reap() to collect.
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(stranger), &info, WEXITED | WNOWAIT), 0);
  children_.reap();
  EXPECT_TRUE(exits_.empty());
  EXPECT_TRUE(no_child_left()) << "the stranger was left a zombie";
}

}  // namespace
}  // namespace polyecho::test
