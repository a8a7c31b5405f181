// --offload N (half-sync/half-async) in the readiness models, against the real server binary:
// the loop keeps the IO and a pool of N threads does the cpu and block work. Block work then
// no longer stalls the loop; each connection's messages still leave in order; a full queue
// stops reading (and never grows past --offload-queue) while the loop stays responsive; work
// in flight at a stop or a reset is finished or dropped safely; models without a pool refuse
// the flag. Timing is only ever checked as a ratio of the configured work, with wide margins.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <exception>
#include <iterator>
#include <set>
#include <string>

#include "polyecho/protocol.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;

const std::set<std::string> kOffloadModels = {"epoll", "poll", "select", "sigio", "nbpoll"};

// Each model as it runs by default (variants are covered by the conformance suites).
std::vector<BackendCase> offload_models() {
  std::vector<BackendCase> cases;
  std::ranges::copy_if(all_backend_cases(), std::back_inserter(cases), [](const BackendCase& c) {
    return kOffloadModels.contains(c.backend) && c.flags.empty();
  });
  return cases;
}

// The number after `key=` in the server's final stats line, or -1.
// (No std::regex: GCC 12 warns inside <regex> under the asan preset's -O2.)
long long stat_of(const std::string& stats_line, const std::string& key) {
  const std::string needle = " " + key + "=";
  const auto at = (" " + stats_line).find(needle);
  if (at == std::string::npos) return -1;
  std::size_t used = 0;
  const std::string rest = stats_line.substr(at + needle.size() - 1);
  try {
    const long long value = std::stoll(rest, &used);
    return used > 0 ? value : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

// Stops the server (SIGTERM), expects a clean exit, returns its final stats line.
std::string stop(ServerProcess& server) {
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(kSafetyTimeout), 0);
  return server.remaining_stdout();
}

class Offload : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra) {
    return start_server(GetParam().args(extra));
  }
};

// Ten connections, one 100 ms block each. Inline, one loop answers them one after the other
// (10 x 100 ms); with ten pool threads the blocks overlap. Both runs are measured, so the
// ratio shows the effect and the test fails if offloading stops working.
TEST_P(Offload, BlockWorkDoesNotStallTheLoop) {
  constexpr std::size_t kClients = 10;
  constexpr double kSerial = kClients * 0.1;
  const std::vector<std::string> work = {"--mode", "line", "--work", "block:100000"};

  auto inline_server = start(work);
  const double inline_took = one_line_each(inline_server->port(), kClients);
  ASSERT_GE(inline_took, 0) << "an echo was wrong (inline)";
  stop(*inline_server);

  auto extra = work;
  extra.insert(extra.end(), {"--offload", "10"});
  auto offload_server = start(extra);
  const double offload_took = one_line_each(offload_server->port(), kClients);
  ASSERT_GE(offload_took, 0) << "an echo was wrong (offload)";
  const std::string tail = stop(*offload_server);

  EXPECT_GE(inline_took, 0.8 * kSerial) << inline_took << " s: inline blocks overlapped";
  EXPECT_LT(offload_took, 0.6 * kSerial) << offload_took << " s: offloaded blocks did not overlap";
  EXPECT_GE(offload_took, 0.09) << "the block was not done";
  EXPECT_EQ(stat_of(tail, "offloaded"), static_cast<long long>(kClients)) << tail;
}

// Many pipelined messages on one connection, cpu work on several threads: only one of them is
// ever in the pool, so they come back whole and in order.
TEST_P(Offload, PipelinedMessagesComeBackInOrder) {
  auto server = start({"--mode", "line", "--work", "cpu:200", "--offload", "4"});
  auto fd = connect_loopback(server->port());
  std::string sent;
  for (std::size_t i = 0; i < 200; ++i) sent += numbered_line(i);
  ASSERT_TRUE(send_text(fd.get(), sent));
  EXPECT_EQ(recv_exact(fd.get(), sent.size()), sent);
  fd.reset();
  EXPECT_EQ(stat_of(stop(*server), "offloaded"), 200);
}

