// Flow control for every backend × variant: pipelined small messages, and a client that
// sends far more than it reads. Non-blocking models must stop reading when a connection's
// buffer reaches --max-buffer (backpressure); blocking models get the same bound from the
// kernel's socket buffers. Either way server memory stays bounded and nothing is lost.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "polyecho/socket_ops.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

class FlowControl : public ::testing::TestWithParam<BackendCase> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::vector<std::string>& extra = {}) {
    return start_server(GetParam().args(extra));
  }
};

TEST_P(FlowControl, PipelinedSmallMessagesComeBackIntact) {
  auto server = start();
  auto fd = connect_loopback(server->port());
  set_nodelay(fd.get());  // each 64-byte message leaves as its own segment
  const std::string payload = random_bytes(2 << 20, 11);
  std::atomic<bool> sent_ok{true};
  std::thread writer([&] {
    const std::string_view all(payload);
    for (std::size_t at = 0; at < all.size() && sent_ok; at += 64)
      sent_ok = send_text(fd.get(), all.substr(at, 64));
  });
  const std::string echoed = recv_exact(fd.get(), payload.size());
  writer.join();
  EXPECT_TRUE(sent_ok);
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_EQ(fnv1a(echoed), fnv1a(payload));
}

// How long POLLOUT may stay away before the writer counts as stalled. This only decides when
// to stop pushing; no assertion depends on it (stopping early just measures memory sooner).
constexpr int kStallMs = 500;

TEST_P(FlowControl, SlowReaderKeepsMemoryBoundedAndOthersServed) {
  constexpr std::size_t kMaxBuffer = std::size_t{256} * 1024;
  constexpr long kSlackKib = 6L * 1024;  // allocator and stack noise, not a second buffer
  auto server = start({"--max-buffer", std::to_string(kMaxBuffer)});
  const bool concurrent = GetParam().serves_concurrently;
  // The iterative model would serve this one first and make the slow one wait: not here.
  unique_fd other = concurrent ? connect_loopback(server->port()) : unique_fd();
  if (concurrent) {
    ASSERT_TRUE(send_text(other.get(), "warm"));
    ASSERT_EQ(recv_exact(other.get(), 4), "warm");
  }
  const long base_kib = server->rss_kib();
  ASSERT_GT(base_kib, 0);

  auto slow = connect_loopback(server->port());
  const std::string payload = random_bytes(64 << 20, 5);
  const std::string_view all(payload);
  // Phase 1: push without reading until every buffer on the path is full.
  set_nonblocking(slow.get());
  std::size_t sent = 0;
  long peak_kib = base_kib;
  std::size_t next_sample = 0;
  while (sent < all.size()) {
    if (sent >= next_sample) {
      peak_kib = std::max(peak_kib, server->rss_kib());
      next_sample = sent + (1 << 20);
    }
    pollfd p{slow.get(), POLLOUT, 0};
    if (::poll(&p, 1, kStallMs) == 0) break;
    const IoResult r = send_some(slow.get(), all.substr(sent, std::size_t{64} * 1024));
    if (r.bytes > 0)
      sent += static_cast<std::size_t>(r.bytes);
    else
      ASSERT_TRUE(r.would_block()) << "send: " << std::strerror(r.error);
  }
  peak_kib = std::max(peak_kib, server->rss_kib());
  ASSERT_LT(sent, all.size())
      << "the server took 64 MiB from a client that never read: no backpressure";
  EXPECT_LT(peak_kib - base_kib, static_cast<long>(kMaxBuffer / 1024) + kSlackKib)
      << "server RSS grew from " << base_kib << " KiB to " << peak_kib << " KiB after " << sent
      << " bytes";
  // Meanwhile another client is served as usual.
  if (concurrent) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(send_text(other.get(), "still served"));
      ASSERT_EQ(recv_exact(other.get(), 12), "still served");
    }
  }

  // Phase 2: the slow client finally reads; everything comes back, in order.
  set_nonblocking(slow.get(), false);
  std::atomic<bool> sent_ok{true};
  std::thread writer([&] { sent_ok = send_text(slow.get(), all.substr(sent)); });
  const std::string echoed = recv_exact(slow.get(), payload.size());
  writer.join();
  EXPECT_TRUE(sent_ok);
  ASSERT_EQ(echoed.size(), payload.size());
  EXPECT_EQ(fnv1a(echoed), fnv1a(payload));
}

INSTANTIATE_TEST_SUITE_P(AllBackends, FlowControl, ::testing::ValuesIn(all_backend_cases()),
                         [](const auto& test_info) { return case_name(test_info.param); });

}  // namespace
}  // namespace polyecho::test
