// Per-message work (--work) in the readiness models (nbpoll, select, poll, sigio, epoll,
// leader-follower and their variants), against the real server binary: a wait is a timer, so one
// loop overlaps many; a block stalls the whole loop; each connection's messages leave in order;
// work in flight at a stop still gets its echo; a peer that resets while its wait runs costs
// nothing. Timing is only ever checked as a ratio of the configured work, with wide margins.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <iterator>
#include <set>
#include <thread>

#include "polyecho/protocol.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::vector<BackendCase> readiness_cases_among(const std::set<std::string>& models) {
  std::vector<BackendCase> cases;
  std::ranges::copy_if(all_backend_cases(), std::back_inserter(cases),
                       [&](const BackendCase& c) { return models.contains(c.backend); });
  return cases;
}

std::string frame_of(const std::string& payload) {
  std::string frame(kFrameHeaderSize, '\0');
  write_frame_header(static_cast<std::uint32_t>(payload.size()),
                     std::span<char, kFrameHeaderSize>(frame.data(), kFrameHeaderSize));
  return frame + payload;
}

class ReactorWork : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra) {
    return start_server(GetParam().args(extra));
  }

  // Sends two lines and stops the server once the first came back: "second" was received with
  // "first" (one segment), so its wait is the one running when the stop comes. Returns the
  // connection, which is still owed "second".
  static unique_fd stop_during_second_wait(ServerProcess& server) {
    auto fd = connect_loopback(server.port());
    EXPECT_TRUE(send_text(fd.get(), "first\nsecond\n"));
    EXPECT_EQ(recv_line(fd.get()), "first\n");
    server.signal(SIGTERM);
    return fd;
  }
};

TEST_P(ReactorWork, WaitsOverlapOnOneLoop) {
  constexpr std::size_t kClients = 20;
  constexpr double kWait = 0.2;
  auto server = start({"--mode", "line", "--work", "wait:200000"});
  const double took = one_line_each(server->port(), kClients);
  ASSERT_GE(took, 0) << "an echo was wrong";
  EXPECT_GE(took, 0.9 * kWait) << "the wait was not done";
  // One after the other would be 20 x 200 ms = 4 s.
  EXPECT_LT(took, 5 * kWait) << took << " s: the waits did not overlap";
}

TEST_P(ReactorWork, PipelinedFramesComeBackWholeAndInOrder) {
  constexpr double kWait = 0.02;
  auto server = start({"--mode", "frame", "--work", "wait:20000"});
  auto fd = connect_loopback(server->port());
  std::string sent;
  std::uint32_t seed = 1;
  for (const std::size_t size : {1, 300, 0, 5000, 17}) sent += frame_of(random_bytes(size, seed++));
  const auto start = Clock::now();
  ASSERT_TRUE(send_text(fd.get(), sent));
  const std::string echoed = recv_exact(fd.get(), sent.size());
  const double took = seconds_since(start);
  EXPECT_EQ(fnv1a(echoed), fnv1a(sent)) << "frames lost, cut or reordered";
  // A connection's messages are answered one at a time: five waits in a row.
  EXPECT_GE(took, 0.9 * 5 * kWait);
}

TEST_P(ReactorWork, AWaitInFlightAtStopIsStillAnswered) {
  auto server = start({"--mode", "line", "--work", "wait:300000", "--drain-timeout", "60"});
  auto fd = stop_during_second_wait(*server);
  EXPECT_EQ(recv_line(fd.get()), "second\n");
  fd.reset();
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("bytes_in=13 bytes_out=13 errors=0"), std::string::npos) << tail;
}

// The input is cut (drain timeout) while a wait still runs: the flush grace (1 s) outlasts it,
// so its echo is sent, then the server closes the connection itself and exits.
TEST_P(ReactorWork, TheInputCutKeepsPendingWork) {
  auto server = start({"--mode", "line", "--work", "wait:500000", "--drain-timeout", "0.1"});
  auto fd = stop_during_second_wait(*server);
  EXPECT_EQ(recv_line(fd.get()), "second\n");
  EXPECT_EQ(wait_for_close(fd.get()), PeerEnd::closed);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
}

// A good frame, then a header declaring too much: the good one is still answered after its
// work, then the connection closes and the protocol error is counted once.
TEST_P(ReactorWork, AProtocolErrorIsCountedOnceAfterTheWork) {
  auto server = start({"--mode", "frame", "--max-frame", "16", "--work", "wait:1000"});
  auto fd = connect_loopback(server->port());
  const std::string good = frame_of("fits");
  // Only the header: it is refused as soon as it is in, and no unread payload turns the
  // server's close into a reset.
  const std::string too_long = frame_of(std::string(100, 'x')).substr(0, kFrameHeaderSize);
  ASSERT_TRUE(send_text(fd.get(), good + too_long));
  EXPECT_EQ(recv_exact(fd.get(), good.size()), good);
  EXPECT_EQ(wait_for_close(fd.get()), PeerEnd::closed);
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("errors=1"), std::string::npos) << tail;
  EXPECT_NE(server->stderr_text().find("frame too long"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(ReadinessModels, ReactorWork,
                         ::testing::ValuesIn(readiness_cases_among(
                             {"nbpoll", "select", "poll", "sigio", "epoll", "leader-follower"})),
                         [](const auto& test_info) { return case_name(test_info.param); });

// A connection whose peer has half-closed and whose messages all wait for their timer watches
// nothing. The kernel still reports errors and hang-ups, so if it stayed registered with poll
// or level-triggered epoll, a reset peer would be reported on every wait until the timer.
class ResetDuringWait : public ReactorWork {};

TEST_P(ResetDuringWait, CostsNoCpuUntilTheTimer) {
  auto server = start({"--mode", "line", "--work", "wait:1000000", "--drain-timeout", "60"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "a\nb\n"));
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  // The EOF was read long before this first echo: now only "b"'s 1 s timer is left.
  ASSERT_EQ(recv_line(fd.get()), "a\n");
  const linger reset{1, 0};
  ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
  fd.reset();  // RST
  const double cpu_before = server->cpu_seconds();
  // A measurement window inside the wait, not synchronisation: a spinning loop burns a core.
  std::this_thread::sleep_for(milliseconds(700));
  const double cpu_used = server->cpu_seconds() - cpu_before;
  EXPECT_LT(cpu_used, 0.2) << "server used " << cpu_used << " s of CPU during the wait";
  // The timer's echo then finds the reset and closes the connection, so the drain ends.
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
}

INSTANTIATE_TEST_SUITE_P(PollAndEpoll, ResetDuringWait,
                         ::testing::ValuesIn(readiness_cases_among({"poll", "epoll",
                                                                    "leader-follower"})),
                         [](const auto& test_info) { return case_name(test_info.param); });

// block is a blocking call on the loop thread: one loop answers ten connections one after the
// other, whereas the same ten waits overlap (WaitsOverlapOnOneLoop).
TEST(ReactorBlockWork, SerialisesEveryConnectionOfTheLoop) {
  constexpr std::size_t kClients = 10;
  constexpr double kBlock = 0.1;
  auto server = start_server(
      {"--backend", "epoll", "--workers", "1", "--mode", "line", "--work", "block:100000"});
  const double took = one_line_each(server->port(), kClients);
  ASSERT_GE(took, 0) << "an echo was wrong";
  EXPECT_GE(took, 0.6 * kClients * kBlock) << took << " s: the blocks overlapped";
}

}  // namespace
}  // namespace polyecho::test
