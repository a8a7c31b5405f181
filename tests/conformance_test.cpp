// The conformance suite: written once, run against every registered backend and variant
// (see support/backend_cases.hpp). Each test starts the real server binary on port 0 and
// talks to it over loopback.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

class Conformance : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra = {}) {
    return start_server(GetParam().args(extra));
  }
};

TEST_P(Conformance, EchoesSmallMessages) {
  auto server = start();
  auto fd = connect_loopback(server->port());
  for (const std::string& message :
       std::vector<std::string>{"hello\n", "a", "two words\r\n", std::string("nul\0byte", 8)}) {
    ASSERT_TRUE(send_text(fd.get(), message));
    EXPECT_EQ(recv_exact(fd.get(), message.size()), message);
  }
}

TEST_P(Conformance, EchoesForNetcat) {
  auto server = start();
  const std::string command =
      "printf 'hello\\n' | nc -N -w 10 127.0.0.1 " + std::to_string(server->port()) + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  ASSERT_TRUE(pipe);
  char out[64] = {};
  const std::size_t n = std::fread(out, 1, sizeof out - 1, pipe.get());
  EXPECT_EQ(std::string(out, n), "hello\n");
}

TEST_P(Conformance, EchoesEightMebibytesOfRandomBytesIntact) {
  auto server = start();
  auto fd = connect_loopback(server->port());
  const std::string payload = random_bytes(8 << 20, 42);
  bool sent_ok = false;
  const std::string echoed = echo_while_sending(fd.get(), payload, sent_ok);
  EXPECT_TRUE(sent_ok);
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_EQ(fnv1a(echoed), fnv1a(payload));
}

TEST_P(Conformance, ServesFiftyConcurrentClientsIntact) {
  auto server = start();
  constexpr int kClients = 50;
  std::atomic<int> intact{0};
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int id = 0; id < kClients; ++id) {
    clients.emplace_back([&, id] {
      auto fd = connect_loopback(server->port());
      bool ok = true;
      for (int round = 0; round < 3 && ok; ++round) {
        const std::string message = random_bytes(1000, static_cast<std::uint32_t>(id * 10 + round));
        ok = send_text(fd.get(), message) && recv_exact(fd.get(), message.size()) == message;
      }
      if (ok) ++intact;
    });  // the iterative model serves them one after another as each closes
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(intact, kClients);
}

TEST_P(Conformance, HalfCloseEchoesEverythingThenCloses) {
  auto server = start();
  auto fd = connect_loopback(server->port());
  const std::string payload = random_bytes(std::size_t{100} * 1024, 7);
  std::thread writer([&] {
    send_text(fd.get(), payload);
    ::shutdown(fd.get(), SHUT_WR);
  });
  const std::string echoed = recv_until_eof(fd.get());
  writer.join();
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload);
}

TEST_P(Conformance, LineModeQuitSaysByeAndCloses) {
  auto server = start({"--mode", "line"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "first\nQuit\nnever echoed\n"));
  EXPECT_EQ(recv_until_eof(fd.get()), "first\nbye\n");
}

