// Hostile clients, for every backend × variant: floods beyond --max-connections, descriptor
// exhaustion, resets in the middle of a transfer, keepalive on vanished peers, garbage and
// oversized lines, a killed fork child, and a stop signal under full load. What the other
// suites already cover is not repeated here: slow readers and pipelining (flow_control_test),
// prefork kill -9 (pool_test), the second stop signal (conformance_test), the loopback-only
// default bind (cli_test).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <thread>

#include "polyecho/socket_ops.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;

bool round_trip(int fd, const std::string& message) {
  return send_text(fd, message) && recv_exact(fd, message.size()) == message;
}

bool refused(int fd) {
  const PeerEnd end = wait_for_close(fd);
  return end == PeerEnd::closed || end == PeerEnd::reset;
}

// Waits, bounded by the safety timeout, until `done()` holds. For conditions nobody can
// notify us about (a process reaped by another process, a listener freeing a slot); the short
// pause between checks only keeps the loop from burning the CPU the server needs.
template <typename Condition>
bool eventually(Condition done) {
  const auto deadline = Clock::now() + kSafetyTimeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A fresh client that gets its echo, retried while the server recovers (freed descriptors,
// a reaped slot). Each attempt ends on the server's answer: an echo, EOF or a reset.
bool new_client_is_served(std::uint16_t port) {
  return eventually([&] {
    auto fd = connect_loopback(port);
    return round_trip(fd.get(), "newcomer\n");  // LF: line mode echoes whole lines
  });
}

// The number after "KEY=" in the server's stats line; UINT64_MAX when absent.
std::uint64_t stat_field(const std::string& line, const std::string& key) {
  const auto at = line.find(" " + key + "=");
  if (at == std::string::npos) return UINT64_MAX;
  return std::strtoull(line.c_str() + at + key.size() + 2, nullptr, 10);
}

class Hostile : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra = {},
                                       const ServerProcess::Options& options = {}) {
    return start_server(GetParam().args(extra), options);
  }
  [[nodiscard]] bool concurrent() const { return GetParam().serves_concurrently; }
};

// --- 1. Flood beyond --max-connections -----------------------------------------------------

TEST(HostileCli, MaxConnectionsHasAFiniteDefault) {
  const CommandResult help = run_command(server_binary() + " --help");
  ASSERT_EQ(help.status, 0);
  // The option's help line ends in "=DEFAULT" (CLI11); no default means no "=".
  const auto option = help.output.find("--max-connections ");
  ASSERT_NE(option, std::string::npos) << help.output;
  const std::string line = help.output.substr(option, help.output.find('\n', option) - option);
  const auto equals = line.rfind('=');
  ASSERT_NE(equals, std::string::npos) << "no default shown: " << line;
  const auto limit = std::strtoull(line.c_str() + equals + 1, nullptr, 10);
  EXPECT_GT(limit, 0u);
  EXPECT_LE(limit, 1'000'000u) << "a default a client could never reach is no limit";
}

TEST_P(Hostile, FloodBeyondMaxConnectionsClosesExtrasAndKeepsTheAdmitted) {
  // The limit must sit below every pool's serving slots, or refusal is not observable: a pool
  // whose slots are all busy does not accept, so extras wait in the backlog instead (the
  // pools' documented behaviour, pool_test). The smallest pools registered as variants have 3
  // slots (threadpool --workers 3, prefork --workers 1 --worker-threads 3), hence 2.
  constexpr int kLimit = 2;
  auto server = start({"--max-connections", std::to_string(kLimit)});
  std::vector<unique_fd> admitted;
  // One by one, each echo proving admission before the next arrives (several accept queues
  // give no order between simultaneous arrivals).
  for (int i = 0; i < (concurrent() ? kLimit : 1); ++i) {
    admitted.push_back(connect_loopback(server->port()));
    ASSERT_TRUE(round_trip(admitted.back().get(), "admitted " + std::to_string(i)));
  }
  std::vector<unique_fd> extras;
  extras.reserve(3);
  for (int i = 0; i < 3; ++i) extras.push_back(connect_loopback(server->port()));
  if (concurrent()) {
    for (auto& extra : extras) {
      const PeerEnd end = wait_for_close(extra.get());
      EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset)
          << "an extra client was " << (end == PeerEnd::data ? "served" : "left hanging");
    }
    for (auto& fd : admitted) EXPECT_TRUE(round_trip(fd.get(), "still admitted"));
    return;
  }
  // iterative serves one client at a time and leaves the rest in the backlog: the flood does
  // not disturb the client being served, and each waiting one is served, in order, once the
  // one before it leaves.
  for (auto& extra : extras) ASSERT_TRUE(send_text(extra.get(), "queued"));
  EXPECT_TRUE(round_trip(admitted.front().get(), "still admitted"));
  admitted.clear();
  for (auto& extra : extras) {
    EXPECT_EQ(recv_exact(extra.get(), 6), "queued");
    extra.reset();
  }
}

