// `polyecho-client bench` end to end: against real backends it reports every figure with no
// error, and against a peer that breaks the echo it fails loudly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "polyecho/socket_ops.hpp"
#include "support/backend_cases.hpp"
#include "support/bench_run.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

// The first two registered backends that serve connections concurrently.
std::vector<std::string> two_concurrent_backends() {
  std::vector<std::string> names;
  for (const auto& c : all_backend_cases()) {
    if (c.serves_concurrently && c.flags.empty() && names.size() < 2) names.push_back(c.backend);
  }
  return names;
}

TEST(BenchClient, ReportsEveryFigureWithoutErrorsAgainstTwoBackends) {
  const auto backends = two_concurrent_backends();
  ASSERT_EQ(backends.size(), 2u) << "need two concurrent backends";
  for (const auto& backend : backends) {
    SCOPED_TRACE(backend);
    auto server = ServerProcess::start({"--backend", backend});
    ASSERT_TRUE(server);
    const BenchRun run = run_bench(
        server->port(), "--connections 4 --pipeline 4 --size 256 --duration 0.8 --warmup 0.2");
    EXPECT_EQ(run.status, 0) << run.output;
    const auto report = nlohmann::json::parse(run.output);
    for (const char* field :
         {"mode", "connections", "connections_ok", "connections_failed", "messages", "msg_per_s",
          "mib_per_s", "latency_us", "errors", "client_cpu_s", "duration_s", "threads"}) {
      EXPECT_TRUE(report.contains(field)) << field;
    }
    for (const char* p : {"p50", "p90", "p99", "p999", "max"})
      EXPECT_TRUE(report["latency_us"].contains(p)) << p;
    EXPECT_EQ(report["errors"]["total"], 0);
    EXPECT_EQ(report["connections_ok"], 4);
    EXPECT_EQ(report["connections_failed"], 0);
    EXPECT_GT(report["messages"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(report["latency_us"]["count"], report["messages"]);
    EXPECT_LE(report["latency_us"]["p50"].get<double>(), report["latency_us"]["max"].get<double>());
    // One count per connection; they add up to the messages and are ordered.
    const auto& spread = report["per_connection_messages"];
    EXPECT_EQ(spread["count"], 4);
    const auto min = spread["min"].get<std::uint64_t>();
    const auto median = spread["median"].get<std::uint64_t>();
    const auto max = spread["max"].get<std::uint64_t>();
    EXPECT_LE(min, median);
    EXPECT_LE(median, max);
    EXPECT_LE(4 * min, report["messages"].get<std::uint64_t>());
    EXPECT_GE(4 * max, report["messages"].get<std::uint64_t>());
    EXPECT_GT(spread["jain"].get<double>(), 0.25);  // 1/n is the floor: one connection got all
    EXPECT_LE(spread["jain"].get<double>(), 1.0 + 1e-9);
    server->signal(SIGTERM);
    EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  }
}

TEST(BenchClient, FixedMessageCountAndReconnectModeAreExact) {
  const auto backends = two_concurrent_backends();
  ASSERT_FALSE(backends.empty());
  auto server = ServerProcess::start({"--backend", backends[0]});
  ASSERT_TRUE(server);
  const BenchRun run =
      run_bench(server->port(), "--connections 3 --messages 50 --pipeline 8 --size 5000");
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_EQ(nlohmann::json::parse(run.output)["messages"], 150);
  const BenchRun reconnect = run_bench(server->port(), "--connections 2 --messages 10 --reconnect");
  EXPECT_EQ(reconnect.status, 0) << reconnect.output;
  const auto report = nlohmann::json::parse(reconnect.output);
  EXPECT_EQ(report["messages"], 20);
  EXPECT_EQ(report["connections_ok"], 20);
}

// Echoes `connections` connections one after another and keeps each one's source address.
class SourceRecorder {
 public:
  explicit SourceRecorder(int connections)
      : listener_(make_listener(resolve_endpoint("127.0.0.1", 0), {})),
        port_(local_endpoint(listener_.get()).port()),
        thread_([this, connections] {
          for (int i = 0; i < connections; ++i) {
            sockaddr_in peer{};
            socklen_t length = sizeof peer;
            unique_fd fd(::accept(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length));
            if (!fd) return;
            set_io_timeout(fd.get(), kSafetyTimeout);
            sources_.insert(ntohl(peer.sin_addr.s_addr));
            char chunk[4096];
            for (IoResult r = read_some(fd.get(), chunk); r.bytes > 0;
                 r = read_some(fd.get(), chunk)) {
              if (send_all(fd.get(), {chunk, static_cast<std::size_t>(r.bytes)}) != 0) break;
            }
          }
        }) {}
  ~SourceRecorder() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes accept() if the client never came
    thread_.join();
  }
  SourceRecorder(const SourceRecorder&) = delete;
  SourceRecorder& operator=(const SourceRecorder&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Only after the bench has ended (the thread has then accepted every connection).
  [[nodiscard]] const std::set<std::uint32_t>& sources() const { return sources_; }

 private:
  unique_fd listener_;
  std::uint16_t port_;
  std::set<std::uint32_t> sources_;
  std::thread thread_;
};

// Streaming: every byte still verified, a window's worth in flight, no latency taken; a
// fixed count ends exactly, which shows the window was refilled as echoes came back.
TEST(BenchClient, StreamingVerifiesEveryByteAndKeepsTheWindowFull) {
  const auto backends = two_concurrent_backends();
  ASSERT_FALSE(backends.empty());
  auto server = ServerProcess::start({"--backend", backends[0]});
  ASSERT_TRUE(server);
  const BenchRun run = run_bench(
      server->port(), "--connections 3 --threads 1 --stream --window 4096 --messages 5000");
  ASSERT_EQ(run.status, 0) << run.output;
  const auto report = nlohmann::json::parse(run.output);
  EXPECT_EQ(report["mode"], "stream");
  EXPECT_EQ(report["pipeline"], 4096 / 64) << "the window, in whole messages";
  EXPECT_EQ(report["messages"], 3 * 5000);
  EXPECT_EQ(report["latency_us"]["count"], 0);
  EXPECT_EQ(report["per_connection_messages"]["min"], 5000);
  EXPECT_EQ(report["errors"]["total"], 0);
}

TEST(BenchClient, SourcesSpreadReconnectsOverLoopbackAddresses) {
  SourceRecorder peer(4);
  const BenchRun run =
      run_bench(peer.port(), "--connections 1 --threads 1 --messages 4 --reconnect --sources 4");
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_EQ(nlohmann::json::parse(run.output)["connections_ok"], 4);
  const std::set<std::uint32_t> expected{0x7f000101, 0x7f000102, 0x7f000103, 0x7f000104};
  EXPECT_EQ(peer.sources(), expected);  // 127.0.1.1 to 127.0.1.4, one connection each
}

TEST(BenchClient, SourcesNeedALoopbackServer) {
  const std::string command =
      client_binary() + " --host 192.0.2.1 --port 9 bench --sources 2 --duration 1 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  std::string output;
  char chunk[1024];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, pipe.get())) > 0) output.append(chunk, n);
  const int status = ::pclose(pipe.release());
  EXPECT_NE(WEXITSTATUS(status), 0) << output;
  EXPECT_NE(output.find("--sources needs an IPv4 loopback server"), std::string::npos) << output;
}

