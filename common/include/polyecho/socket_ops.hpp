#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string_view>
#include <system_error>

#include "polyecho/endpoint.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Setup failures carry the syscall's name and errno: "bind: Address already in use".
[[noreturn]] void throw_errno(std::string_view syscall_name, int error_number = errno);

struct ListenerOptions {
  int backlog = 4096;
  bool reuse_port = false;  // lets several sockets (threads, processes) listen on one port
  bool nonblocking = false;
};

// socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen. Throws std::system_error.
[[nodiscard]] unique_fd make_listener(const Endpoint& endpoint, const ListenerOptions& options);
[[nodiscard]] Endpoint local_endpoint(int fd);
[[nodiscard]] Endpoint peer_endpoint(int fd);
// Blocking connect. Throws std::system_error naming "connect".
[[nodiscard]] unique_fd connect_to(const Endpoint& endpoint);

void set_nonblocking(int fd, bool on = true);
void set_nodelay(int fd);
void set_keepalive(int fd, int idle_seconds);
// SO_RCVTIMEO and SO_SNDTIMEO: a blocking read or write gives up with EAGAIN after `timeout`.
// Zero disables the timeout.
void set_io_timeout(int fd, std::chrono::milliseconds timeout);

// Result of one read or send. `bytes > 0`: data moved. `bytes == 0 && error == 0`: orderly
// EOF (reads only). Otherwise `error` holds errno; EAGAIN means "try again when ready".
struct IoResult {
  ssize_t bytes = 0;
  int error = 0;
  [[nodiscard]] bool ok() const noexcept { return bytes > 0; }
  [[nodiscard]] bool eof() const noexcept { return bytes == 0 && error == 0; }
  [[nodiscard]] bool would_block() const noexcept {
    return error == EAGAIN || error == EWOULDBLOCK;
  }
};

// recv() that retries EINTR.
[[nodiscard]] IoResult read_some(int fd, std::span<char> into) noexcept;
// send(MSG_NOSIGNAL) that retries EINTR. MSG_NOSIGNAL turns a write to a reset peer into
// EPIPE for this connection instead of a process-killing SIGPIPE.
[[nodiscard]] IoResult send_some(int fd, std::span<const char> bytes) noexcept;
// splice(2) of up to `n` bytes from `from` to `to` (one of them a pipe), non-blocking on the
// pipe side, retrying EINTR. Into a socket there is no MSG_NOSIGNAL: a reset peer raises
// SIGPIPE, which the server ignores process-wide (ignore_sigpipe()), and the call says EPIPE.
[[nodiscard]] IoResult splice_some(int from, int to, std::size_t n) noexcept;
// Blocking: sends everything unless the peer fails. Returns 0 or the errno.
[[nodiscard]] int send_all(int fd, std::span<const char> bytes) noexcept;

// Belt and braces next to MSG_NOSIGNAL: write() paths in libraries we do not control.
void ignore_sigpipe();

}  // namespace polyecho
