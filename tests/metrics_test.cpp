// --stats (docs/METRICS.md): the Prometheus endpoint, /stats.json and the live page, against
// the real server binary. One cheap check per model that its counters move while a connection
// is still open; the heavier checks (promtool, Chromium, hostile clients) on the default model.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;

struct HttpReply {
  int status = 0;
  std::string body;
};

// One HTTP/1.0 request on a fresh connection; the server closes after its reply.
HttpReply http_get(std::uint16_t port, const std::string& path) {
  const unique_fd fd = connect_loopback(port);
  EXPECT_TRUE(send_text(fd.get(), "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
  const std::string reply = recv_until_eof(fd.get());
  HttpReply result;
  if (reply.rfind("HTTP/1.", 0) == 0 && reply.size() > 12)
    result.status = std::stoi(reply.substr(9, 3));
  const auto body = reply.find("\r\n\r\n");
  if (body != std::string::npos) result.body = reply.substr(body + 4);
  return result;
}

// The port of the "polyecho: stats on http://HOST:PORT/" line that follows the listening line.
std::uint16_t stats_port(ServerProcess& server) {
  const std::string line = server.next_stdout_line();
  const std::string prefix = "polyecho: stats on http://127.0.0.1:";
  EXPECT_EQ(line.rfind(prefix, 0), 0u) << line;
  if (line.rfind(prefix, 0) != 0) return 0;
  return static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
}

nlohmann::json stats_json(std::uint16_t port) {
  const HttpReply reply = http_get(port, "/stats.json");
  EXPECT_EQ(reply.status, 200);
  return nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
}

// Asks /stats.json until `done` holds or the safety timeout passes; returns the last answer.
// Counters move when the server's thread has made its syscall, which may be just after the
// client saw the effect (an echo arrives before send() returns to the server), so each figure
// is waited for, never assumed.
template <typename Condition>
nlohmann::json stats_when(std::uint16_t port, Condition done) {
  const auto deadline = Clock::now() + kSafetyTimeout;
  nlohmann::json figures = stats_json(port);
  while (!done(figures) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the poll interval, not a sync
    figures = stats_json(port);
  }
  return figures;
}

std::uint64_t figure(const nlohmann::json& j, const char* group, const char* name) {
  if (!j.is_object() || !j.contains(group) || !j[group].contains(name)) return 0;
  return j[group][name].get<std::uint64_t>();
}

std::uint64_t latency_count(const nlohmann::json& j) {
  std::uint64_t total = 0;
  if (!j.is_object() || !j.contains("latency")) return 0;
  for (const auto& n : j["latency"]["counts"]) total += n.get<std::uint64_t>();
  return total;
}

// One case per model, with its default flags: does every model report its traffic live?
std::vector<BackendCase> one_case_per_model() {
  std::vector<BackendCase> cases;
  for (const auto& c : all_backend_cases()) {
    if (c.flags.empty()) cases.push_back(c);
  }
  return cases;
}

// Sends `n` numbered lines on `fd`, one at a time, each echo read before the next line.
void echo_lines(int fd, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(send_text(fd, numbered_line(i)));
    ASSERT_EQ(recv_line(fd), numbered_line(i));
  }
}

class MetricsPerModel : public ::testing::TestWithParam<BackendCase> {};

TEST_P(MetricsPerModel, CountersMoveWhileTheConnectionIsOpen) {
  auto server = start_server(GetParam().args({"--mode", "line", "--stats", "0"}));
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  const unique_fd client = connect_loopback(server->port());
  constexpr std::size_t kLines = 20;
  ASSERT_NO_FATAL_FAILURE(echo_lines(client.get(), kLines));
  // Still connected: the figures must not wait for the connection to end.
  const auto j = stats_when(stats, [](const nlohmann::json& f) {
    return figure(f, "messages", "out") >= kLines && figure(f, "bytes", "out") >= kLines * 10 &&
           latency_count(f) >= kLines;
  });
  EXPECT_EQ(figure(j, "connections", "active"), 1u) << j.dump();
  EXPECT_GE(figure(j, "connections", "accepted"), 1u) << j.dump();
  EXPECT_EQ(figure(j, "messages", "in"), kLines) << j.dump();
  EXPECT_EQ(figure(j, "messages", "out"), kLines) << j.dump();
  EXPECT_EQ(figure(j, "bytes", "in"), figure(j, "bytes", "out")) << j.dump();
  EXPECT_EQ(latency_count(j), kLines) << j.dump();
  EXPECT_GT(figure(j, "process", "rss_bytes"), 0u) << j.dump();
  EXPECT_GE(figure(j, "process", "threads"), 1u) << j.dump();
  EXPECT_EQ(j["model"], GetParam().backend) << j.dump();
  if (GetParam().backend == "fork" || GetParam().backend == "prefork") {
    EXPECT_GE(figure(j, "process", "workers"), 1u) << j.dump();
  }
}

// With --work the echo waits for the work, and each message's latency must include it: no
// message may be faster than its 1 ms of work, so every count sits above the 1 ms bound.
void expect_latency_includes_the_work(const std::vector<std::string>& args) {
  auto server = start_server(args);
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  const unique_fd client = connect_loopback(server->port());
  constexpr std::size_t kLines = 10;
  ASSERT_NO_FATAL_FAILURE(echo_lines(client.get(), kLines));
  const auto j =
      stats_when(stats, [](const nlohmann::json& f) { return latency_count(f) >= kLines; });
  ASSERT_EQ(latency_count(j), kLines) << j.dump();
  const auto& bounds = j["latency"]["bounds_seconds"];
  const auto& counts = j["latency"]["counts"];
  for (std::size_t b = 0; b < bounds.size(); ++b) {
    if (bounds[b].get<double>() <= 0.001) {
      EXPECT_EQ(counts[b].get<std::uint64_t>(), 0u) << j.dump();
    }
  }
  EXPECT_GE(j["latency"]["sum_seconds"].get<double>(), 0.001 * kLines) << j.dump();
}

// Held messages on each model's own path: inline on a loop or thread, a fiber, a coroutine, a
// uring worker, a child process.
TEST_P(MetricsPerModel, LatencyIncludesTheWork) {
  expect_latency_includes_the_work(
      GetParam().args({"--mode", "line", "--work", "block:1000", "--stats", "0"}));
}

// The other ways a message waits: a non-blocking wait (a timer, an io_uring timeout, an awaited
// timer, a fiber sleep) and the offload pool's queue and thread.
TEST(Metrics, LatencyIncludesWaitsAndTheOffloadPool) {
  for (const char* backend : {"epoll", "uring", "fiber", "asio-coro"}) {
    SCOPED_TRACE(backend);
    expect_latency_includes_the_work(
        {"--backend", backend, "--mode", "line", "--work", "wait:1000", "--stats", "0"});
  }
  SCOPED_TRACE("offload");
  expect_latency_includes_the_work({"--backend", "epoll", "--mode", "line", "--work", "block:1000",
                                    "--offload", "1", "--stats", "0"});
}

INSTANTIATE_TEST_SUITE_P(EveryModel, MetricsPerModel, ::testing::ValuesIn(one_case_per_model()),
                         [](const auto& test_info) { return case_name(test_info.param); });

// --processes: every worker process adds to the same figures, and the master counts them.
TEST(Metrics, FiguresAreProcessWideAcrossWorkerProcesses) {
  auto server =
      start_server({"--backend", "epoll", "--processes", "2", "--mode", "line", "--stats", "0"});
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  std::vector<unique_fd> clients;
  clients.reserve(6);
  for (std::size_t i = 0; i < 6; ++i) {
    clients.push_back(connect_loopback(server->port()));
    ASSERT_TRUE(send_text(clients.back().get(), numbered_line(i)));
    ASSERT_EQ(recv_line(clients.back().get()), numbered_line(i));
  }
  const auto j = stats_when(stats, [](const nlohmann::json& f) {
    return figure(f, "messages", "out") >= 6 && figure(f, "process", "workers") == 2;
  });
  EXPECT_EQ(figure(j, "messages", "out"), 6u) << j.dump();
  EXPECT_EQ(figure(j, "process", "workers"), 2u) << j.dump();
  EXPECT_EQ(figure(j, "connections", "active"), 6u) << j.dump();
}

// --wait-moderation (poll and select): after a batch that moved a stream, when nothing is
// ready, the loop pauses before its next wait, and counts it. Small messages never stream, so
// a ping-pong is never held back; 0 turns it off.
std::uint64_t moderated_waits(const nlohmann::json& j) {
  std::uint64_t sum = 0;
  if (j.is_object() && j.contains("loops")) {
    for (const auto& loop : j["loops"]) sum += loop.value("moderated", std::uint64_t{0});
  }
  return sum;
}

TEST(Metrics, PollAndSelectPauseBeforeWaitingOnlyAfterAStream) {
  constexpr std::size_t kRoundTrips = 200;
  constexpr std::size_t kBursts = 32;
  constexpr std::size_t kBurst = std::size_t{256} * 1024;
  const std::string small(64, 'p');
  std::string burst(kBurst, '\0');
  for (std::size_t i = 0; i < burst.size(); ++i) burst[i] = static_cast<char>('a' + i % 26);
  for (const char* backend : {"poll", "select"}) {
    for (const char* moderation : {"auto", "25", "0"}) {
      SCOPED_TRACE(std::string(backend) + " --wait-moderation " + moderation);
      auto server =
          start_server({"--backend", backend, "--wait-moderation", moderation, "--stats", "0"});
      const std::uint16_t stats = stats_port(*server);
      ASSERT_NE(stats, 0);
      const unique_fd fd = connect_loopback(server->port());
      for (std::size_t i = 0; i < kRoundTrips; ++i) {
        ASSERT_TRUE(send_text(fd.get(), small));
        ASSERT_EQ(recv_exact(fd.get(), small.size()), small);
      }
      const std::uint64_t ping_pong = kRoundTrips * small.size();
      auto j = stats_when(
          stats, [&](const nlohmann::json& f) { return figure(f, "bytes", "out") >= ping_pong; });
      EXPECT_EQ(moderated_waits(j), 0u) << j.dump();
      // Bursts with a pause between them (each waits for its whole echo): the loop relays
      // 64 KiB reads, then finds nothing ready.
      for (std::size_t i = 0; i < kBursts; ++i) {
        bool sent_ok = false;
        ASSERT_EQ(echo_while_sending(fd.get(), burst, sent_ok), burst) << "burst " << i;
        ASSERT_TRUE(sent_ok);
      }
      j = stats_when(stats, [&](const nlohmann::json& f) {
        return figure(f, "bytes", "out") >= ping_pong + kBursts * kBurst;
      });
      if (std::string(moderation) == "0") {
        EXPECT_EQ(moderated_waits(j), 0u) << j.dump();
      } else {
        EXPECT_GT(moderated_waits(j), 0u) << j.dump();
      }
    }
  }
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("polyecho-metrics-" + std::to_string(::getpid()) + "-" + name))
      .string();
}