TEST_P(Offload, PipelinedFramesComeBackWholeAndInOrder) {
  auto server = start({"--mode", "frame", "--work", "block:1000", "--offload", "3"});
  auto fd = connect_loopback(server->port());
  std::string sent;
  std::uint32_t seed = 1;
  for (const std::size_t size : {1, 300, 0, 5000, 17, 70000, 2}) {
    std::string frame(kFrameHeaderSize, '\0');
    const std::string payload = random_bytes(size, seed++);
    write_frame_header(static_cast<std::uint32_t>(payload.size()),
                       std::span<char, kFrameHeaderSize>(frame.data(), kFrameHeaderSize));
    sent += frame + payload;
  }
  ASSERT_TRUE(send_text(fd.get(), sent));
  EXPECT_EQ(fnv1a(recv_exact(fd.get(), sent.size())), fnv1a(sent)) << "frames lost or reordered";
}

// One pool thread, a queue of one: most connections find it full and wait, unread. All are
// still answered, correctly, and the queue never held more than its bound.
TEST_P(Offload, AFullQueueStopsReadingAndNeverGrows) {
  constexpr std::size_t kClients = 12;
  constexpr std::size_t kLines = 3;
  auto server =
      start({"--mode", "line", "--work", "block:2000", "--offload", "1", "--offload-queue", "1"});
  std::vector<unique_fd> clients;
  for (std::size_t i = 0; i < kClients; ++i) clients.push_back(connect_loopback(server->port()));
  for (std::size_t i = 0; i < kClients; ++i) {
    std::string lines;
    for (std::size_t j = 0; j < kLines; ++j) lines += numbered_line(i * 100 + j);
    ASSERT_TRUE(send_text(clients[i].get(), lines));
  }
  for (std::size_t i = 0; i < kClients; ++i) {
    for (std::size_t j = 0; j < kLines; ++j) {
      ASSERT_EQ(recv_line(clients[i].get()), numbered_line(i * 100 + j)) << "client " << i;
    }
  }
  clients.clear();
  const std::string tail = stop(*server);
  EXPECT_EQ(stat_of(tail, "offloaded"), static_cast<long long>(kClients * kLines)) << tail;
  // 1, not 0: the queue was used; never 2: the bound held.
  EXPECT_EQ(stat_of(tail, "offload_queue_peak"), 1) << tail;
  EXPECT_EQ(stat_of(tail, "errors"), 0) << tail;
}

// While block work saturates the pool (one thread, a full queue, connections waiting), the
// loop still serves a connection that needs no work: "quit" is answered by the protocol at
// once. Inline, the same "quit" waits behind the block the loop is doing.
TEST_P(Offload, TheLoopStaysResponsiveWhileThePoolIsSaturated) {
  constexpr std::size_t kBusy = 4;
  constexpr double kBlock = 0.3;
  const auto bye_latency = [&](const std::vector<std::string>& offload) {
    std::vector<std::string> extra = {"--mode", "line", "--work", "block:300000"};
    extra.insert(extra.end(), offload.begin(), offload.end());
    auto server = start(extra);
    std::vector<unique_fd> busy;
    for (std::size_t i = 0; i < kBusy; ++i) busy.push_back(connect_loopback(server->port()));
    auto idle = connect_loopback(server->port());
    for (std::size_t i = 0; i < kBusy; ++i) EXPECT_TRUE(send_text(busy[i].get(), "work\n"));
    // The first echo proves the loop has started the work (and, inline, that it is free
    // again); the "quit" goes out while the remaining blocks run or wait.
    EXPECT_EQ(recv_line(busy[0].get()), "work\n");
    const auto start = Clock::now();
    EXPECT_TRUE(send_text(idle.get(), "quit\n"));
    EXPECT_EQ(recv_line(idle.get()), "bye\n");
    const double took = seconds_since(start);
    for (std::size_t i = 1; i < kBusy; ++i) EXPECT_EQ(recv_line(busy[i].get()), "work\n");
    return took;
  };
  const double inline_took = bye_latency({});
  const double offload_took = bye_latency({"--offload", "1", "--offload-queue", "1"});
  EXPECT_LT(offload_took, kBlock / 3) << offload_took << " s: the loop waited for the pool";
  EXPECT_GE(inline_took, kBlock / 2) << inline_took << " s: inline did not block the loop";
}

