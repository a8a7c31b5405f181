// The Multiplexer contract, checked through the seam alone on every poller: readable after the
// peer writes, writable when asked, modify() and remove(), a stale registration after close,
// EINTR, and the one hard limit (select's fd_set). Where a poller legitimately differs, the
// difference is a trait of its case and the test asserts the trait instead of the strict rule:
// nbpoll guesses, sigio and epoll-et are edge-like, sigio re-checks after add() and modify().
//
// Nothing sleeps to synchronise, and absence ("not reported") is proven without a timeout: a
// byte is written to a watched sentinel pair, and waits collect reports until the sentinel's
// turns up. A level poller reports everything ready in that same wait; an edge-like poller's
// earlier edges are queued ahead of the sentinel's (epoll's ready list and the realtime signal
// queue are both FIFO, and sigio drains its whole queue once anything is ready). A wait's
// timeout is only a safety net.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"
#include "support/test_socket.hpp"
#include "support/thread_state.hpp"

namespace polyecho::test {
namespace {

using std::chrono::steady_clock;

constexpr int kSafetyMs = 2000;  // one wait() at most, and the patience of await()
// Long enough that a wait() which returns before it can only have been interrupted.
constexpr std::chrono::milliseconds kInterruptible{10'000};

struct PollerCase {
  const char* name;
  std::unique_ptr<Multiplexer> (*make)();
  // Reports every watched fd ready for what it asked, ready or not (nbpoll asks the kernel
  // nothing; EAGAIN answers). Its contract: it never misses a ready fd, and reports nothing it
  // was not asked about.
  bool guesses = false;
  // Reports a change once: an fd that stays ready stays quiet until it changes again.
  bool edge = false;
  // The first wait() after add() or modify() reports the fd for what it asked, ready or not:
  // the kernel signals changes only, so readiness older than the registration needs a look.
  bool rechecks_on_change = false;
  // wait() sleeps in a syscall that a signal interrupts; nbpoll never waits on the kernel.
  bool sleeps_in_kernel = true;
  // add() refuses fds from this number up (select: FD_SETSIZE bits per fd_set); 0: none.
  int fd_ceiling = 0;
};

void PrintTo(const PollerCase& poller, std::ostream* os) {
  *os << poller.name;
}

const PollerCase kPollers[] = {
    {.name = "select", .make = make_select_poller, .fd_ceiling = FD_SETSIZE},
    {.name = "poll", .make = make_poll_poller},
    {.name = "epoll", .make = [] { return make_epoll_poller(/*edge_triggered=*/false); }},
    {.name = "epoll_et",
     .make = [] { return make_epoll_poller(/*edge_triggered=*/true); },
     .edge = true},
    {.name = "nbpoll", .make = make_spin_poller, .guesses = true, .sleeps_in_kernel = false},
    {.name = "sigio", .make = make_sigio_poller, .edge = true, .rechecks_on_change = true},
};

// A connected non-blocking AF_UNIX stream pair: `near` is watched, `far` plays the peer.
struct SocketPair {
  unique_fd near;
  unique_fd far;
};

SocketPair socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
    throw_errno("socketpair");
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

void send_byte(int fd) {
  ASSERT_EQ(::send(fd, "x", 1, MSG_NOSIGNAL), 1);
}

void drain(int fd) {
  char bytes[64];
  while (::recv(fd, bytes, sizeof bytes, 0) > 0) {
  }
}

// Every bit `fd` was reported with in `events`.
std::uint32_t reported(const std::vector<ReadyEvent>& events, int fd) {
  std::uint32_t bits = 0;
  for (const ReadyEvent& e : events) {
    if (e.fd == fd) bits |= e.events;
  }
  return bits;
}

class PollerContract : public ::testing::TestWithParam<PollerCase> {
 protected:
  // Built on the test's thread, which is the one that waits: sigio directs its signals to the
  // thread that constructs it.
  void SetUp() override {
    poller_ = GetParam().make();
    ASSERT_TRUE(watch(sentinel_.near.get(), kReadable));
    // Settles the poller: the sentinel's own re-check, and (sigio) any signal an earlier test
    // on this thread left queued for an fd number that is reused now.
    (void)reports_so_far();
  }

  [[nodiscard]] bool watch(int fd, std::uint32_t interest) {
    if (!poller_->add(fd, interest)) return false;
    interest_[fd] = interest;
    recheck_owed_ = true;
    return true;
  }
  void change_interest(int fd, std::uint32_t interest) {
    poller_->modify(fd, interest);
    interest_[fd] = interest;
    recheck_owed_ = true;
  }
  void unwatch(int fd) {
    poller_->remove(fd);
    interest_.erase(fd);
  }

  // One wait(), and what every poller promises of every report: the fd is watched, and the
  // bits are ones it asked for (errors are only ever reported, never asked for).
  std::vector<ReadyEvent> wait_once(int timeout_ms = kSafetyMs) {
    std::vector<ReadyEvent> ready;
    poller_->wait(ready, timeout_ms);
    recheck_owed_ = false;
    for (const ReadyEvent& e : ready) {
      const auto watched = interest_.find(e.fd);
      if (watched == interest_.end()) {
        ADD_FAILURE() << "reported fd " << e.fd << ", which it does not watch";
        continue;
      }
      EXPECT_EQ(e.events & ~(watched->second | kError), 0u)
          << "fd " << e.fd << " reported for something it did not ask";
    }
    return ready;
  }

  // Waits until `fd` has been reported with every bit of `bits`, over as many waits as it
  // takes (an edge-like poller may report readable and writable apart). False past the patience.
  bool await(int fd, std::uint32_t bits) {
    const auto deadline = steady_clock::now() + std::chrono::milliseconds(kSafetyMs);
    std::uint32_t seen = 0;
    while ((seen & bits) != bits && steady_clock::now() < deadline)
      seen |= reported(wait_once(), fd);
    return (seen & bits) == bits;
  }

  // Every report up to now, the sentinel's excepted. What it lacks was not reported (see the
  // file comment).
  std::vector<ReadyEvent> reports_so_far() {
    send_byte(sentinel_.far.get());
    std::vector<ReadyEvent> seen;
    bool reached = false;
    const auto deadline = steady_clock::now() + std::chrono::milliseconds(kSafetyMs);
    while (!reached && steady_clock::now() < deadline) {
      for (const ReadyEvent& e : wait_once()) {
        if (e.fd == sentinel_.near.get()) {
          reached = reached || (e.events & kReadable) != 0;
        } else {
          seen.push_back(e);
        }
      }
    }
    EXPECT_TRUE(reached) << "the sentinel's byte was never reported";
    drain(sentinel_.near.get());
    return seen;
  }

  // Asserts that `fd` is not reported for `bits` while nothing about it changes. A guessing
  // poller cannot know, so for what `fd` asked it must report instead (it never misses); for
  // what it did not ask it is quiet like every other poller.
  void expect_quiet(int fd, std::uint32_t bits) {
    const auto watched = interest_.find(fd);
    const std::uint32_t asked = watched == interest_.end() ? 0u : watched->second & bits;
    if (GetParam().guesses && asked != 0) {
      EXPECT_EQ(reported(reports_so_far(), fd) & bits, asked)
          << "a guessing poller reports every watched fd for what it asked";
      return;
    }
    if (GetParam().rechecks_on_change && recheck_owed_) (void)reports_so_far();
    EXPECT_EQ(reported(reports_so_far(), fd) & bits, 0u)
        << "fd " << fd << " reported though nothing about it changed";
  }

  std::unique_ptr<Multiplexer> poller_;
  SocketPair sentinel_ = socket_pair();

 private:
  std::map<int, std::uint32_t> interest_;  // what is registered now, as the contract sees it
  bool recheck_owed_ = false;              // add() or modify() since the last wait()
};

TEST_P(PollerContract, ReportsReadableOnceThePeerWrites) {
  const SocketPair pair = socket_pair();
  ASSERT_TRUE(watch(pair.near.get(), kReadable));
  expect_quiet(pair.near.get(), kReadable);  // nothing to read yet
  send_byte(pair.far.get());
  EXPECT_TRUE(await(pair.near.get(), kReadable));
}

// A connection's first bytes may be there before it is registered: no change is left to see
// (sigio: no signal, O_ASYNC was not set yet), and still they must be reported.
TEST_P(PollerContract, ReportsReadinessOlderThanTheRegistration) {
  const SocketPair pair = socket_pair();
  send_byte(pair.far.get());
  ASSERT_TRUE(watch(pair.near.get(), kReadable));
  EXPECT_TRUE(await(pair.near.get(), kReadable));
}

TEST_P(PollerContract, ReportsWritableWhenAskedAndNothingElse) {
  const SocketPair pair = socket_pair();
  send_byte(pair.far.get());  // readable too, but that was not asked
  ASSERT_TRUE(watch(pair.near.get(), kWritable));
  EXPECT_TRUE(await(pair.near.get(), kWritable));
  expect_quiet(pair.near.get(), kReadable);
}

TEST_P(PollerContract, ModifyChangesTheInterest) {
  const SocketPair pair = socket_pair();
  const int fd = pair.near.get();
  send_byte(pair.far.get());  // from here on `fd` is readable and writable
  ASSERT_TRUE(watch(fd, kReadable));
  EXPECT_TRUE(await(fd, kReadable));
  expect_quiet(fd, kWritable);

  change_interest(fd, kWritable);
  EXPECT_TRUE(await(fd, kWritable));
  expect_quiet(fd, kReadable);

  // Asking again for what is ready already reports it, edge-like pollers included (epoll-et:
  // EPOLL_CTL_MOD re-arms; sigio: the re-check). The reactor relies on it to resume reading
  // after backpressure.
  change_interest(fd, kReadable | kWritable);
  EXPECT_TRUE(await(fd, kReadable | kWritable));

  change_interest(fd, 0);
  expect_quiet(fd, kReadable | kWritable);
}

TEST_P(PollerContract, RemoveStopsReports) {
  const SocketPair pair = socket_pair();
  const int fd = pair.near.get();
  send_byte(pair.far.get());
  ASSERT_TRUE(watch(fd, kReadable | kWritable));
  EXPECT_TRUE(await(fd, kReadable | kWritable));
  // A higher fd stays watched, so a poller that scans up to its highest fd (select) still
  // looks past the removed one.
  const SocketPair higher = socket_pair();
  ASSERT_TRUE(watch(higher.near.get(), kReadable));
  unwatch(fd);
  expect_quiet(fd, kReadable | kWritable);  // still ready, no longer watched
  send_byte(pair.far.get());                // a fresh edge, a fresh signal
  expect_quiet(fd, kReadable | kWritable);
}

// The reactor removes an fd, then closes it, and the next accept() may get the same number
// back. Whatever the old registration left pending (an edge, a queued signal) must not be
// reported as the new socket's readiness. sigio cannot tell the two apart (si_fd is a number),
// which its re-check after add() absorbs: the same wait() reports the new fd once anyway and
// drains the old signal with it.
TEST_P(PollerContract, AStaleRegistrationIsNotReportedForTheNextOwnerOfItsNumber) {
  SocketPair old = socket_pair();
  const int number = old.near.get();
  ASSERT_TRUE(watch(number, kReadable));
  send_byte(old.far.get());  // ready, its edge or signal pending and not yet seen
  unwatch(number);
  old = SocketPair{};

  const SocketPair fresh = socket_pair();
  ASSERT_EQ(fresh.near.get(), number) << "precondition: the kernel hands out the lowest number";
  ASSERT_TRUE(watch(number, kReadable));
  expect_quiet(number, kReadable);  // the new socket has nothing to read
  send_byte(fresh.far.get());
  EXPECT_TRUE(await(number, kReadable));
}

TEST_P(PollerContract, RepeatsAReadyFdUnlessEdgeLike) {
  const SocketPair pair = socket_pair();
  const int fd = pair.near.get();
  ASSERT_TRUE(watch(fd, kReadable));
  send_byte(pair.far.get());
  ASSERT_TRUE(await(fd, kReadable));
  const std::uint32_t again = reported(reports_so_far(), fd) & kReadable;  // the byte is unread
  if (GetParam().edge) {
    EXPECT_EQ(again, 0u) << "an edge-like poller reports a change once";
    send_byte(pair.far.get());
    EXPECT_TRUE(await(fd, kReadable)) << "the next change is reported again";
  } else {
    EXPECT_EQ(again, kReadable) << "a level (or guessing) poller reports until drained";
  }
}

// A stop handler is installed without SA_RESTART: a wait() it interrupts must return (EINTR:
// an empty list, no exception) so the loop can look at the stop flag.
std::atomic<int> g_interruptions{0};

void count_interruption(int) {
  g_interruptions.fetch_add(1, std::memory_order_relaxed);
}

// Installs count_interruption() for `signal_number` without SA_RESTART; restores the old one.
class InterruptingHandler {
 public:
  explicit InterruptingHandler(int signal_number) : signal_number_(signal_number) {
    g_interruptions.store(0);
    struct sigaction action {};
    action.sa_handler = count_interruption;
    ::sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: the interrupted syscall fails with EINTR
    if (::sigaction(signal_number_, &action, &saved_) != 0) throw_errno("sigaction");
  }
  ~InterruptingHandler() { ::sigaction(signal_number_, &saved_, nullptr); }
  InterruptingHandler(const InterruptingHandler&) = delete;
  InterruptingHandler& operator=(const InterruptingHandler&) = delete;

 private:
  int signal_number_;
  struct sigaction saved_ {};
};

TEST_P(PollerContract, ASignalEndsAWaitAndThePollerStaysUsable) {
  if (GetParam().sleeps_in_kernel) {
    InterruptingHandler handler(SIGUSR1);
    const pid_t waiter = current_thread_id();
    const pthread_t waiter_thread = ::pthread_self();
    std::atomic<bool> sent{false};
    // Signals the waiter once it is seen asleep: the only place it can sleep is wait().
    std::thread interrupter([&] {
      if (wait_until_blocked(waiter)) sent = ::pthread_kill(waiter_thread, SIGUSR1) == 0;
    });
    const auto start = steady_clock::now();
    std::vector<ReadyEvent> ready;
    EXPECT_NO_THROW(ready = wait_once(static_cast<int>(kInterruptible.count())));
    const auto waited = steady_clock::now() - start;
    interrupter.join();
    ASSERT_TRUE(sent) << "the waiting thread was never seen asleep";
    EXPECT_EQ(g_interruptions.load(), 1);
    EXPECT_LT(waited, kInterruptible / 2) << "wait() slept on after the signal";
    EXPECT_TRUE(ready.empty()) << "nothing was ready";
  } else {
    // Nothing to interrupt: even without a time limit, wait() returns at once with its guesses.
    EXPECT_NE(reported(wait_once(-1), sentinel_.near.get()) & kReadable, 0u);
  }
  const SocketPair pair = socket_pair();
  ASSERT_TRUE(watch(pair.near.get(), kReadable));
  send_byte(pair.far.get());
  EXPECT_TRUE(await(pair.near.get(), kReadable));
}

TEST_P(PollerContract, AnFdPastFdSetSizeIsWatchedOrCleanlyRefused) {
  constexpr int kHigh = FD_SETSIZE;  // the first fd an fd_set cannot hold
  const RaisedFdLimit limit(kHigh + 16);
  ASSERT_TRUE(limit.reached()) << "the hard RLIMIT_NOFILE forbids fd " << kHigh;
  const SocketPair pair = socket_pair();
  const unique_fd high(::fcntl(pair.near.get(), F_DUPFD_CLOEXEC, kHigh));
  ASSERT_GE(high.get(), kHigh);
  send_byte(pair.far.get());
  if (GetParam().fd_ceiling != 0) {
    ASSERT_GE(high.get(), GetParam().fd_ceiling);
    EXPECT_FALSE(watch(high.get(), kReadable)) << "must refuse, not write past its fd_set";
  } else {
    ASSERT_TRUE(watch(high.get(), kReadable));
    EXPECT_TRUE(await(high.get(), kReadable));
    unwatch(high.get());
  }
  // Nothing broke: the same socket under a low number is served as usual.
  ASSERT_TRUE(watch(pair.near.get(), kReadable));
  EXPECT_TRUE(await(pair.near.get(), kReadable));
}

INSTANTIATE_TEST_SUITE_P(AllPollers, PollerContract, ::testing::ValuesIn(kPollers),
                         [](const ::testing::TestParamInfo<PollerCase>& param) {
                           return std::string(param.param.name);
                         });

}  // namespace
}  // namespace polyecho::test