TEST_P(Conformance, LineModeRejectsOverlongLineAfterEchoingEarlierLines) {
  auto server = start({"--mode", "line", "--max-line", "16"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(
      send_text(fd.get(), "ok\n" + std::string(16, 'x') + "\n" + std::string(17, 'y') + "\n"));
  EXPECT_EQ(recv_until_eof(fd.get()),
            "ok\n" + std::string(16, 'x') + "\nerror: line too long (max 16 bytes)\n");
}

TEST_P(Conformance, LineModeUpperTransform) {
  auto server = start({"--mode", "line", "--transform", "upper"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "Hello, World 42\r\nsecond"));
  EXPECT_EQ(recv_line(fd.get()), "HELLO, WORLD 42\r\n");
  ::shutdown(fd.get(), SHUT_WR);  // the unterminated last line is echoed at EOF
  EXPECT_EQ(recv_until_eof(fd.get()), "SECOND");
}

TEST_P(Conformance, MaxConnectionsRefusesExtraClientsWithoutHurtingOthers) {
  auto server = start({"--max-connections", "2"});
  auto first = connect_loopback(server->port());
  ASSERT_TRUE(send_text(first.get(), "one"));
  ASSERT_EQ(recv_exact(first.get(), 3), "one");
  auto second = connect_loopback(server->port());
  if (GetParam().serves_concurrently) {
    // The second echo proves it was admitted before the third arrives: models with several
    // accept queues (SO_REUSEPORT workers) give no order between simultaneous arrivals.
    ASSERT_TRUE(send_text(second.get(), "two"));
    ASSERT_EQ(recv_exact(second.get(), 3), "two");
    auto third = connect_loopback(server->port());
    const PeerEnd end = wait_for_close(third.get());
    EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset) << "third client was not refused";
    for (int fd : {first.get(), second.get()}) {
      ASSERT_TRUE(send_text(fd, "still here"));
      EXPECT_EQ(recv_exact(fd, 10), "still here");
    }
  } else {
    // One at a time: the others wait in the backlog and are served, in order, as each leaves.
    auto third = connect_loopback(server->port());
    ASSERT_TRUE(send_text(second.get(), "two"));
    ASSERT_TRUE(send_text(third.get(), "three"));
    first.reset();
    EXPECT_EQ(recv_exact(second.get(), 3), "two");
    second.reset();
    EXPECT_EQ(recv_exact(third.get(), 5), "three");
  }
}

TEST_P(Conformance, StopDrainsOpenConnectionsThenExitsZero) {
  // A long drain timeout: the server must exit as soon as its last client leaves, not at the
  // deadline (the safety timeout below is far shorter than 60 s).
  auto server = start({"--drain-timeout", "60"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "before"));
  ASSERT_EQ(recv_exact(fd.get(), 6), "before");
  server->signal(SIGTERM);
  // The accepted connection keeps being served during the drain.
  ASSERT_TRUE(send_text(fd.get(), "during"));
  EXPECT_EQ(recv_exact(fd.get(), 6), "during");
  fd.reset();
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("stopped;"), std::string::npos) << tail;
  EXPECT_NE(tail.find("bytes_in=12 bytes_out=12"), std::string::npos) << tail;
  EXPECT_NE(tail.find("accepted=1 "), std::string::npos) << tail;
}

TEST_P(Conformance, StopCutsIdleClientsAtDrainDeadlineAndLeavesNoChildren) {
  auto server = start({"--drain-timeout", "0.5"});
  std::vector<unique_fd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connect_loopback(server->port()));
    if (GetParam().serves_concurrently || i == 0) {
      ASSERT_TRUE(send_text(clients.back().get(), "x"));
      ASSERT_EQ(recv_exact(clients.back().get(), 1), "x");
    }
  }
  const std::vector<pid_t> children = server->child_pids();
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
  const PeerEnd end = wait_for_close(clients.front().get());
  EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset);
  for (pid_t child : children)
    EXPECT_FALSE(process_exists(child)) << "child " << child << " survived";
}

TEST_P(Conformance, SecondStopSignalExitsImmediately) {
  auto server = start({"--drain-timeout", "60"});
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "x"));
  ASSERT_EQ(recv_exact(fd.get(), 1), "x");
  server->signal(SIGTERM);
  // Prove the first signal was handled (drain started) before sending the second.
  ASSERT_TRUE(send_text(fd.get(), "y"));
  ASSERT_EQ(recv_exact(fd.get(), 1), "y");
  server->signal(SIGINT);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 1);
}

// Frame mode: a 4-byte big-endian length, then the payload; whole frames come back unchanged.
std::string frame(std::string_view payload) {
  const auto n = static_cast<std::uint32_t>(payload.size());
  std::string out{static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                  static_cast<char>(n)};
  out.append(payload);
  return out;
}

TEST_P(Conformance, FrameModeEchoesWholeFramesEmptyOnesToo) {
  auto server = start({"--mode", "frame"});
  auto fd = connect_loopback(server->port());
  // Several frames in one write, one split inside its header, and one larger than a read.
  const std::string batch = frame("") + frame("a") + frame(random_bytes(1000, 3)) + frame("");
  ASSERT_TRUE(send_text(fd.get(), batch));
  EXPECT_EQ(recv_exact(fd.get(), batch.size()), batch);
  const std::string big = frame(random_bytes(std::size_t{300} * 1024, 5));
  ASSERT_TRUE(send_text(fd.get(), big.substr(0, 2)));
  std::atomic<bool> sent_ok{false};
  std::thread writer([&] { sent_ok = send_text(fd.get(), big.substr(2)); });
  const std::string echoed = recv_exact(fd.get(), big.size());
  writer.join();
  EXPECT_TRUE(sent_ok);
  EXPECT_TRUE(echoed == big);
}

