// Scenarios specific to the readiness models (nbpoll, select, poll, epoll and its variants,
// sigio):
// thousands of connections on one thread, select's FD_SETSIZE ceiling, descriptor exhaustion
// without spinning, and the idle-timeout timer.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/select.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

std::vector<BackendCase> cases_of(const std::set<std::string>& models) {
  std::vector<BackendCase> cases;
  for (const auto& c : all_backend_cases()) {
    if (models.contains(c.backend)) cases.push_back(c);
  }
  return cases;
}
std::vector<BackendCase> readiness_cases() {
  return cases_of({"nbpoll", "select", "poll", "epoll", "sigio"});
}
// select cannot hold 2,000 connections; it has its own ceiling test.
std::vector<BackendCase> unbounded_readiness_cases() {
  return cases_of({"nbpoll", "poll", "epoll", "sigio"});
}

bool round_trip(int fd, const std::string& message) {
  return send_text(fd, message) && recv_exact(fd, message.size()) == message;
}

// Appending (rather than "text" + std::to_string) sidesteps a GCC 12 -Wrestrict false positive.
std::string tagged(std::string text, std::size_t n) {
  text += std::to_string(n);
  return text;
}

class Readiness : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra = {},
                                       const ServerProcess::Options& options = {}) {
    return start_server(GetParam().args(extra), options);
  }
};

class ManyConnections : public Readiness {};

TEST_P(ManyConnections, ServesTwoThousandConcurrentConnections) {
  constexpr int kClients = 2000;
  const RaisedFdLimit fd_limit(2 * kClients + 100);
  ASSERT_TRUE(fd_limit.reached()) << "the hard RLIMIT_NOFILE is too low for this test";
  auto server = start();
  std::vector<unique_fd> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_loopback(server->port()));
  // All connected before any byte moves, so the server really holds 2,000 at once.
  for (int i = 0; i < kClients; ++i)
    ASSERT_TRUE(send_text(clients[i].get(), tagged("client ", static_cast<std::size_t>(i))));
  int intact = 0;
  for (int i = 0; i < kClients; ++i) {
    const std::string expected = tagged("client ", static_cast<std::size_t>(i));
    if (recv_exact(clients[i].get(), expected.size()) == expected) ++intact;
  }
  EXPECT_EQ(intact, kClients);
}

class SelectCeiling : public Readiness {};

TEST_P(SelectCeiling, ServesUpToFdSetSizeThenRefusesCleanly) {
  const RaisedFdLimit fd_limit(rlim_t{3} * FD_SETSIZE);
  ASSERT_TRUE(fd_limit.reached()) << "the hard RLIMIT_NOFILE is too low for this test";
  auto server = start();
  // One at a time, so the server's descriptors climb in order up to the ceiling.
  std::vector<unique_fd> clients;
  bool refused = false;
  while (!refused && clients.size() < FD_SETSIZE + 16) {
    auto fd = connect_loopback(server->port());
    if (round_trip(fd.get(), tagged("n", clients.size())))
      clients.push_back(std::move(fd));
    else
      refused = true;
  }
  EXPECT_TRUE(refused) << "no connection was refused at fd " << FD_SETSIZE;
  // The server's own descriptors (stdio, listener, stop pipe, reserve) sit below the first client.
  EXPECT_GT(clients.size(), static_cast<std::size_t>(FD_SETSIZE - 16));
  EXPECT_NE(server->stderr_text().find("FD_SETSIZE"), std::string::npos) << server->stderr_text();
  // Everyone admitted is still served, and a freed slot admits a newcomer.
  EXPECT_TRUE(round_trip(clients.front().get(), "first"));
  EXPECT_TRUE(round_trip(clients.back().get(), "last"));
  clients.front().reset();
  bool admitted = false;
  for (int attempt = 0; attempt < 100 && !admitted; ++attempt) {
    auto fd = connect_loopback(server->port());
    admitted = round_trip(fd.get(), "again");
  }
  EXPECT_TRUE(admitted);
}

TEST_P(Readiness, DescriptorExhaustionNeitherSpinsNorStopsService) {
  // Each serving process has its own 64 descriptors.
  const int kAttempts = 200 * static_cast<int>(GetParam().serving_processes());
  auto server = start({}, {.nofile_limit = 64});
  const double cpu_before = server->cpu_seconds();
  std::vector<unique_fd> served;
  int shed = 0;
  for (int i = 0; i < kAttempts; ++i) {
    auto fd = connect_loopback(server->port());
    if (round_trip(fd.get(), "x"))
      served.push_back(std::move(fd));
    else
      ++shed;  // closed at once by the server: EOF or reset
  }
  EXPECT_GT(served.size(), 0u);
  EXPECT_GT(shed, kAttempts / 2) << "64-descriptor processes cannot hold " << kAttempts
                                 << " connections";
  // A measurement window, not synchronisation: a server spinning on a readable listener it
  // cannot accept from would burn a full core here.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double cpu_used = server->cpu_seconds() - cpu_before;
  EXPECT_LT(cpu_used, 0.3) << "server used " << cpu_used << " s of CPU: spinning on EMFILE?";
  for (auto& fd : served) EXPECT_TRUE(round_trip(fd.get(), "still here"));
  // Freed descriptors are used again.
  served.resize(served.size() / 2);
  bool admitted = false;
  for (int attempt = 0; attempt < 100 && !admitted; ++attempt) {
    auto fd = connect_loopback(server->port());
    admitted = round_trip(fd.get(), "new");
  }
  EXPECT_TRUE(admitted);
  const std::string log = server->stderr_text();
  const std::size_t bursts = count_occurrences(log, "shedding new connections");
  EXPECT_GE(bursts, 1u) << log;
  EXPECT_LE(bursts, 4u) << "one line per burst, not per connection:\n" << log;
}

TEST_P(Readiness, IdleTimeoutClosesTheIdleClientNotTheBusyOne) {
  auto server = start({"--idle-timeout", "0.3"});
  auto idle = connect_loopback(server->port());
  auto busy = connect_loopback(server->port());
  ASSERT_TRUE(round_trip(idle.get(), "i"));
  ASSERT_TRUE(round_trip(busy.get(), "b"));
  std::atomic<bool> idle_ended{false};
  PeerEnd idle_end = PeerEnd::timed_out;
  std::thread watcher([&] {
    idle_end = wait_for_close(idle.get());
    idle_ended = true;
  });
  bool busy_ok = true;
  while (busy_ok && !idle_ended) busy_ok = round_trip(busy.get(), "busy");
  watcher.join();
  EXPECT_TRUE(idle_end == PeerEnd::closed || idle_end == PeerEnd::reset);
  EXPECT_TRUE(busy_ok) << "the busy client was cut";
  EXPECT_TRUE(round_trip(busy.get(), "after"));
}

INSTANTIATE_TEST_SUITE_P(UnboundedModels, ManyConnections,
                         ::testing::ValuesIn(unbounded_readiness_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });
INSTANTIATE_TEST_SUITE_P(Select, SelectCeiling, ::testing::ValuesIn(cases_of({"select"})),
                         [](const auto& test_info) { return case_name(test_info.param); });
INSTANTIATE_TEST_SUITE_P(ReadinessModels, Readiness, ::testing::ValuesIn(readiness_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
