// The command-line contract of polyecho-server and polyecho-client.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "polyecho/socket_ops.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

struct CommandResult {
  int status;
  std::string output;
};

CommandResult run_shell(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen((command + " 2>&1").c_str(), "r"), ::pclose);
  std::string output;
  char chunk[4096];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, pipe.get())) > 0) output.append(chunk, n);
  const int status = ::pclose(pipe.release());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

struct BadFlag {
  std::vector<std::string> args;
  std::string named;
  std::vector<std::string> offers = {};  // valid values the message must list
};

// Names the case in test output by its flags (gtest would print the struct's bytes).
void PrintTo(const BadFlag& flag, std::ostream* out) {
  for (std::size_t i = 0; i < flag.args.size(); ++i) *out << (i ? " " : "") << flag.args[i];
}

class ServerRejectsBadFlags : public ::testing::TestWithParam<BadFlag> {};

TEST_P(ServerRejectsBadFlags, WithExitTwoAndAMessageNamingTheFlag) {
  const auto [status, error] = ServerProcess::run_to_exit(GetParam().args);
  EXPECT_EQ(status, 2);
  EXPECT_NE(error.find(GetParam().named), std::string::npos) << error;
  EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1) << "expected one line: " << error;
  for (const auto& value : GetParam().offers)
    EXPECT_NE(error.find(value), std::string::npos) << "should offer " << value << ": " << error;
}

INSTANTIATE_TEST_SUITE_P(
    CliFlags, ServerRejectsBadFlags,
    ::testing::Values(
        BadFlag{{"--port", "abc"}, "--port"}, BadFlag{{"--max-per-ip", "-1"}, "--max-per-ip"},
        BadFlag{{"--max-per-ip", "many"}, "--max-per-ip"}, BadFlag{{"--port", "70000"}, "--port"},
        BadFlag{{"--backend", "nope"}, "--backend"}, BadFlag{{"--mode", "weird"}, "--mode"},
        BadFlag{{"--max-connections", "0"}, "--max-connections"},
        BadFlag{{"--idle-timeout", "-1"}, "--idle-timeout"},
        BadFlag{{"--workers", "x"}, "--workers"}, BadFlag{{"--no-such-flag"}, "--no-such-flag"},
        BadFlag{{"--host", "not a host"}, "--host"},
        BadFlag{{"--pool-strategy", "lifo"}, "--pool-strategy", {"queue", "accept"}},
        // The enum's number is not a name.
        BadFlag{{"--pool-strategy", "1"}, "--pool-strategy"},
        BadFlag{
            {"--accept-strategy", "steal"}, "--accept-strategy", {"shared", "reuseport", "fdpass"}},
        BadFlag{{"--accept-strategy"}, "--accept-strategy"},
        BadFlag{{"--offload", "-1"}, "--offload"}, BadFlag{{"--offload", "2000"}, "--offload"},
        BadFlag{{"--offload-queue", "0"}, "--offload-queue"},
        BadFlag{{"--wait-moderation", "fast"}, "--wait-moderation", {"auto"}},
        BadFlag{{"--wait-moderation", "100001"}, "--wait-moderation"},
        BadFlag{{"--wait-moderation", "-5"}, "--wait-moderation"},
        // A model without a pool refuses the flag (after the parse: the default is chosen late).
        BadFlag{{"--backend", "thread", "--offload", "2"}, "--offload"},
        // Work needs messages: raw mode (the default) has none.
        BadFlag{{"--work", "wait:1000"}, "--work", {"--mode line", "--mode frame"}},
        BadFlag{{"--mode", "line", "--work", "sleep:10"}, "--work", {"cpu", "block", "wait"}},
        BadFlag{{"--mode", "line", "--work", "cpu:0"}, "--work"},
        BadFlag{{"--mode", "frame", "--work", "cpu"}, "--work"},
        BadFlag{{"--mode", "line", "--gil"}, "--gil"},
        BadFlag{{"--mode", "line", "--work", "wait:1000", "--gil"}, "--gil"},
        BadFlag{{"--mode", "frame", "--max-frame", "-1"}, "--max-frame"},
        BadFlag{{"--backend", "asio-coro", "--io", "kqueue"}, "--io", {"epoll", "uring"}},
        // --io picks Asio's backend, so it means nothing to another model (nor the default).
        BadFlag{{"--backend", "epoll", "--io", "uring"}, "--io", {"--backend asio-coro"}},
        BadFlag{{"--io", "uring"}, "--io", {"--backend asio-coro"}},
        BadFlag{{"--backend", "fiber", "--io", "epoll"}, "--io", {"--backend asio-coro"}},
        BadFlag{{"--acceptor", "lifo"}, "--acceptor", {"main", "reuseport", "shared"}},
        BadFlag{{"--processes", "-1"}, "--processes"},
        // Topologies shape event loops: a thread per connection or a pool has none to shape.
        BadFlag{{"--backend", "thread", "--processes", "2"}, "--processes", {"epoll"}},
        BadFlag{{"--backend", "prefork", "--acceptor", "main"}, "--acceptor", {"epoll"}},
        // sigio's signals go to the one thread that built its loop.
        BadFlag{{"--backend", "sigio", "--acceptor", "main"}, "--acceptor main"}));