// Prometheus's own linter accepts the exposition, taken under load with work and offload
// (so the histogram, the queue gauge and the loop series all have figures).
TEST(Metrics, PromtoolAcceptsTheExposition) {
  auto server = start_server({"--backend", "epoll", "--workers", "2", "--mode", "line", "--work",
                              "cpu:50", "--offload", "2", "--stats", "0"});
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  ASSERT_GT(one_line_each(server->port(), 8), 0);
  const HttpReply reply = http_get(stats, "/metrics");
  ASSERT_EQ(reply.status, 200);
  for (const char* series :
       {"polyecho_connections_active ", "polyecho_connections_accepted_total 8",
        "polyecho_received_messages_total 8", "polyecho_errors_total{kind=\"protocol\"} 0",
        "polyecho_offload_queue_depth ", "polyecho_offloaded_messages_total 8",
        "polyecho_loop_wakeups_total{loop=\"1\"} ", "polyecho_process_resident_memory_bytes ",
        "polyecho_process_cpu_seconds_total ",
        "polyecho_message_latency_seconds_bucket{le=\"+Inf\"} ",
        "polyecho_server_info{model=\"epoll\""}) {
    EXPECT_NE(reply.body.find(series), std::string::npos) << series << "\n" << reply.body;
  }
  const std::string file = temp_path("metrics.txt");
  std::ofstream(file) << reply.body;
  const CommandResult check = run_command("promtool check metrics < " + file + " 2>&1");
  std::filesystem::remove(file);
  EXPECT_EQ(check.status, 0) << check.output;
}

