// The topologies of the event-loop models (server/topology/, docs/TOPOLOGIES.md), over real
// loopback sockets: a main acceptor hands connections to the loops (or worker processes) evenly,
// and a worker process killed under --processes is replaced while service goes on. Everything
// else the topologies must do (echo, drain, limits, hostile peers) is covered by the shared
// suites, which run every topology variant the registry lists.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

bool registered(const std::string& backend) {
  const auto& cases = all_backend_cases();
  return std::any_of(cases.begin(), cases.end(),
                     [&](const BackendCase& c) { return c.backend == backend; });
}

bool echoes(int fd, const std::string& text) {
  return send_text(fd, text) && recv_exact(fd, text.size()) == text;
}

// SIGTERM, wait for the exit, and the final stats line.
std::string stop(ServerProcess& server) {
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(kSafetyTimeout), 0) << server.stderr_text();
  return server.remaining_stdout();
}

// "loop_connections=A/B/..." from the final stats line, or "" when it is missing.
std::string loop_connections(const std::string& line) {
  const std::string key = "loop_connections=";
  const auto at = line.find(key);
  if (at == std::string::npos) return "";
  const auto begin = at + key.size();
  return line.substr(begin, line.find_first_of(" \n", begin) - begin);
}

// Opens `count` clients one after another, each echoed before the next connects (so the
// acceptor's order is the clients' order), holds them all, then stops the server.
std::string hand_out(const std::vector<std::string>& args, int count) {
  auto server = start_server(args);
  std::vector<unique_fd> clients;
  for (int i = 0; i < count; ++i) {
    clients.push_back(connect_loopback(server->port()));
    EXPECT_TRUE(echoes(clients.back().get(), "client " + std::to_string(i) + "\n")) << i;
  }
  clients.clear();
  return stop(*server);
}

class MainAcceptor : public ::testing::TestWithParam<const char*> {};

// Round-robin: 40 connections to 4 loops are 10 each, whichever model the loops run.
TEST_P(MainAcceptor, HandsConnectionsToTheLoopsEvenly) {
  if (!registered(GetParam())) GTEST_SKIP() << GetParam() << " is not compiled in";
  const std::string line =
      hand_out({"--backend", GetParam(), "--acceptor", "main", "--workers", "4"}, 40);
  EXPECT_EQ(loop_connections(line), "10/10/10/10") << line;
  EXPECT_NE(line.find("accepted=40 rejected=0 active=0"), std::string::npos) << line;
}

INSTANTIATE_TEST_SUITE_P(LoopModels, MainAcceptor,
                         ::testing::Values("epoll", "fiber", "uring", "asio-coro"),
                         [](const auto& test_info) {
                           std::string name = test_info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// The master passes connections to the worker processes in turn (SCM_RIGHTS), one loop each.
TEST(ProcessesMainAcceptor, PassesConnectionsToTheProcessesEvenly) {
  const std::string line =
      hand_out({"--backend", "epoll", "--processes", "3", "--acceptor", "main"}, 30);
  EXPECT_EQ(loop_connections(line), "10/10/10") << line;
  EXPECT_NE(line.find("accepted=30 rejected=0 active=0"), std::string::npos) << line;
}

class KilledWorker : public ::testing::TestWithParam<const char*> {};

// kill -9 of a worker process: the master reaps it (no zombie), forks a replacement, and new
// clients are served; the connections the dead worker held are counted out of `active`.
TEST_P(KilledWorker, IsReplacedAndServiceContinues) {
  auto server = start_server({"--backend", "epoll", "--processes", "2", "--acceptor", GetParam()});
  std::vector<unique_fd> before;
  for (int i = 0; i < 4; ++i) {
    before.push_back(connect_loopback(server->port()));
    ASSERT_TRUE(echoes(before.back().get(), "before\n"));
  }
  // The master forks both workers before it accepts anything, but nothing tells a test when
  // the second fork is done: look every 10 ms, bounded by the safety timeout.
  const auto deadline = std::chrono::steady_clock::now() + kSafetyTimeout;
  std::vector<pid_t> workers = server->child_pids();
  while (workers.size() < 2) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the workers never started";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    workers = server->child_pids();
  }
  ASSERT_EQ(workers.size(), 2u);
  const pid_t victim = workers.front();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);

  // Service goes on at once (the survivor, and the backlog or the master for the rest), and a
  // replacement appears; look for it the same bounded way.
  std::vector<pid_t> after;
  for (;;) {
    after = server->child_pids();
    if (after.size() == 2 && std::count(after.begin(), after.end(), victim) == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no replacement worker";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(process_exists(victim));
  for (pid_t child : after) EXPECT_NE(process_state(child), 'Z') << "zombie " << child;
  for (int i = 0; i < 20; ++i) {
    auto client = connect_loopback(server->port());
    EXPECT_TRUE(echoes(client.get(), "after " + std::to_string(i) + "\n")) << i;
  }
  // The survivor's clients were never disturbed; the victim's were cut, and the master counted
  // exactly those as lost (errors) and took them out of `active`.
  int cut = 0;
  for (auto& client : before) cut += echoes(client.get(), "still?\n") ? 0 : 1;
  before.clear();
  const std::string line = stop(*server);
  EXPECT_NE(line.find("accepted=24 rejected=0 active=0 "), std::string::npos) << line;
  EXPECT_NE(line.find("errors=" + std::to_string(cut) + " "), std::string::npos)
      << cut << " cut: " << line;
  for (pid_t child : after) EXPECT_FALSE(process_exists(child)) << "worker " << child;
}

INSTANTIATE_TEST_SUITE_P(Acceptors, KilledWorker, ::testing::Values("reuseport", "shared", "main"));

}  // namespace
}  // namespace polyecho::test