struct Strategy {
  std::string backend;
  std::string flag;
  std::string value;
};

void PrintTo(const Strategy& s, std::ostream* out) {
  *out << "--backend " << s.backend << ' ' << s.flag << ' ' << s.value;
}

class ServerCliAcceptsEveryStrategy : public ::testing::TestWithParam<Strategy> {};

TEST_P(ServerCliAcceptsEveryStrategy, ThenServesAndStopsCleanly) {
  const Strategy& s = GetParam();
  auto server = ServerProcess::start({"--backend", s.backend, s.flag, s.value});
  ASSERT_TRUE(server);
  EXPECT_NE(server->listening_line().find(s.backend + " listening on"), std::string::npos)
      << server->listening_line();
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(send_text(fd.get(), s.value));
  EXPECT_EQ(recv_exact(fd.get(), s.value.size()), s.value);
  fd.reset();
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
}

INSTANTIATE_TEST_SUITE_P(Values, ServerCliAcceptsEveryStrategy,
                         ::testing::Values(Strategy{"threadpool", "--pool-strategy", "queue"},
                                           Strategy{"threadpool", "--pool-strategy", "accept"},
                                           Strategy{"prefork", "--accept-strategy", "shared"},
                                           Strategy{"prefork", "--accept-strategy", "reuseport"},
                                           Strategy{"prefork", "--accept-strategy", "fdpass"},
                                           Strategy{"asio-coro", "--io", "epoll"}),
                         [](const auto& test) {
                           std::string name = test.param.backend + "_" + test.param.value;
                           std::replace(name.begin(), name.end(), '-', '_');  // gtest names
                           return name;
                         });

// Maps each long flag in --help to the heading it is listed under. A heading is an unindented
// line ending in ':'; an option line starts with two spaces and its names ("-h,--help").
std::map<std::string, std::string> help_sections(const std::string& help) {
  std::map<std::string, std::string> section_of;
  std::istringstream lines(help);
  std::string line, heading;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.front() != ' ' && line.back() == ':') {
      heading = line.substr(0, line.size() - 1);
    } else if (line.starts_with("  -")) {
      std::istringstream names(line.substr(2, line.find(' ', 2) - 2));
      std::string name;
      while (std::getline(names, name, ',')) {
        name = name.substr(0, name.find('{'));  // CLI11 shows a negated flag as --no-x{false}
        if (name.starts_with("--")) section_of[name] = heading;
      }
    }
  }
  return section_of;
}

TEST(ServerCli, HelpListsEachFlagUnderTheModelsItAppliesTo) {
  const auto help = run_shell(server_binary() + " --help");
  ASSERT_EQ(help.status, 0);
  const std::map<std::string, std::vector<std::string>> expected{
      {"Server",
       {"--help", "--version", "--list-backends", "--json", "--backend", "--host", "--port",
        "--backlog", "--user", "--stats", "--log-level"}},
      {"Protocol (every model)",
       {"--mode", "--transform", "--max-line", "--max-frame", "--max-buffer"}},
      {"Work per message (line and frame modes; docs/WORK.md)", {"--work", "--gil"}},
      {"Limits and lifecycle",
       {"--max-connections", "--max-per-ip", "--idle-timeout", "--drain-timeout", "--keepalive",
        "--workers"}},
      {"Topology (event-loop models; docs/TOPOLOGIES.md)", {"--acceptor", "--processes"}},
      {"Offload (epoll, nbpoll, poll, select, sigio)", {"--offload", "--offload-queue"}},
      {"Readiness (epoll, leader-follower, nbpoll, poll, select, sigio)",
       {"--edge-triggered", "--splice", "--no-splice", "--wait-moderation"}},
      {"Pools (threadpool, prefork)",
       {"--pool-strategy", "--queue-limit", "--accept-strategy", "--worker-threads"}},
      {"Fibers (fiber)", {"--stack-size"}},
      {"Completion (uring)", {"--sqpoll"}},
      {"Coroutines (asio-coro)", {"--io"}},
  };
  const auto section_of = help_sections(help.output);
  std::size_t flags = 0;
  for (const auto& [heading, names] : expected) {
    EXPECT_NE(help.output.find("\n" + heading + ":\n"), std::string::npos) << heading;
    for (const auto& name : names) {
      ++flags;
      const auto found = section_of.find(name);
      ASSERT_NE(found, section_of.end()) << name << " missing from --help:\n" << help.output;
      EXPECT_EQ(found->second, heading) << name;
    }
  }
  // Nothing left in CLI11's catch-all "Options" group: every flag has a section.
  EXPECT_EQ(section_of.size(), flags) << help.output;
}