// A tiny echo peer written here, that breaks the echo in one chosen way on its first
// connection and then keeps echoing honestly until the client goes away.
enum class Fault { flip_a_byte, close_early };

class FaultyPeer {
 public:
  explicit FaultyPeer(Fault fault)
      : listener_(make_listener(resolve_endpoint("127.0.0.1", 0), {})),
        port_(local_endpoint(listener_.get()).port()),
        thread_([this, fault] { serve(fault); }) {}
  ~FaultyPeer() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes accept() if the client never came
    thread_.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  void serve(Fault fault) {
    const int fd = ::accept(listener_.get(), nullptr, nullptr);
    if (fd < 0) return;
    unique_fd connection(fd);
    set_io_timeout(fd, kSafetyTimeout);
    char chunk[4096];
    bool broken = false;
    for (;;) {
      const IoResult r = read_some(fd, chunk);
      if (r.bytes <= 0) return;
      auto n = static_cast<std::size_t>(r.bytes);
      if (!broken && fault == Fault::close_early) return;  // received, never echoed: a short echo
      if (!broken && n > 20) {
        chunk[20] = static_cast<char>(chunk[20] ^ 0x01);
        broken = true;
      }
      if (send_all(fd, {chunk, n}) != 0) return;
    }
  }

  unique_fd listener_;
  std::uint16_t port_;
  std::thread thread_;
};

// In ping-pong and while streaming (where whole runs of messages are checked at once).
TEST(BenchClient, AFlippedByteInTheEchoFailsTheRun) {
  for (const char* mode : {"--messages 20 --size 64", "--stream --messages 200"}) {
    SCOPED_TRACE(mode);
    FaultyPeer peer(Fault::flip_a_byte);
    const BenchRun run = run_bench(peer.port(), std::string("--connections 1 --threads 1 ") + mode);
    EXPECT_NE(run.status, 0);
    const auto report = nlohmann::json::parse(run.output);
    EXPECT_EQ(report["errors"]["mismatch"], 1);
    EXPECT_EQ(report["connections_failed"], 1);
    EXPECT_FALSE(report["ok"].get<bool>());
  }
}

TEST(BenchClient, AShortEchoFailsTheRun) {
  FaultyPeer peer(Fault::close_early);
  const BenchRun run = run_bench(peer.port(), "--connections 1 --threads 1 --messages 5");
  EXPECT_NE(run.status, 0);
  const auto report = nlohmann::json::parse(run.output);
  EXPECT_EQ(report["errors"]["total"], 1);
  EXPECT_EQ(report["errors"]["eof"].get<int>() + report["errors"]["reset"].get<int>(), 1);
}

TEST(BenchClient, RefusedConnectionsAreErrors) {
  std::uint16_t port;
  {
    unique_fd taken = make_listener(resolve_endpoint("127.0.0.1", 0), {});
    port = local_endpoint(taken.get()).port();
  }  // closed: nothing listens on that port any more
  const BenchRun run = run_bench(port, "--connections 2 --duration 0.5");
  EXPECT_NE(run.status, 0);
  EXPECT_EQ(nlohmann::json::parse(run.output)["errors"]["connect"], 2);
}

}  // namespace
}  // namespace polyecho::test