// A job in flight at the stop finishes within the drain timeline and its echo is sent.
TEST_P(Offload, AJobInFlightAtStopIsStillAnswered) {
  auto server = start(
      {"--mode", "line", "--work", "block:300000", "--offload", "2", "--drain-timeout", "60"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "first\nsecond\n"));
  ASSERT_EQ(recv_line(fd.get()), "first\n");
  server->signal(SIGTERM);  // "second" is in the pool now
  EXPECT_EQ(recv_line(fd.get()), "second\n");
  fd.reset();
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("bytes_in=13 bytes_out=13 errors=0 offloaded=2"), std::string::npos) << tail;
}

// A peer resets while its job runs: the completion finds nobody (or a newer connection on the
// same fd, which it must not touch) and is dropped; others are served and the stop is clean.
TEST_P(Offload, AResetDuringItsJobIsDropped) {
  auto server = start({"--mode", "line", "--work", "block:200000", "--offload", "1"});
  {
    auto fd = connect_loopback(server->port());
    ASSERT_TRUE(send_text(fd.get(), "lost\n"));
    const linger reset{1, 0};
    ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
  }                                              // RST, probably while "lost" is worked on
  auto next = connect_loopback(server->port());  // likely gets the same fd on the server
  ASSERT_TRUE(send_text(next.get(), "kept\n"));
  EXPECT_EQ(recv_line(next.get()), "kept\n");
  next.reset();
  const std::string tail = stop(*server);
  EXPECT_NE(tail.find("active=0"), std::string::npos) << tail;
}

// The drain cut closes a connection whose job still runs (the work outlasts drain timeout
// and flush grace): its echo is dropped, the pool is joined, the server exits cleanly.
TEST_P(Offload, TheCloseAtTheEndOfTheDrainDropsAJobInFlight) {
  auto server = start(
      {"--mode", "line", "--work", "block:1500000", "--offload", "1", "--drain-timeout", "0"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "first\nsecond\n"));
  ASSERT_EQ(recv_line(fd.get()), "first\n");
  const auto start = Clock::now();
  server->signal(SIGTERM);  // "second" is in the pool, for 1.5 s; the close comes after 1 s
  EXPECT_EQ(recv_until_eof(fd.get()), "");
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  // The close, then the join waits out the block: the drain timeline plus one work duration.
  EXPECT_LT(seconds_since(start), 1.0 + 1.5 + 1.5);
}

// "offload/...": `ctest -R offload` runs these along with the suites' offload variants.
INSTANTIATE_TEST_SUITE_P(offload, Offload, ::testing::ValuesIn(offload_models()),
                         [](const auto& test_info) { return case_name(test_info.param); });

// A model whose loops cannot hand work to a pool refuses the flag instead of ignoring it.
class OffloadRefused : public ::testing::TestWithParam<BackendCase> {};

TEST_P(OffloadRefused, AtStartUp) {
  const auto [status, error] = ServerProcess::run_to_exit(
      GetParam().args({"--mode", "line", "--work", "block:1000", "--offload", "2"}));
  EXPECT_EQ(status, 2);
  EXPECT_NE(error.find("--offload: the " + GetParam().backend + " model does not support it"),
            std::string::npos)
      << error;
}

std::vector<BackendCase> models_without_offload() {
  std::vector<BackendCase> cases;
  std::ranges::copy_if(all_backend_cases(), std::back_inserter(cases), [](const BackendCase& c) {
    return !kOffloadModels.contains(c.backend) && c.flags.empty();
  });
  return cases;
}

INSTANTIATE_TEST_SUITE_P(offload, OffloadRefused, ::testing::ValuesIn(models_without_offload()),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