TEST(ServerCli, PortInUseExitsOneNamingTheAddress) {
  unique_fd taken = make_listener(resolve_endpoint("127.0.0.1", 0), {});
  const auto port = std::to_string(local_endpoint(taken.get()).port());
  const auto [status, error] = ServerProcess::run_to_exit({"--port", port});
  EXPECT_EQ(status, 1);
  EXPECT_NE(error.find("127.0.0.1:" + port), std::string::npos) << error;
  EXPECT_NE(error.find("Address already in use"), std::string::npos) << error;
}

TEST(ServerCli, ListBackendsShowsTheFoundationModels) {
  const auto result = run_shell(server_binary() + " --list-backends");
  EXPECT_EQ(result.status, 0);
  for (const char* name : {"iterative", "thread", "fork"}) {
    EXPECT_NE(result.output.find(name), std::string::npos) << result.output;
  }
}

TEST(ServerCli, VersionAndHelpExitZero) {
  EXPECT_EQ(run_shell(server_binary() + " --version").status, 0);
  const auto help = run_shell(server_binary() + " --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("--backend"), std::string::npos);
}

TEST(ServerCli, DefaultBindIsLoopbackOnly) {
  auto server = ServerProcess::start({});
  ASSERT_TRUE(server);
  EXPECT_NE(server->listening_line().find("listening on 127.0.0.1:"), std::string::npos)
      << server->listening_line();
}

TEST(ServerCli, ListensOnIpv6Loopback) {
  auto server = ServerProcess::start({"--host", "::1"});
  ASSERT_TRUE(server);
  EXPECT_NE(server->listening_line().find("[::1]:"), std::string::npos) << server->listening_line();
  auto fd = connect_loopback(server->port(), "::1");
  ASSERT_TRUE(send_text(fd.get(), "v6"));
  EXPECT_EQ(recv_exact(fd.get(), 2), "v6");
}

TEST(ClientCli, SendPrintsTheEchoAndExitsZero) {
  auto server = ServerProcess::start({"--mode", "line", "--transform", "upper"});
  ASSERT_TRUE(server);
  const auto port = std::to_string(server->port());
  const auto words = run_shell(client_binary() + " --port " + port + " send hello world");
  EXPECT_EQ(words.status, 0);
  EXPECT_EQ(words.output, "HELLO WORLD\n");
  const auto piped =
      run_shell("printf 'one\\ntwo\\n' | " + client_binary() + " --port " + port + " send");
  EXPECT_EQ(piped.status, 0);
  EXPECT_EQ(piped.output, "ONE\nTWO\n");
}

TEST(ClientCli, InteractivePrintsEachReplyAndQuits) {
  auto server = ServerProcess::start({"--mode", "line"});
  ASSERT_TRUE(server);
  const auto result = run_shell("printf 'hi\\nthere\\nq\\nignored\\n' | " + client_binary() +
                                " --port " + std::to_string(server->port()));
  EXPECT_EQ(result.status, 0);
  EXPECT_EQ(result.output, "hi\nthere\nbye\n");
}

TEST(ClientCli, RefusedConnectionIsOneLineErrorAndNonZeroExit) {
  // A port that was just free: bind, read the number, close, so nobody listens there.
  std::string port;
  {
    unique_fd probe = make_listener(resolve_endpoint("127.0.0.1", 0), {});
    port = std::to_string(local_endpoint(probe.get()).port());
  }
  const auto result = run_shell(client_binary() + " --port " + port + " send hello");
  EXPECT_NE(result.status, 0);
  EXPECT_NE(result.output.find("Connection refused"), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

}  // namespace
}  // namespace polyecho::test

namespace polyecho::test {
namespace {

// --user drops privileges after binding. As root the server must end up running as that
// user; otherwise it cannot change users and must say so and exit 1 rather than run as is.
TEST(ServerCli, UserFlagDropsPrivilegesAfterBinding) {
  if (::geteuid() == 0) {
    auto server = ServerProcess::start({"--user", "nobody"});
    ASSERT_TRUE(server);
    std::ifstream status("/proc/" + std::to_string(server->pid()) + "/status");
    std::string key, real, effective;
    while (status >> key && key != "Uid:") status.ignore(1 << 16, '\n');
    status >> real >> effective;
    EXPECT_EQ(effective, "65534");
    EXPECT_EQ(real, "65534");
    auto fd = connect_loopback(server->port());
    ASSERT_TRUE(send_text(fd.get(), "still serving"));
    EXPECT_EQ(recv_exact(fd.get(), 13), "still serving");
  } else {
    const auto [status, error] = ServerProcess::run_to_exit({"--port", "0", "--user", "nobody"});
    EXPECT_EQ(status, 1);
    EXPECT_NE(error.find("setgroups"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace polyecho::test
