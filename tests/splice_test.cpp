// Raw streams relayed through kernel pipes with splice(2) (server/relay/): every model that
// relays (the readiness loops, leader-follower and uring) in one serving process, since worker
// processes open and close pipes of their own as they start. The conformance and flow-control
// suites cover the same paths for correctness under their default flags; these show that the
// relay is what carried the bytes, and that a connection goes back and forth between relaying
// and copying without losing or reordering a byte.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

std::vector<BackendCase> relaying_cases() {
  const std::set<std::string> models{"nbpoll", "select", "poll",           "epoll",
                                     "sigio",  "uring",  "leader-follower"};
  std::vector<BackendCase> cases;
  for (const auto& c : all_backend_cases()) {
    if (models.contains(c.backend) && c.serving_processes() == 1) cases.push_back(c);
  }
  return cases;
}

// The server's open descriptors, fd number -> what it names ("pipe:[...]", "socket:[...]"),
// from /proc/PID/fd.
std::map<int, std::string> fds_of(const ServerProcess& server) {
  std::map<int, std::string> fds;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(
           "/proc/" + std::to_string(server.pid()) + "/fd", error)) {
    std::error_code unreadable;
    const auto target = std::filesystem::read_symlink(entry.path(), unreadable);
    fds.emplace(std::stoi(entry.path().filename().string()), unreadable ? "" : target.string());
  }
  return fds;
}

// Pipe descriptors the server holds.
std::size_t pipes_of(const ServerProcess& server) {
  const auto fds = fds_of(server);
  return static_cast<std::size_t>(std::count_if(
      fds.begin(), fds.end(), [](const auto& fd) { return fd.second.starts_with("pipe:"); }));
}

bool round_trip(int fd, const std::string& message) {
  return send_text(fd, message) && recv_exact(fd, message.size()) == message;
}

// Streams 8 MiB of random bytes on `fd` and reads the echo back while writing.
void expect_stream_echoed(int fd, std::uint32_t seed) {
  std::string payload = random_bytes(8 << 20, seed);
  payload.back() = '\n';  // line mode echoes a last line once it is complete
  bool sent_ok = false;
  const std::string echoed = echo_while_sending(fd, payload, sent_ok);
  EXPECT_TRUE(sent_ok);
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_EQ(fnv1a(echoed), fnv1a(payload));
}

class Splice : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra = {}) {
    return start_server(GetParam().args(extra));
  }
};

// The pipe a stream was relayed through stays among the loop thread's spares afterwards, which
// is what shows it was used; --no-splice makes none, and line mode (whose bytes the Session
// must see) neither.
TEST_P(Splice, AStreamGoesThroughAPipeUnlessCopyingIsAsked) {
  for (const std::vector<std::string>& flags : {std::vector<std::string>{},
                                                {"--no-splice"},
                                                {"--mode", "line", "--max-line", "10000000"}}) {
    SCOPED_TRACE(flags.empty() ? std::string("default") : flags.front());
    auto server = start(flags);
    {
      auto warm = connect_loopback(server->port());
      ASSERT_TRUE(round_trip(warm.get(), "warm\n"));
    }
    const std::size_t before = pipes_of(*server);
    auto fd = connect_loopback(server->port());
    expect_stream_echoed(fd.get(), 77);
    if (flags.empty()) {
      EXPECT_GT(pipes_of(*server), before) << "the stream was copied, not spliced";
    } else {
      EXPECT_EQ(pipes_of(*server), before) << "a pipe was made for a stream that must be copied";
    }
  }
}

// One connection: a stream (relayed), small round trips (a short splice in ends the relay, the
// rest are copied), a second stream (relayed again), then the half-close: every byte comes back
// in order, and the server closes once it has echoed the last one.
TEST_P(Splice, AConnectionSwitchesBetweenRelayingAndCopyingWithoutLosingAByte) {
  auto server = start();
  auto fd = connect_loopback(server->port());
  expect_stream_echoed(fd.get(), 1);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(round_trip(fd.get(), "ping " + std::to_string(i)));
  expect_stream_echoed(fd.get(), 2);
  ASSERT_TRUE(round_trip(fd.get(), "last"));
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  EXPECT_EQ(wait_for_close(fd.get()), PeerEnd::closed);
}

// No pipe to be had (pipe2 fails: the server may open no more descriptors, as when a busy
// server runs out of them): a stream is copied through the Session instead, every byte comes
// back in order, and the connection goes on.
TEST_P(Splice, AStreamIsCopiedWhenNoPipeCanBeMade) {
  auto server = start();
  auto fd = connect_loopback(server->port());
  ASSERT_TRUE(round_trip(fd.get(), "hello\n"));  // accepted: its descriptor is open
  const std::map<int, std::string> used = fds_of(*server);
  ASSERT_FALSE(used.empty());
  // The lowest fd number is the one a new descriptor gets, and none at or above the limit can
  // be opened (those already open stay). The highest limit below which at most one number is
  // free leaves room for no pipe: it needs two.
  rlim_t limit = 0;
  std::size_t free_below = 0;
  for (int n = 0; n <= used.rbegin()->first + 1; ++n) {
    if (!used.contains(n)) ++free_below;
    if (free_below > 1) break;
    limit = static_cast<rlim_t>(n) + 1;
  }
  rlimit now{};
  ASSERT_EQ(::prlimit(server->pid(), RLIMIT_NOFILE, nullptr, &now), 0);
  const rlimit lowered{limit, now.rlim_max};
  ASSERT_EQ(::prlimit(server->pid(), RLIMIT_NOFILE, &lowered, nullptr), 0);
  const std::size_t pipes = pipes_of(*server);
  expect_stream_echoed(fd.get(), 9);
  EXPECT_EQ(pipes_of(*server), pipes) << "a pipe was made past the descriptor limit";
  ASSERT_TRUE(round_trip(fd.get(), "still here\n"));
  // With descriptors again, the next stream is relayed.
  ASSERT_EQ(::prlimit(server->pid(), RLIMIT_NOFILE, &now, nullptr), 0);
  expect_stream_echoed(fd.get(), 10);
  EXPECT_GT(pipes_of(*server), pipes) << "the second stream was copied, not spliced";
}

INSTANTIATE_TEST_SUITE_P(RelayingModels, Splice, ::testing::ValuesIn(relaying_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
