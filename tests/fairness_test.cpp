// Fairness: where one thread serves many connections, every connection must still get its
// turn. A loop that keeps serving whichever connection is ready again at once (a fiber that
// reads on while its peer keeps up, a ring that re-arms the same starved recvs first) lets a
// few connections take the thread while the rest wait. Each connection here always owes the
// server one ping-pong message, and the bench counts what each one completed in the window.
// Runs for every event-loop model and leader-follower at their defaults (one loop: the case
// where a hog hurts most); tests/uring_test.cpp has the same check at 3,000 connections.
#include <gtest/gtest.h>
#include <signal.h>

#include "support/backend_cases.hpp"
#include "support/bench_run.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

std::vector<BackendCase> one_thread_serves_many() {
  std::vector<BackendCase> cases;
  for (const auto& c : all_backend_cases()) {
    if (c.flags.empty() && (c.loop_model || c.backend == "leader-follower")) cases.push_back(c);
  }
  return cases;
}

class Fairness : public ::testing::TestWithParam<BackendCase> {};

// Fiber before its fix: Jain's index 0.24-0.40 here, the busiest connection at 12x the median
// (at 10,000 connections 0.04).
TEST_P(Fairness, FiveHundredPingPongConnectionsEachGetTheirShare) {
  constexpr int kConnections = 500;
  const RaisedFdLimit fd_limit(2 * kConnections + 200);
  ASSERT_TRUE(fd_limit.reached()) << "the hard RLIMIT_NOFILE is too low for this test";
  auto server = start_server(GetParam().args());
  expect_fair_share(server->port(), kConnections);
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
}

INSTANTIATE_TEST_SUITE_P(OneThreadServesMany, Fairness,
                         ::testing::ValuesIn(one_thread_serves_many()),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
