// The signal-driven model's own failure mode: its realtime signal queue overflows. The server
// runs with RLIMIT_SIGPENDING lowered to 16 and is frozen (SIGSTOP) while 500 clients connect
// and then send, so far more readiness signals are queued for it than the limit allows and the
// kernel falls back to a bare SIGIO. After SIGCONT every echo must still come back: the loop
// re-checks every watched fd when it sees SIGIO. The log line proves that path ran.
//
// Freezing is synchronised, not timed: waitpid(WUNTRACED) returns once the server is stopped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>

#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

constexpr int kClients = 500;
constexpr const char* kOverflowLine = "signal queue overflowed";

// Stops the server and returns once the kernel reports it stopped, so everything the test
// sends afterwards queues signals that nobody dequeues until thaw().
void freeze(ServerProcess& server) {
  server.signal(SIGSTOP);
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(server.pid(), &status, WUNTRACED)) < 0 && errno == EINTR) {
  }
  ASSERT_EQ(got, server.pid());
  ASSERT_TRUE(WIFSTOPPED(status)) << "server exited instead of stopping";
}

void thaw(ServerProcess& server) {
  server.signal(SIGCONT);
}

std::string message(const char* phase, int client) {
  std::string text(phase);
  text += std::to_string(client);
  text += '\n';
  return text;
}

// Counts the clients whose echo of `expected(i)` is intact. Stops at the first failure: a lost
// signal shows up as a recv that waits for the safety timeout, and one is enough to know.
template <typename Expected>
int intact_echoes(const std::vector<unique_fd>& clients, Expected expected) {
  int intact = 0;
  for (int i = 0; i < static_cast<int>(clients.size()); ++i) {
    const std::string want = expected(i);
    if (recv_exact(clients[static_cast<std::size_t>(i)].get(), want.size()) != want) break;
    ++intact;
  }
  return intact;
}

TEST(Sigio, SignalQueueOverflowLosesNoConnectionAndNoByte) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur =
      std::max<rlim_t>(limit.rlim_cur, std::min<rlim_t>(kClients + 100, limit.rlim_max));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &limit), 0);

  auto server = ServerProcess::start({"--backend", "sigio", "--log-level", "info"},
                                     {.prlimit_args = {"--sigpending=16"}});
  ASSERT_NE(server, nullptr);
  // The "listening on" line comes before the loop has set O_ASYNC on the listener: one round
  // trip proves the loop is running, so the frozen server below really has its signals armed.
  auto first = connect_loopback(server->port());
  ASSERT_TRUE(send_text(first.get(), "ready\n"));
  ASSERT_EQ(recv_exact(first.get(), 6), "ready\n");

  // Phase 1, the listener: 500 connections complete in the kernel's backlog while the server
  // is frozen, one POLL_IN signal each on the listening socket. Their first bytes arrive before
  // the server even set O_ASYNC on them (no signal at all: the re-check on add covers it).
  freeze(*server);
  std::vector<unique_fd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(connect_loopback(server->port()));
    ASSERT_TRUE(send_text(clients.back().get(), message("hello ", i)));
  }
  thaw(*server);
  EXPECT_EQ(intact_echoes(clients, [](int i) { return message("hello ", i); }), kClients);
  // The line is written before the re-check it announces, so before the echoes just read.
  // One line for the burst, however many SIGIOs it took.
  EXPECT_EQ(count_occurrences(server->stderr_text(), kOverflowLine), 1u) << server->stderr_text();

  // Phase 2, the connections: every client sends a burst of small writes, each one a separate
  // POLL_IN signal for its socket, 4,000 in all against a queue of 16.
  constexpr int kWrites = 8;
  freeze(*server);
  for (int i = 0; i < kClients; ++i) {
    for (int w = 0; w < kWrites; ++w)
      ASSERT_TRUE(send_text(clients[static_cast<std::size_t>(i)].get(), message("burst ", i)));
  }
  thaw(*server);
  EXPECT_EQ(intact_echoes(clients,
                          [](int i) {
                            std::string all;
                            for (int w = 0; w < kWrites; ++w) all += message("burst ", i);
                            return all;
                          }),
            kClients);
  EXPECT_EQ(count_occurrences(server->stderr_text(), kOverflowLine), 2u) << server->stderr_text();

  // Hang up first, so the drain after SIGTERM ends with the last EOF (itself a signal), not at
  // --drain-timeout.
  clients.clear();
  first.reset();
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  // The 501 hang-ups may overflow the queue once more; that burst is not counted above.
}

}  // namespace
}  // namespace polyecho::test
