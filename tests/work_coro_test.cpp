// --work in the models that multiplex connections on a loop without a thread per connection:
// uring (an io_uring timeout), fiber (a fiber sleep) and asio-coro (an awaited timer). A wait
// parks one connection and lets the loop serve the others; cpu and block work run on the loop
// thread and hold everyone up. Messages keep their order, the drain finishes work in flight,
// and a protocol error is counted once. Timing is checked only as wide ratios of the work.
#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "polyecho/protocol.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The three models, with every variant they register; `one_loop_only` keeps the defaults
// (one loop), for the test that needs every connection on the same loop.
std::vector<BackendCase> loop_cases(bool one_loop_only = false) {
  const std::set<std::string> models{"uring", "fiber", "asio-coro"};
  std::vector<BackendCase> cases;
  for (const auto& c : all_backend_cases()) {
    if (models.count(c.backend) > 0 && (!one_loop_only || c.flags.empty())) cases.push_back(c);
  }
  return cases;
}

std::string frame(const std::string& payload) {
  std::array<char, kFrameHeaderSize> header{};
  write_frame_header(static_cast<std::uint32_t>(payload.size()), header);
  return std::string(header.data(), header.size()) + payload;
}

// Reads the echo of `line`, then stops the server. With the next message already sent, its
// wait is in flight from the moment the echo leaves the server.
Clock::time_point stop_after_echo(const ServerProcess& server, int fd, const std::string& line) {
  EXPECT_EQ(recv_line(fd), line);
  const auto stopped = Clock::now();
  server.signal(SIGTERM);
  return stopped;
}

class LoopWork : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra) {
    return start_server(GetParam().args(extra));
  }
};

TEST_P(LoopWork, WaitsOverlapAcrossConnections) {
  constexpr int kClients = 20;
  constexpr double kWait = 0.2;
  auto server = start({"--mode", "line", "--work", "wait:200000"});
  std::vector<unique_fd> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_loopback(server->port()));
  const auto started = Clock::now();
  for (int i = 0; i < kClients; ++i)
    ASSERT_TRUE(send_text(clients[i].get(), "line " + std::to_string(i) + "\n"));
  for (int i = 0; i < kClients; ++i)
    EXPECT_EQ(recv_line(clients[i].get()), "line " + std::to_string(i) + "\n");
  const double elapsed = seconds_since(started);
  EXPECT_GE(elapsed, 0.9 * kWait) << "the wait was not done";
  // Serially it would take 20 waits; concurrently about one.
  EXPECT_LT(elapsed, 5 * kWait) << "waits did not overlap";
}

class OneLoopWork : public LoopWork {};

TEST_P(OneLoopWork, BlockingWorkSerializesTheLoop) {
  constexpr int kClients = 10;
  constexpr double kBlock = 0.1;
  auto server = start({"--workers", "1", "--mode", "line", "--work", "block:100000"});
  std::vector<unique_fd> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_loopback(server->port()));
  const auto started = Clock::now();
  for (const auto& fd : clients) ASSERT_TRUE(send_text(fd.get(), "x\n"));
  for (const auto& fd : clients) EXPECT_EQ(recv_line(fd.get()), "x\n");
  const double elapsed = seconds_since(started);
  // The loop thread sleeps for each message in turn: about 10 blocks, never overlapping.
  EXPECT_GE(elapsed, 0.6 * kClients * kBlock) << "blocking work overlapped on one loop";
}

TEST_P(LoopWork, PipelinedFramesComeBackWholeAndInOrder) {
  auto server = start({"--mode", "frame", "--work", "wait:20000"});
  auto fd = connect_loopback(server->port());
  std::string sent;
  for (int i = 0; i < 5; ++i)
    sent += frame(random_bytes(10 + 100 * static_cast<std::size_t>(i), static_cast<unsigned>(i)));
  ASSERT_TRUE(send_text(fd.get(), sent));  // all five at once
  EXPECT_EQ(recv_exact(fd.get(), sent.size()), sent);
}

// Three lines at once: when the first one's echo arrives, the second one's wait is in flight
// and the third is pending. SIGTERM then must not lose either.
TEST_P(LoopWork, DrainFinishesTheWaitInFlight) {
  auto server = start({"--mode", "line", "--work", "wait:100000", "--drain-timeout", "5"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "one\ntwo\nthree\n"));
  stop_after_echo(*server, fd.get(), "one\n");
  EXPECT_EQ(recv_exact(fd.get(), 10), "two\nthree\n");
  fd.reset();  // the last connection gone, the drain ends early
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
}

// The drain deadline cuts the input while work is in flight and pending: the cut is like the
// peer's EOF, so both still get their whole wait and their echo, within the flush grace (1 s),
// and then the server closes the connection. The first round trip parks the connection in a
// read before the rest arrives: a model that took a sleeper for a reader would cut its wait.
TEST_P(LoopWork, InputCutStillDoesThePendingWork) {
  constexpr double kWait = 0.2;
  auto server = start({"--mode", "line", "--work", "wait:200000", "--drain-timeout", "0.05"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "one\n"));
  ASSERT_EQ(recv_line(fd.get()), "one\n");
  ASSERT_TRUE(send_text(fd.get(), "two\nthree\nfour\n"));
  const auto stopped = stop_after_echo(*server, fd.get(), "two\n");
  EXPECT_EQ(recv_exact(fd.get(), 11), "three\nfour\n");
  // Nearly two whole waits: the cut, 50 ms in, ended neither wait early.
  EXPECT_GE(seconds_since(stopped), 1.5 * kWait) << "the input cut shortened a wait";
  EXPECT_EQ(wait_for_close(fd.get()), PeerEnd::closed);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
}

// At the end of the flush grace everything closes, a long wait included: the server does not
// sit it out. (If the line had not been read by then, there is no wait and nothing to see.)
TEST_P(LoopWork, ClosingEndsALongWait) {
  constexpr double kWait = 10;
  auto server = start({"--mode", "line", "--work", "wait:10000000", "--drain-timeout", "0.05"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "never answered\n"));
  const auto stopped = Clock::now();
  server->signal(SIGTERM);
  const PeerEnd end = wait_for_close(fd.get());
  EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
  EXPECT_LT(seconds_since(stopped), 0.5 * kWait) << "the close waited for the work";
}

TEST_P(LoopWork, TooLongFrameClosesAfterTheFramesBeforeItAndCountsOneError) {
  auto server = start({"--mode", "frame", "--max-frame", "16", "--work", "wait:20000"});
  auto fd = connect_loopback(server->port());
  const std::string good = frame("first") + frame(std::string(16, 'x'));
  std::array<char, kFrameHeaderSize> too_long{};
  write_frame_header(17, too_long);
  ASSERT_TRUE(send_text(fd.get(), good + std::string(too_long.data(), too_long.size())));
  EXPECT_EQ(recv_exact(fd.get(), good.size()), good);
  const PeerEnd end = wait_for_close(fd.get());
  EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset);
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("active=0"), std::string::npos) << tail;
  EXPECT_NE(tail.find("errors=1"), std::string::npos) << tail;
}

INSTANTIATE_TEST_SUITE_P(LoopBackends, LoopWork, ::testing::ValuesIn(loop_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });
INSTANTIATE_TEST_SUITE_P(LoopBackends, OneLoopWork,
                         ::testing::ValuesIn(loop_cases(/*one_loop_only=*/true)),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
