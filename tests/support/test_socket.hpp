#pragma once

#include <sys/resource.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "polyecho/unique_fd.hpp"

namespace polyecho::test {

// A blocking loopback client socket with the suite's safety timeout on every read and write.
unique_fd connect_loopback(std::uint16_t port, const char* host = "127.0.0.1");
// Connects to 127.0.0.1:port from another loopback address (e.g. "127.0.0.2"): a second
// client address without any network setup.
unique_fd connect_loopback_from(std::uint16_t port, const char* source);

// Both ends of one loopback TCP connection.
struct LoopbackPair {
  unique_fd client;    // blocking, with the suite's safety timeout
  unique_fd accepted;  // the server's end, as accept4() gives it (blocking, close-on-exec)
};

// A listener on 127.0.0.1, port 0, and connections made to it as a server would accept them:
// real TCP, so getpeername() tells each connection's source address.
class LoopbackListener {
 public:
  LoopbackListener();
  // A connection from `source` (any 127.x.y.z: a second client address without network setup).
  LoopbackPair connect_from(const char* source = "127.0.0.1");
  // Only the accepted end; the client end stays open here until the listener is destroyed.
  unique_fd accept_from(const char* source = "127.0.0.1");

 private:
  unique_fd listener_;
  std::uint16_t port_ = 0;
  std::vector<unique_fd> clients_;
};

// Raises RLIMIT_NOFILE's soft limit towards `wanted` (within the hard limit) for this process
// and the servers it starts from now on (they inherit it); restores it when destroyed.
// Tests that hold thousands of connections need it on both ends.
class RaisedFdLimit {
 public:
  explicit RaisedFdLimit(rlim_t wanted);
  ~RaisedFdLimit();
  RaisedFdLimit(const RaisedFdLimit&) = delete;
  RaisedFdLimit& operator=(const RaisedFdLimit&) = delete;
  // False when the hard limit is below `wanted`.
  [[nodiscard]] bool reached() const noexcept { return reached_; }

 private:
  rlimit saved_{};
  bool reached_ = false;
};

// Sends everything; returns false if the peer failed.
bool send_text(int fd, std::string_view bytes);
// Reads until `n` bytes arrived, EOF, an error or the safety timeout; returns what came.
std::string recv_exact(int fd, std::size_t n);
// Sends `payload` from another thread while this one reads its echo back, so full socket
// buffers cannot deadlock; `sent_ok` says whether every byte went out. Returns the echo (short
// if the server closed or the safety timeout passed).
std::string echo_while_sending(int fd, std::string_view payload, bool& sent_ok);
// Reads until a LF (included) or EOF/error/timeout.
std::string recv_line(int fd);
// Reads everything until EOF (or error/timeout).
std::string recv_until_eof(int fd);

enum class PeerEnd { closed, reset, timed_out, data };
// Waits for the server to end the connection: orderly EOF, a reset, or (failure) data/timeout.
PeerEnd wait_for_close(int fd);

// Seconds since `start` on the steady clock (timing assertions are ratios of these).
double seconds_since(std::chrono::steady_clock::time_point start);
// "message N\n": the line client N sends in the work and offload tests.
std::string numbered_line(std::size_t n);
// Connects `n` clients, then has each send one numbered line at once, then reads every echo.
// Returns how long that took from the first send, or a negative number if an echo was wrong.
double one_line_each(std::uint16_t port, std::size_t n);

// Random bytes, deterministic per seed.
std::string random_bytes(std::size_t n, std::uint32_t seed);
// 64-bit FNV-1a, for comparing large payloads without printing them.
std::uint64_t fnv1a(std::string_view bytes);

}  // namespace polyecho::test