TEST_P(Conformance, FrameOverTheLimitClosesAfterTheFramesBeforeItAndCountsAnError) {
  auto server = start({"--mode", "frame", "--max-frame", "16"});
  auto fd = connect_loopback(server->port());
  const std::string fits = frame(std::string(16, 'x')) + frame("ok");
  ASSERT_TRUE(send_text(fd.get(), fits + frame(std::string(17, 'y')) + frame("never")));
  EXPECT_EQ(recv_until_eof(fd.get()), fits);
  fd.reset();
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("errors=1"), std::string::npos) << tail;
}

TEST_P(Conformance, WorkKeepsEachConnectionsMessagesInOrder) {
  // cpu work holds every message until its work is done; pipelined frames and lines must
  // still come back whole and in the order they were sent.
  auto server = start({"--mode", "frame", "--work", "cpu:200"});
  auto fd = connect_loopback(server->port());
  std::string batch;
  for (int i = 0; i < 20; ++i) batch += frame("message " + std::to_string(i));
  ASSERT_TRUE(send_text(fd.get(), batch));
  EXPECT_EQ(recv_exact(fd.get(), batch.size()), batch);
}

// Twenty clients each send one line whose work is a 200 ms wait, and leave once it is echoed.
// Served concurrently, they finish in a small multiple of one wait (a pool of four threads
// needs five rounds); served one at a time (iterative), in about the sum of the waits.
TEST_P(Conformance, WaitWorkOverlapsAcrossConnectionsUnlessServedOneAtATime) {
  constexpr int kClients = 20;
  constexpr auto kWait = std::chrono::milliseconds(200);
  auto server = start({"--mode", "line", "--work", "wait:200000"});
  std::vector<unique_fd> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) clients.push_back(connect_loopback(server->port()));
  std::atomic<int> echoed{0};
  const auto began = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  threads.reserve(clients.size());
  for (auto& fd : clients) {
    threads.emplace_back([&] {
      if (send_text(fd.get(), "wait for me\n") && recv_exact(fd.get(), 12) == "wait for me\n")
        ++echoed;
      fd.reset();  // a pool thread (or the iterative loop) moves on to the next client
    });
  }
  for (auto& t : threads) t.join();
  const auto took = std::chrono::steady_clock::now() - began;
  EXPECT_EQ(echoed, kClients);
  if (GetParam().serves_concurrently) {
    EXPECT_LT(took, kClients * kWait * 6 / 10) << "waits did not overlap";
  } else {
    EXPECT_GT(took, kClients * kWait * 8 / 10) << "one at a time cannot overlap waits";
  }
}

// One variant of each model: what it checks is the start-up every model shares.
class EachModel : public Conformance {};
std::vector<BackendCase> one_case_per_model() {
  std::vector<BackendCase> cases;
  for (const auto& c : all_backend_cases()) {
    const bool seen = std::any_of(cases.begin(), cases.end(),
                                  [&](const BackendCase& o) { return o.backend == c.backend; });
    if (!seen) cases.push_back(c);
  }
  return cases;
}

// Whoever starts the server may have the stop signals blocked (a shell's job control, a
// supervisor); the server inherits that mask across exec, and must still stop on them.
TEST_P(EachModel, StopsOnASignalItStartedWithBlocked) {
  sigset_t stop;
  sigset_t old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &stop, &old), 0);
  auto server = start();  // forked from this thread: the child starts with them blocked
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), "x"));
  ASSERT_EQ(recv_exact(fd.get(), 1), "x");
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, EachModel, ::testing::ValuesIn(one_case_per_model()),
                         [](const auto& test_info) { return case_name(test_info.param); });
INSTANTIATE_TEST_SUITE_P(AllBackends, Conformance, ::testing::ValuesIn(all_backend_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
