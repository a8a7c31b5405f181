// The client's frame mode (`send --frame`, `bench --frame`) end to end. No server speaks frame
// mode here yet, so the client is checked against a peer written in this file that parses
// every frame it gets (so the client's framing is checked, not only echoed), and against a
// raw-mode polyecho-server, which echoes frames byte for byte like any other bytes.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "polyecho/protocol.hpp"
#include "polyecho/socket_ops.hpp"
#include "support/server_process.hpp"

namespace polyecho::test {
namespace {

// How the peer answers the first frame of each connection; later frames are echoed honestly.
enum class Reply { echo, cut_mid_frame, flip_header };

// A frame-mode echo peer on a loopback port: one thread per connection, each frame read whole
// (header, then payload), its payload length recorded, then the frame echoed back.
class FramePeer {
 public:
  explicit FramePeer(Reply reply)
      : reply_(reply),
        listener_(make_listener(resolve_endpoint("127.0.0.1", 0), {})),
        port_(local_endpoint(listener_.get()).port()),
        acceptor_([this] { accept_all(); }) {}
  ~FramePeer() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    std::lock_guard lock(mutex_);
    connections_.clear();  // joins: each ends when its client closes (or at the safety timeout)
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Payload lengths of every frame received, over all connections.
  [[nodiscard]] std::vector<std::uint32_t> lengths() const {
    std::lock_guard lock(mutex_);
    return lengths_;
  }

 private:
  void accept_all() {
    for (;;) {
      const int fd = ::accept(listener_.get(), nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard lock(mutex_);
      connections_.emplace_back([this, fd] { serve(unique_fd(fd)); });
    }
  }

  static bool read_exactly(int fd, char* out, std::size_t n) {
    while (n > 0) {
      const IoResult r = read_some(fd, {out, n});
      if (r.bytes <= 0) return false;
      out += r.bytes;
      n -= static_cast<std::size_t>(r.bytes);
    }
    return true;
  }

  void serve(unique_fd connection) {
    const int fd = connection.get();
    set_io_timeout(fd, kSafetyTimeout);
    for (bool first = true;; first = false) {
      std::vector<char> frame(kFrameHeaderSize);
      if (!read_exactly(fd, frame.data(), kFrameHeaderSize)) return;
      const std::uint32_t length = read_frame_length(std::span(frame).first<kFrameHeaderSize>());
      frame.resize(kFrameHeaderSize + length);
      if (!read_exactly(fd, frame.data() + kFrameHeaderSize, length)) return;
      {
        std::lock_guard lock(mutex_);
        lengths_.push_back(length);
      }
      std::size_t echo = frame.size();
      if (first && reply_ == Reply::cut_mid_frame) echo = kFrameHeaderSize + length / 2;
      if (first && reply_ == Reply::flip_header) frame[3] = static_cast<char>(frame[3] ^ 0x01);
      if (send_all(fd, {frame.data(), echo}) != 0) return;
      if (echo < frame.size()) return;  // closes with the frame half echoed
    }
  }

  Reply reply_;
  unique_fd listener_;
  std::uint16_t port_;
  mutable std::mutex mutex_;
  std::vector<std::uint32_t> lengths_;
  std::vector<std::jthread> connections_;
  std::thread acceptor_;
};

std::string client(std::uint16_t port) {
  return client_binary() + " --port " + std::to_string(port) + " --timeout 10 ";
}

nlohmann::json bench_json(std::uint16_t port, const std::string& flags, int& status) {
  const CommandResult run =
      run_command(client(port) + "bench --json --frame " + flags + " 2>/dev/null");
  status = run.status;
  return nlohmann::json::parse(run.output);
}

TEST(SendFrame, TextIsOneFrameAndEachEchoedPayloadIsPrintedOnItsLine) {
  FramePeer peer(Reply::echo);
  const CommandResult run = run_command(client(peer.port()) + "send --frame hello  world");
  EXPECT_EQ(run.status, 0);
  EXPECT_EQ(run.output, "hello world\n");
  EXPECT_EQ(peer.lengths(), (std::vector<std::uint32_t>{11}));
}

TEST(SendFrame, EachStdinLineIsOneFrame) {
  FramePeer peer(Reply::echo);
  const CommandResult run =
      run_command("printf 'one\\n\\ntwo\\nlast' | " + client(peer.port()) + "send --frame");
  EXPECT_EQ(run.status, 0);
  EXPECT_EQ(run.output, "one\n\ntwo\nlast\n");
  EXPECT_EQ(peer.lengths(), (std::vector<std::uint32_t>{3, 0, 3, 4}));
}

TEST(SendFrame, AServerClosingMidFrameIsAnErrorOnStderr) {
  FramePeer peer(Reply::cut_mid_frame);
  const CommandResult run =
      run_command(client(peer.port()) + "send --frame a reply cut short 2>&1 >/dev/null");
  EXPECT_NE(run.status, 0);
  EXPECT_NE(run.output.find("mid-frame (8 of 17 payload bytes)"), std::string::npos) << run.output;
}

TEST(BenchFrame, EveryMessageIsOneFrameOfSizeBytes) {
  FramePeer peer(Reply::echo);
  int status = -1;
  const auto report =
      bench_json(peer.port(), "--connections 2 --messages 20 --pipeline 4 --size 100", status);
  EXPECT_EQ(status, 0) << report.dump();
  EXPECT_EQ(report["messages"], 40);
  EXPECT_EQ(report["frame"], true);
  EXPECT_EQ(peer.lengths(), std::vector<std::uint32_t>(40, 100));
}

TEST(BenchFrame, AMangledFrameHeaderInTheEchoFailsTheRun) {
  FramePeer peer(Reply::flip_header);
  int status = -1;
  const auto report = bench_json(peer.port(), "--connections 1 --messages 5 --size 64", status);
  EXPECT_NE(status, 0);
  EXPECT_EQ(report["errors"]["mismatch"], 1);
  EXPECT_EQ(report["connections_failed"], 1);
}

TEST(BenchFrame, ARawServerEchoesFramesInEveryBenchMode) {
  auto server = ServerProcess::start({"--mode", "raw"});
  ASSERT_TRUE(server);
  for (const char* flags :
       {"--connections 3 --messages 200 --pipeline 8 --size 3000",
        "--connections 2 --duration 0.3 --rate 400", "--connections 2 --messages 10 --reconnect",
        "--connections 2 --duration 0.2 --idle"}) {
    SCOPED_TRACE(flags);
    int status = -1;
    const auto report = bench_json(server->port(), flags, status);
    EXPECT_EQ(status, 0) << report.dump();
    EXPECT_EQ(report["errors"]["total"], 0);
    EXPECT_GT(report["messages"].get<std::uint64_t>(), 0u);
  }
}

}  // namespace
}  // namespace polyecho::test
