// `polyecho-client send [TEXT...]`: send TEXT (or all of stdin), half-close, print everything
// the server sends back until it closes. Reading and writing are interleaved with poll() so a
// large stdin cannot deadlock against a server whose socket buffers are full.
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "client_options.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho::client {

namespace {

void write_stdout(const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(STDOUT_FILENO, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ClientError(fmt::format("write to stdout: {}", std::strerror(errno)));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

int run_send(const ConnectOptions& options, const std::vector<std::string>& words) {
  unique_fd fd = connect_or_explain(options);
  set_nonblocking(fd.get());
  const bool from_stdin = words.empty();
  std::string outgoing;
  if (!from_stdin) {
    for (std::size_t i = 0; i < words.size(); ++i) outgoing += (i ? " " : "") + words[i];
    outgoing += '\n';
  }
  std::size_t sent = 0;
  bool input_done = !from_stdin;
  bool write_shut = false;
  const int timeout_ms = static_cast<int>(options.timeout_seconds * 1000);
  std::vector<char> chunk(std::size_t{64} * 1024);

  for (;;) {
    const bool have_outgoing = sent < outgoing.size();
    if (!have_outgoing && input_done && !write_shut) {
      ::shutdown(fd.get(), SHUT_WR);  // tells the server we are done; it echoes the rest and closes
      write_shut = true;
    }
    pollfd fds[2] = {{fd.get(), static_cast<short>(POLLIN | (have_outgoing ? POLLOUT : 0)), 0},
                     {(!have_outgoing && !input_done) ? STDIN_FILENO : -1, POLLIN, 0}};
    const int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw ClientError(fmt::format("poll: {}", std::strerror(errno)));
    }
    if (ready == 0) throw ClientError("timed out waiting for the server");
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      const ssize_t n = ::read(STDIN_FILENO, chunk.data(), chunk.size());
      if (n > 0) {
        outgoing.assign(chunk.data(), static_cast<std::size_t>(n));
        sent = 0;
      } else if (n == 0 || errno != EINTR) {
        input_done = true;
      }
    }
    if (fds[0].revents & POLLOUT) {
      const IoResult r = send_some(fd.get(), {outgoing.data() + sent, outgoing.size() - sent});
      if (r.bytes > 0)
        sent += static_cast<std::size_t>(r.bytes);
      else if (!r.would_block())
        throw ClientError(fmt::format("send: {}", std::strerror(r.error)));
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const IoResult r = read_some(fd.get(), chunk);
      if (r.eof()) {
        if (have_outgoing || !input_done) {
          throw ClientError("the server closed the connection before all input was sent");
        }
        return 0;
      }
      if (r.bytes > 0)
        write_stdout(chunk.data(), static_cast<std::size_t>(r.bytes));
      else if (!r.would_block())
        throw ClientError(fmt::format("recv: {}", std::strerror(r.error)));
    }
  }
}

}  // namespace polyecho::client