// --- 1b. --max-per-ip ----------------------------------------------------------------------

TEST_P(Hostile, MaxPerIpRefusesOneAddressOnlyAndFreesItsPlacesOnClose) {
  // 2 per address, plus one client from 127.0.0.2: 3 served at once, which the smallest pool
  // variants (3 slots) can hold. Refusal by a pool is only observable with a slot to spare.
  auto server = start({"--max-per-ip", "2"});
  if (!concurrent()) {
    // One at a time: each client gives its place back, so every one from the address is
    // served in turn, never refused.
    for (int i = 0; i < 4; ++i) {
      auto fd = connect_loopback(server->port());
      ASSERT_TRUE(round_trip(fd.get(), "turn " + std::to_string(i))) << i;
    }
    return;
  }
  std::vector<unique_fd> admitted;
  for (int i = 0; i < 2; ++i) {
    admitted.push_back(connect_loopback(server->port()));
    ASSERT_TRUE(round_trip(admitted.back().get(), "admitted " + std::to_string(i)));
  }
  auto extra = connect_loopback(server->port());
  EXPECT_TRUE(refused(extra.get())) << "a third client from 127.0.0.1 was not refused";
  auto other = connect_loopback_from(server->port(), "127.0.0.2");
  EXPECT_TRUE(round_trip(other.get(), "other address")) << "127.0.0.2 was refused too";
  for (auto& fd : admitted) EXPECT_TRUE(round_trip(fd.get(), "still admitted"));
  // A client that leaves gives its place back (no leaked count): 127.0.0.1 gets in again.
  ::shutdown(admitted.front().get(), SHUT_WR);
  EXPECT_NE(wait_for_close(admitted.front().get()), PeerEnd::data);
  admitted.front().reset();
  EXPECT_TRUE(new_client_is_served(server->port()));
  admitted.clear();
  other.reset();
  server->signal(SIGTERM);
  ASSERT_EQ(server->wait_exit(kSafetyTimeout), 0);
  const std::string tail = server->remaining_stdout();
  EXPECT_GE(stat_field(tail, "rejected"), 1u) << tail;
  EXPECT_EQ(stat_field(tail, "active"), 0u) << tail;
}

// --- 2. Descriptor exhaustion -------------------------------------------------------------

// Every model, every variant: edge-triggered epoll, SO_REUSEPORT workers and fd passing each
// have their own accept path, and each can get EMFILE wrong in its own way (spin, stall).
// The 3 s window is idle time for the test, so ctest -j overlaps it across variants.
TEST_P(Hostile, DescriptorExhaustionNeitherSpinsNorStopsService) {
  constexpr int kAttempts = 300;
  auto server = start({}, {.nofile_limit = 64});
  auto a = connect_loopback(server->port());
  ASSERT_TRUE(round_trip(a.get(), "A before"));
  std::vector<unique_fd> held;
  held.reserve(kAttempts);
  for (int i = 0; i < kAttempts; ++i) held.push_back(connect_loopback(server->port()));
  // A measurement window, not synchronisation: nothing is awaited here. A server spinning on
  // a readable listener it cannot accept from burns a full core (3 s of CPU) in it.
  const double cpu_before = server->cpu_seconds();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const double cpu_used = server->cpu_seconds() - cpu_before;
  EXPECT_LT(cpu_used, 0.9) << "server used " << cpu_used << " s of CPU in 3 s: spinning on EMFILE?";
  EXPECT_TRUE(round_trip(a.get(), "A during")) << "the established client lost service";
  held.clear();
  if (!concurrent()) a.reset();  // iterative only reaches the newcomer after A leaves
  EXPECT_TRUE(new_client_is_served(server->port())) << server->stderr_text();
}

// --- 3. Reset in the middle of a transfer --------------------------------------------------

