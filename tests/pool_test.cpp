// Behaviour specific to the pooled models (threadpool, prefork): what a bounded pool does when
// every worker is busy, when its queue is full, and when a worker process dies. Everything
// else (echo, drain, limits) is covered for every strategy by the conformance variants.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

std::unique_ptr<ServerProcess> start(const std::vector<std::string>& args) {
  return start_server(args);
}

void expect_echo(int fd, const std::string& text) {
  ASSERT_TRUE(send_text(fd, text));
  EXPECT_EQ(recv_exact(fd, text.size()), text);
}

// SIGTERM, exit 0, and the final stats line.
std::string stop(ServerProcess& server) {
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(kSafetyTimeout), 0) << server.stderr_text();
  return server.remaining_stdout();
}

using Flags = std::vector<std::string>;

class PoolWithTwoWorkers : public ::testing::TestWithParam<Flags> {};

// Two workers, three clients: the third is accepted (or waits in the backlog) but not served
// until a worker frees up; the bytes it sent meanwhile are not lost.
TEST_P(PoolWithTwoWorkers, ThirdClientIsServedWhenAWorkerFreesUp) {
  Flags args = GetParam();
  args.insert(args.end(), {"--workers", "2"});
  auto server = start(args);
  auto first = connect_loopback(server->port());
  auto second = connect_loopback(server->port());
  expect_echo(first.get(), "one");
  expect_echo(second.get(), "two");
  auto third = connect_loopback(server->port());
  ASSERT_TRUE(send_text(third.get(), "sent while both workers were busy"));
  first.reset();
  EXPECT_EQ(recv_exact(third.get(), 33), "sent while both workers were busy");
  expect_echo(second.get(), "still served");
  third.reset();
  second.reset();
  EXPECT_NE(stop(*server).find("accepted=3 rejected=0 active=0"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, PoolWithTwoWorkers,
    ::testing::Values(Flags{"--backend", "threadpool", "--pool-strategy", "queue"},
                      Flags{"--backend", "threadpool", "--pool-strategy", "accept"},
                      Flags{"--backend", "prefork", "--accept-strategy", "shared"},
                      Flags{"--backend", "prefork", "--accept-strategy", "fdpass"}),
    [](const auto& test_info) { return test_info.param[1] + "_" + test_info.param[3]; });

class PoolWithQueue : public ::testing::TestWithParam<Flags> {};

// One worker, a queue of one: the first client is served, the second waits in the queue, the
// third is closed at once and counted as rejected, and the second is served after the first.
TEST_P(PoolWithQueue, FullQueueRejectsAtOnceAndQueuedClientIsServedLater) {
  Flags args = GetParam();
  args.insert(args.end(), {"--workers", "1", "--queue-limit", "1"});
  auto server = start(args);
  auto first = connect_loopback(server->port());
  expect_echo(first.get(), "served");
  auto queued = connect_loopback(server->port());
  ASSERT_TRUE(send_text(queued.get(), "queued"));
  auto refused = connect_loopback(server->port());
  const PeerEnd end = wait_for_close(refused.get());
  EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset) << "a full queue must refuse";
  first.reset();
  EXPECT_EQ(recv_exact(queued.get(), 6), "queued");
  queued.reset();
  EXPECT_NE(stop(*server).find("accepted=2 rejected=1 active=0"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, PoolWithQueue,
    ::testing::Values(Flags{"--backend", "threadpool", "--pool-strategy", "queue"},
                      Flags{"--backend", "prefork", "--accept-strategy", "fdpass"}),
    [](const auto& test_info) { return test_info.param[1] + "_" + test_info.param[3]; });

class PreforkSupervision : public ::testing::TestWithParam<std::string> {
 protected:
  // Two clients, each echoed by its own worker of a 2-worker server; then SIGKILL to one of
  // those workers. Returns the workers as they were before.
  static std::vector<pid_t> kill_a_busy_worker(ServerProcess& server, unique_fd& a, unique_fd& b) {
    a = connect_loopback(server.port());
    b = connect_loopback(server.port());
    expect_echo(a.get(), "a");
    expect_echo(b.get(), "b");
    std::vector<pid_t> workers = server.child_pids();
    EXPECT_EQ(workers.size(), 2u);
    if (!workers.empty()) {
      EXPECT_EQ(::kill(workers.front(), SIGKILL), 0);
    }
    return workers;
  }
};

// kill -9 of a busy worker: its own client is cut, the other worker's client does not notice,
// the master reaps the dead worker (no zombie) and forks a replacement that serves new clients.
TEST_P(PreforkSupervision, KilledWorkerIsReplacedAndOthersAreUnaffected) {
  auto server = start({"--backend", "prefork", "--workers", "2", "--accept-strategy", GetParam()});
  unique_fd a, b;
  const std::vector<pid_t> before = kill_a_busy_worker(*server, a, b);
  ASSERT_EQ(before.size(), 2u);
  const pid_t victim = before.front();

  // Exactly one client belonged to the victim (each worker serves one at a time).
  int cut = 0;
  unique_fd* survivor = nullptr;
  for (unique_fd* client : {&a, &b}) {
    send_text(client->get(), "ping");  // may fail on the cut one: that is the point
    if (recv_exact(client->get(), 4) == "ping") {
      survivor = client;
    } else {
      ++cut;
    }
  }
  EXPECT_EQ(cut, 1);
  ASSERT_NE(survivor, nullptr);

  // The survivor's worker is still busy, so this client needs the replacement worker.
  auto c = connect_loopback(server->port());
  expect_echo(c.get(), "served by the replacement");
  expect_echo(survivor->get(), "still here");

  const std::vector<pid_t> after = server->child_pids();
  EXPECT_EQ(after.size(), 2u);
  EXPECT_EQ(std::count(after.begin(), after.end(), victim), 0) << "the dead worker was not reaped";
  EXPECT_FALSE(process_exists(victim));
  for (pid_t child : after) EXPECT_NE(process_state(child), 'Z') << "zombie " << child;
  EXPECT_TRUE(std::any_of(after.begin(), after.end(), [&](pid_t p) {
    return std::find(before.begin(), before.end(), p) == before.end();
  })) << "no replacement worker";

  c.reset();
  a.reset();
  b.reset();
  const std::string line = stop(*server);
  EXPECT_NE(line.find("active=0"), std::string::npos) << line;
  EXPECT_NE(line.find("errors=1"), std::string::npos) << line;
  for (pid_t child : after)
    EXPECT_FALSE(process_exists(child)) << "worker " << child << " survived";
}

// --max-per-ip places are in memory shared with the workers; a worker killed mid-connection
// never gives its places back itself, so the master must drop them when it reaps it.
TEST_P(PreforkSupervision, KilledWorkersPerIpPlacesAreGivenBack) {
  auto server = start({"--backend", "prefork", "--workers", "2", "--accept-strategy", GetParam(),
                       "--max-per-ip", "2"});
  unique_fd a, b;
  const std::vector<pid_t> before = kill_a_busy_worker(*server, a, b);
  ASSERT_EQ(before.size(), 2u);
  const pid_t victim = before.front();
  // The replacement exists only after the master reaped the victim (and dropped its places).
  // Nothing notifies a test of that, so look again every 10 ms, bounded by the safety timeout.
  const auto deadline = std::chrono::steady_clock::now() + kSafetyTimeout;
  for (;;) {
    const std::vector<pid_t> now = server->child_pids();
    if (now.size() == 2 && std::count(now.begin(), now.end(), victim) == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no replacement worker";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // 127.0.0.1 still holds one live connection (the survivor's): a new one must fit.
  auto c = connect_loopback(server->port());
  expect_echo(c.get(), "the dead worker's place is free");
}

INSTANTIATE_TEST_SUITE_P(Strategies, PreforkSupervision, ::testing::Values("shared", "fdpass"));

}  // namespace
}  // namespace polyecho::test
