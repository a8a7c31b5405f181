// The leader-follower model's own property, over real loopback sockets: an event is handled by
// the thread that took it while the others go on leading, so with two threads two connections'
// blocking work overlaps, and with one thread it cannot. Plus many connections through one
// shared epoll, and a clean drain on SIGTERM. Timing is checked as a ratio of the configured
// work, with wide margins.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kBlockSeconds = 0.2;

std::string numbered_line(std::size_t n) {
  return "line " + std::to_string(n) + "\n";
}

// Two connected clients each send one line at once; returns the seconds until both echoes came
// back, or a negative number if an echo was wrong.
double pair_of_blocks(const std::string& workers) {
  auto server = start_server({"--backend", "leader-follower", "--workers", workers, "--mode",
                              "line", "--work", "block:200000"});
  std::vector<unique_fd> clients;
  clients.push_back(connect_loopback(server->port()));
  clients.push_back(connect_loopback(server->port()));
  const auto start = Clock::now();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    if (!send_text(clients[i].get(), numbered_line(i))) return -1;
  }
  for (std::size_t i = 0; i < clients.size(); ++i) {
    if (recv_line(clients[i].get()) != numbered_line(i)) return -1;
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(LeaderFollower, TwoThreadsOverlapTwoConnectionsBlockingWork) {
  const double took = pair_of_blocks("2");
  ASSERT_GE(took, 0) << "an echo was wrong";
  // Overlapped: about one block. One after the other it would be two.
  EXPECT_LT(took, 1.5 * kBlockSeconds) << took << " s: the blocks did not overlap";
}

TEST(LeaderFollower, OneThreadServesTheBlocksOneAfterTheOther) {
  const double took = pair_of_blocks("1");
  ASSERT_GE(took, 0) << "an echo was wrong";
  EXPECT_GT(took, 1.6 * kBlockSeconds) << took << " s: one thread cannot overlap two blocks";
}

// --idle-timeout runs on each connection's own timer: an idle client is closed, while one whose
// message is still being worked on (a wait twice the idle timeout) is not idle: it gets its echo.
TEST(LeaderFollower, IdleTimeoutClosesTheIdleButNotTheOneAwaitingItsReply) {
  auto server = start_server({"--backend", "leader-follower", "--workers", "2", "--mode", "line",
                              "--idle-timeout", "0.3", "--work", "wait:600000"});
  auto idle = connect_loopback(server->port());
  auto waiting = connect_loopback(server->port());
  ASSERT_TRUE(send_text(waiting.get(), "slow\n"));
  EXPECT_EQ(wait_for_close(idle.get()), PeerEnd::closed);
  EXPECT_EQ(recv_line(waiting.get()), "slow\n");
  // Once answered and silent, it is idle too.
  EXPECT_EQ(wait_for_close(waiting.get()), PeerEnd::closed);
}

// 200 clients through the default thread count: each is echoed, then SIGTERM stops accepting
// while the open ones keep being served until they leave, and the server exits 0 with every
// connection accounted for.
TEST(LeaderFollower, ManyConnectionsAreServedAndDrainCleanlyOnSigterm) {
  constexpr std::size_t kClients = 200;
  auto server = start_server({"--backend", "leader-follower", "--mode", "line"});
  std::vector<unique_fd> clients;
  clients.reserve(kClients);
  for (std::size_t i = 0; i < kClients; ++i) clients.push_back(connect_loopback(server->port()));
  for (std::size_t i = 0; i < kClients; ++i) ASSERT_TRUE(send_text(clients[i].get(), "hello\n"));
  for (std::size_t i = 0; i < kClients; ++i) ASSERT_EQ(recv_line(clients[i].get()), "hello\n");

  server->signal(SIGTERM);
  // Draining: every open connection is still answered, then ended when its peer quits.
  for (std::size_t i = 0; i < kClients; ++i) {
    ASSERT_TRUE(send_text(clients[i].get(), numbered_line(i) + "quit\n"));
  }
  for (std::size_t i = 0; i < kClients; ++i) {
    EXPECT_EQ(recv_until_eof(clients[i].get()), numbered_line(i) + "bye\n") << "client " << i;
  }
  ASSERT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("accepted=200 rejected=0 active=0"), std::string::npos) << tail;
  EXPECT_NE(tail.find("errors=0"), std::string::npos) << tail;
}

}  // namespace
}  // namespace polyecho::test