TEST_P(Hostile, ResetWhileTheServerWritesLeavesItServing) {
  auto server = start();
  {
    auto fd = connect_loopback(server->port());
    const std::string payload = random_bytes(4 << 20, 3);
    set_nonblocking(fd.get());
    // Push without reading until 4 MiB are out or every buffer on the path is full.
    std::size_t sent = 0;
    while (sent < payload.size()) {
      pollfd p{fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, 300) == 0) break;  // stalled: only decides when to stop pushing
      const IoResult r = send_some(fd.get(), std::string_view(payload).substr(sent));
      if (r.bytes > 0)
        sent += static_cast<std::size_t>(r.bytes);
      else
        ASSERT_TRUE(r.would_block()) << std::strerror(r.error);
    }
    // Echoed bytes waiting for us prove the server is in the middle of writing.
    pollfd p{fd.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kSafetyTimeout).count())),
              1);
    const linger abort_on_close{1, 0};
    ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close),
              0);
  }  // close: RST, with the server's output still queued for us
  EXPECT_TRUE(new_client_is_served(server->port()));
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
}

// --- 4. Vanished peers: keepalive ----------------------------------------------------------

TEST_P(Hostile, KeepaliveOptionArmsTheTimerOnServerSockets) {
  auto server = start({"--keepalive", "7"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(round_trip(fd.get(), "alive?"));
  const std::string port = std::to_string(server->port());
  const CommandResult ss = run_command("ss -tnoH state established '( sport = :" + port + " )'");
  ASSERT_EQ(ss.status, 0);
  ASSERT_NE(ss.output.find(":" + port), std::string::npos) << "no server-side socket listed";
  EXPECT_NE(ss.output.find("keepalive"), std::string::npos) << ss.output;
}

// --- 5. Line mode garbage --------------------------------------------------------------------

TEST_P(Hostile, LineModeEchoesBinaryGarbageExactly) {
  auto server = start({"--mode", "line"});
  auto fd = connect_loopback(server->port());
  using namespace std::string_literals;  // "..."s keeps the embedded NULs
  const std::string garbage =
      "nul\0in\0the\0middle\n"s + "\xff\xfe\xc3\x28\n" + "a\rb\n" + "\0\n"s + "\r\r\n";
  ASSERT_TRUE(send_text(fd.get(), garbage));
  EXPECT_EQ(recv_exact(fd.get(), garbage.size()), garbage);
}

TEST_P(Hostile, LineModeTenMebibyteLineGetsTheErrorAndBoundedMemory) {
  // Per process: the 1 MiB default --max-buffer plus allocator (and asan) noise, well below
  // what holding the 10 MiB line would cost. Sums over processes would count pages a pool's
  // workers share with the master (and workers still starting up) as growth.
  constexpr long kSlackKib = 16L * 1024;
  auto server = start({"--mode", "line"});
  const long idle_kib = server->rss_kib();
  auto fd = connect_loopback(server->port());
  const std::string line(10 << 20, 'z');  // no LF anywhere
  std::atomic<long> peak_kib{idle_kib};
  std::thread writer([&] {
    // Sampled per 256 KiB sent. The server may close (and reset) long before the end: the
    // send then fails, which is the expected outcome, not an error.
    for (std::size_t at = 0; at < line.size(); at += std::size_t{256} * 1024) {
      if (!send_text(fd.get(), std::string_view(line).substr(at, std::size_t{256} * 1024))) break;
      peak_kib = std::max(peak_kib.load(), server->max_rss_kib());
    }
  });
  const std::string reply = recv_until_eof(fd.get());
  writer.join();
  EXPECT_EQ(reply, "error: line too long (max 65536 bytes)\n");
  EXPECT_LT(peak_kib - idle_kib, kSlackKib)
      << "RSS grew from " << idle_kib << " KiB to " << peak_kib;
  EXPECT_TRUE(new_client_is_served(server->port()));
}

TEST_P(Hostile, LineModeHundredThousandTinyLinesInOneWrite) {
  auto server = start({"--mode", "line"});
  auto fd = connect_loopback(server->port());
  std::string lines;
  for (int i = 0; i < 100'000; ++i) lines += "x\n";
  std::atomic<bool> sent_ok{false};
  std::thread writer([&] { sent_ok = send_text(fd.get(), lines); });  // one write, no pacing
  const std::string echoed = recv_exact(fd.get(), lines.size());
  writer.join();
  EXPECT_TRUE(sent_ok);
  EXPECT_EQ(echoed.size(), lines.size());
  EXPECT_TRUE(echoed == lines);
}

// --- 7. Stop signal under full load ---------------------------------------------------------

TEST_P(Hostile, StopUnderLoadEchoesEverythingReceivedAndExitsZero) {
  auto server = start({"--drain-timeout", "1"});
  auto fd = connect_loopback(server->port());
  // The stream repeats a random block whose size is not a power of two, so a lost, repeated
  // or reordered chunk shows up as a mismatch at its offset.
  const std::string block = random_bytes(1'000'003, 9);
  std::atomic<bool> stop_writing{false};
  std::thread writer([&] {
    std::size_t at = 0;
    while (!stop_writing) {
      const std::size_t n = std::min(std::size_t{64} * 1024, block.size() - at);
      if (!send_text(fd.get(), std::string_view(block).substr(at, n))) break;  // cut: expected
      at = (at + n) % block.size();
    }
  });
  std::promise<void> streaming;
  std::size_t received = 0;
  std::size_t first_mismatch = SIZE_MAX;
  std::thread reader([&] {
    char chunk[64 * 1024];
    for (bool announced = false;;) {
      const IoResult r = read_some(fd.get(), chunk);
      if (r.bytes <= 0) break;  // EOF or reset at the drain deadline
      for (ssize_t i = 0; i < r.bytes && first_mismatch == SIZE_MAX; ++i) {
        if (chunk[i] != block[(received + static_cast<std::size_t>(i)) % block.size()])
          first_mismatch = received + static_cast<std::size_t>(i);
      }
      received += static_cast<std::size_t>(r.bytes);
      if (!announced && received >= (4u << 20)) {
        announced = true;
        streaming.set_value();
      }
    }
  });
  const bool mid_stream =
      streaming.get_future().wait_for(kSafetyTimeout) == std::future_status::ready;
  server->signal(SIGTERM);
  const auto code = server->wait_exit(kSafetyTimeout);
  stop_writing = true;
  ::shutdown(fd.get(), SHUT_RDWR);  // unblocks both threads if the server never closed
  reader.join();
  writer.join();
  EXPECT_TRUE(mid_stream) << "the echo stream never reached 4 MiB";
  EXPECT_EQ(code, 0) << server->stderr_text();
  EXPECT_EQ(first_mismatch, SIZE_MAX) << "echo corrupted at offset " << first_mismatch;
  const std::string tail = server->remaining_stdout();
  const auto bytes_in = stat_field(tail, "bytes_in");
  const auto bytes_out = stat_field(tail, "bytes_out");
  ASSERT_NE(bytes_in, UINT64_MAX) << tail;
  EXPECT_EQ(bytes_in, bytes_out) << "received bytes were dropped instead of echoed: " << tail;
  EXPECT_LE(received, bytes_out) << tail;
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Hostile, ::testing::ValuesIn(all_backend_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });

// --- 6. kill -9 of a fork child --------------------------------------------------------------

// fork only: prefork's supervision is pool_test's, and the other models have no child per
// connection to kill.
TEST(HostileFork, KilledChildCutsOnlyItsClientAndIsReaped) {
  auto server = start_server({"--backend", "fork"});
  auto first = connect_loopback(server->port());
  ASSERT_TRUE(round_trip(first.get(), "one"));
  // The echo proves the child for `first` exists; it is the only one so far.
  const std::vector<pid_t> children = server->child_pids();
  ASSERT_EQ(children.size(), 1u);
  const pid_t victim = children.front();
  auto second = connect_loopback(server->port());
  ASSERT_TRUE(round_trip(second.get(), "two"));

  // Traffic in flight on both when the child dies.
  ASSERT_TRUE(send_text(first.get(), "in flight"));
  ASSERT_TRUE(send_text(second.get(), "in flight"));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  EXPECT_EQ(recv_exact(second.get(), 9), "in flight");
  // Whatever the child echoed before dying may still arrive; then the connection ends.
  recv_exact(first.get(), 9);
  EXPECT_TRUE(refused(first.get())) << "the killed child's client was not cut";
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(round_trip(second.get(), "still served"));

  EXPECT_TRUE(eventually([&] { return !process_exists(victim); }))
      << "child " << victim << " not reaped, state " << process_state(victim);
  for (pid_t child : server->child_pids())
    EXPECT_NE(process_state(child), 'Z') << "zombie " << child;
  EXPECT_TRUE(new_client_is_served(server->port()));
}

}  // namespace
}  // namespace polyecho::test
