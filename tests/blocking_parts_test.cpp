// The blocking models' two shared parts: ConnectionQueue (the bounded hand-off from an
// accepting thread to pool threads) and ActiveConnections (the connections a drain waits for
// and, at its deadlines, cuts). Threads that must be blocked are seen blocked (/proc) before
// the test acts on them; nothing sleeps.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>

#include "blocking/active_connections.hpp"
#include "blocking/connection_queue.hpp"
#include "polyecho/socket_ops.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"
#include "support/thread_state.hpp"

namespace polyecho::test {
namespace {

using std::chrono::steady_clock;

// A connection to queue (without a ticket: the queue only moves it) and its peer's end, which
// tells whether the connection is still open.
struct Handoff {
  AdmittedConnection connection;
  unique_fd peer;
  int number = -1;  // the connection's fd, to recognise it after moves
};

Handoff handoff() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
  return {AdmittedConnection{unique_fd(fds[0]), AdmissionTicket{}}, unique_fd(fds[1]), fds[0]};
}

// True once the other end of `peer` is closed (EOF); false while it is open.
bool closed_behind(int peer) {
  char c;
  return ::recv(peer, &c, 1, MSG_DONTWAIT) == 0;
}

int number_of(const std::optional<AdmittedConnection>& popped) {
  return popped ? popped->fd.get() : -1;
}

TEST(ConnectionQueue, FullRefusesAndLeavesTheConnectionWithTheCaller) {
  ConnectionQueue queue(2);
  Handoff a = handoff(), b = handoff(), c = handoff();
  ASSERT_TRUE(queue.try_push(a.connection));
  ASSERT_TRUE(queue.try_push(b.connection));
  EXPECT_FALSE(a.connection.fd) << "a queued connection belongs to the queue";
  EXPECT_FALSE(queue.try_push(c.connection)) << "the bound is 2";
  EXPECT_EQ(c.connection.fd.get(), c.number) << "refused: still the caller's";
  EXPECT_FALSE(closed_behind(c.peer.get()));
  EXPECT_EQ(number_of(queue.pop()), a.number) << "first in, first out";
  EXPECT_TRUE(queue.try_push(c.connection)) << "a pop made room";
}

TEST(ConnectionQueue, DestroyingTheQueueClosesWhatItHolds) {
  Handoff a = handoff();
  {
    ConnectionQueue queue(1);
    ASSERT_TRUE(queue.try_push(a.connection));
    EXPECT_FALSE(closed_behind(a.peer.get()));
  }
  EXPECT_TRUE(closed_behind(a.peer.get()));
}

TEST(ConnectionQueue, CloseRefusesPushesAndLetsPopDrainWhatIsLeft) {
  ConnectionQueue queue(4);
  Handoff a = handoff(), b = handoff(), c = handoff();
  ASSERT_TRUE(queue.try_push(a.connection));
  ASSERT_TRUE(queue.try_push(b.connection));
  queue.close();
  EXPECT_FALSE(queue.try_push(c.connection)) << "closed";
  EXPECT_EQ(c.connection.fd.get(), c.number);
  EXPECT_EQ(number_of(queue.pop()), a.number);
  EXPECT_EQ(number_of(queue.pop()), b.number);
  EXPECT_FALSE(queue.pop()) << "closed and empty";
  EXPECT_FALSE(queue.pop()) << "and it stays so";
}

TEST(ConnectionQueue, PushWakesABlockedPop) {
  ConnectionQueue queue(1);
  Handoff a = handoff();
  std::atomic<pid_t> waiter{0};
  auto popped = std::async(std::launch::async, [&] {
    waiter = current_thread_id();
    return queue.pop();
  });
  const bool blocked = wait_until_blocked(waiter);
  ASSERT_TRUE(queue.try_push(a.connection));
  EXPECT_TRUE(blocked);
  EXPECT_EQ(number_of(popped.get()), a.number);
}

TEST(ConnectionQueue, CloseWakesEveryBlockedPopWithNothing) {
  ConnectionQueue queue(1);
  std::atomic<pid_t> first{0}, second{0};
  const auto pop_on = [&queue](std::atomic<pid_t>& id) {
    return std::async(std::launch::async, [&queue, &id] {
      id = current_thread_id();
      return queue.pop();
    });
  };
  auto one = pop_on(first);
  auto two = pop_on(second);
  const bool blocked = wait_until_blocked(first) && wait_until_blocked(second);
  queue.close();  // before any assertion: a failed one must not leave the waiters blocked
  EXPECT_TRUE(blocked);
  EXPECT_FALSE(one.get());
  EXPECT_FALSE(two.get());
}

TEST(ActiveConnections, CountsWhatIsAddedAndRemoved) {
  ActiveConnections active;
  EXPECT_EQ(active.size(), 0u);
  EXPECT_TRUE(active.add(10));
  EXPECT_TRUE(active.add(11));
  EXPECT_TRUE(active.add(11));  // a set: the same fd once
  EXPECT_EQ(active.size(), 2u);
  active.remove(10);
  active.remove(10);  // removing twice does no harm
  EXPECT_EQ(active.size(), 1u);
  EXPECT_FALSE(active.input_cut()->load());
}

TEST(ActiveConnections, WaitUntilEmptyReturnsWhenTheLastOneLeaves) {
  ActiveConnections active;
  EXPECT_TRUE(active.wait_until_empty(steady_clock::now())) << "empty already";
  ASSERT_TRUE(active.add(10));
  EXPECT_FALSE(active.wait_until_empty(steady_clock::now())) << "the deadline passed";
  std::atomic<pid_t> drainer{0};
  auto emptied = std::async(std::launch::async, [&] {
    drainer = current_thread_id();
    return active.wait_until_empty(steady_clock::now() + kSafetyTimeout);
  });
  const bool blocked = wait_until_blocked(drainer);
  active.remove(10);
  EXPECT_TRUE(blocked);
  EXPECT_TRUE(emptied.get());
}

// end_drain() before the close time: a thread blocked in recv wakes with EOF and sees
// input_cut(), yet may still send what it owes; the connection leaves, so nothing more is cut.
TEST(ActiveConnections, EndDrainCutsInputAndWakesABlockedReader) {
  LoopbackListener net;
  LoopbackPair connection = net.connect_from();
  const int served = connection.accepted.get();
  set_io_timeout(served, kSafetyTimeout);  // a safety net, should the cut not wake the reader
  ActiveConnections active;
  ASSERT_TRUE(active.add(served));
  ASSERT_TRUE(send_text(connection.client.get(), "abc"));

  std::atomic<pid_t> reader{0};
  auto served_thread = std::async(std::launch::async, [&] {
    const std::string owed = recv_exact(served, 3);
    reader = current_thread_id();  // from here on, the only place to block is the recv below
    char c;
    const ssize_t after_cut = ::recv(served, &c, 1, 0);
    const bool saw_cut = active.input_cut()->load();
    const bool flushed = send_text(served, owed);
    active.remove(served);
    return after_cut == 0 && saw_cut && flushed;
  });
  const bool blocked = wait_until_blocked(reader);
  active.end_drain(steady_clock::now() + kSafetyTimeout);  // returns once the reader left
  EXPECT_TRUE(blocked);
  EXPECT_TRUE(served_thread.get()) << "woken with EOF, saw input_cut(), flushed what it owed";
  EXPECT_TRUE(active.input_cut()->load());
  EXPECT_EQ(recv_exact(connection.client.get(), 3), "abc");
  EXPECT_FALSE(closed_behind(connection.client.get())) << "output was never cut";
  EXPECT_FALSE(active.add(served)) << "nothing starts after the cut";
  EXPECT_EQ(active.size(), 0u);
}

// A connection still there at the close time (its peer does not read) is cut both ways.
TEST(ActiveConnections, EndDrainShutsDownWhatStaysPastTheCloseTime) {
  LoopbackListener net;
  LoopbackPair connection = net.connect_from();
  const int served = connection.accepted.get();
  ActiveConnections active;
  ASSERT_TRUE(active.add(served));
  active.end_drain(steady_clock::now());  // nobody removes it: the close time is now
  EXPECT_EQ(wait_for_close(connection.client.get()), PeerEnd::closed) << "the peer sees our FIN";
  EXPECT_EQ(send_some(served, {"x", 1}).error, EPIPE) << "our output is cut too";
  EXPECT_EQ(active.size(), 1u) << "the owner removes it; end_drain only shuts it down";
}

}  // namespace
}  // namespace polyecho::test