// The live page in headless Chromium: it loads with no console message, draws every chart
// (the page counts them in data-charts), and its first chart's area is not blank.
TEST(Metrics, LivePageDrawsItsChartsInChromium) {
  auto server = start_server({"--backend", "epoll", "--mode", "line", "--stats", "0"});
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  ASSERT_GT(one_line_each(server->port(), 4), 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(stats) + "/";
  const std::string chromium =
      "timeout 60 chromium --headless --disable-gpu --no-sandbox --no-first-run "
      "--user-data-dir=" +
      temp_path("profile") +
      " --window-size=1200,1400 "
      "--virtual-time-budget=3000 ";
  const std::string log = temp_path("chromium.log");
  const CommandResult dom =
      run_command(chromium + "--enable-logging=stderr --v=0 --dump-dom " + url + " 2>" + log);
  const std::string console = run_command("cat " + log).output;
  std::filesystem::remove(log);
  ASSERT_EQ(dom.status, 0) << console;
  EXPECT_NE(dom.output.find("data-charts=\"10\""), std::string::npos) << dom.output;
  EXPECT_NE(dom.output.find("<span id=\"model\">epoll</span>"), std::string::npos);
  EXPECT_EQ(dom.output.find("class=\"error\""), std::string::npos) << dom.output;
  EXPECT_EQ(console.find(":CONSOLE"), std::string::npos) << console;

  const std::string png = temp_path("page.png");
  const CommandResult shot =
      run_command(chromium + "--screenshot=" + png + " " + url + " 2>/dev/null");
  ASSERT_EQ(shot.status, 0);
  // The first chart (its legend, axes and plot, below its title) at this window size: without
  // a drawn chart it is one colour.
  const CommandResult colours =
      run_command(std::string("python3 ") + POLYECHO_PNG_COLORS + " " + png + " 45 132 575 335");
  std::filesystem::remove(png);
  std::filesystem::remove_all(temp_path("profile"));
  ASSERT_EQ(colours.status, 0) << colours.output;
  EXPECT_GT(std::stoi(colours.output), 20) << "the chart area looks blank";
}

// Garbage, an over-long request and a slow one are refused or timed out by civetweb; the
// stats port still answers afterwards, and the server still echoes and stops cleanly.
TEST(Metrics, StatsServerSurvivesGarbageRequests) {
  auto server = start_server({"--stats", "0"});
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  for (const std::string& garbage :
       {random_bytes(3000, 7), std::string("GET /metrics\r\n\r\n"), std::string("\r\n\r\n"),
        std::string("GET /../../etc/passwd HTTP/1.0\r\n\r\n"),
        "GET /" + std::string(8000, 'a') + " HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nX: " + std::string(20000, 'b') + "\r\n\r\n"}) {
    const unique_fd fd = connect_loopback(stats);
    send_text(fd.get(), garbage);  // the server may close before reading it all
    const std::string reply = recv_until_eof(fd.get());
    EXPECT_EQ(reply.find("root:"), std::string::npos);
  }
  EXPECT_EQ(http_get(stats, "/nothing-here").status, 404);
  const unique_fd post = connect_loopback(stats);
  send_text(post.get(), "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
  EXPECT_NE(recv_until_eof(post.get()).find(" 405 "), std::string::npos);
  EXPECT_EQ(http_get(stats, "/metrics").status, 200);
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0);
  EXPECT_NE(server->remaining_stdout().find("polyecho: stopped; accepted="), std::string::npos);
}

// A flood of idle connections holds every stats thread, yet the echo path does not notice: it
// is served by the model's own loops. Once the flood goes, the stats port answers again.
TEST(Metrics, IdleFloodOnTheStatsPortDoesNotStallTheEcho) {
  auto server = start_server({"--mode", "line", "--stats", "0"});
  const std::uint16_t stats = stats_port(*server);
  ASSERT_NE(stats, 0);
  constexpr std::size_t kFlood = 64;
  std::vector<unique_fd> flood;
  flood.reserve(kFlood);
  for (std::size_t i = 0; i < kFlood; ++i) flood.push_back(connect_loopback(stats));
  const auto start = Clock::now();
  const unique_fd client = connect_loopback(server->port());
  for (std::size_t i = 0; i < 50; ++i) {
    ASSERT_TRUE(send_text(client.get(), numbered_line(i)));
    ASSERT_EQ(recv_line(client.get()), numbered_line(i));
  }
  EXPECT_LT(seconds_since(start), 1.0) << "the echo waited for the stats server";
  flood.clear();
  EXPECT_EQ(http_get(stats, "/metrics").status, 200);
}

// Debian 12's civetweb has no IPv6: refused as a bad flag, before anything is bound.
TEST(Metrics, Ipv6StatsAddressIsRefusedAsABadFlag) {
  const auto [status, error] = ServerProcess::run_to_exit({"--port", "0", "--stats", "[::1]:0"});
  EXPECT_EQ(status, 2) << error;
  EXPECT_NE(error.find("--stats: this build's civetweb has no IPv6"), std::string::npos) << error;
}

TEST(Metrics, OffByDefault) {
  auto server = start_server({});
  server->signal(SIGTERM);
  ASSERT_EQ(server->wait_exit(kSafetyTimeout), 0);
  EXPECT_EQ(server->remaining_stdout().find("stats on"), std::string::npos);
}

TEST(Metrics, BadStatsAddressesExitTwo) {
  for (const char* bad : {"nonsense", "127.0.0.1:99999", "127.0.0.1:", ":80", "[::1]:x"}) {
    const auto [status, error] = ServerProcess::run_to_exit({"--port", "0", "--stats", bad});
    EXPECT_EQ(status, 2) << bad << ": " << error;
    EXPECT_NE(error.find("--stats"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace polyecho::test
