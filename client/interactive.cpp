// Interactive mode: one typed line out, one reply line back. The reply is framed with the
// shared find_line_end(), so raw and line servers look the same to the user.
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <string>

#include "client_options.hpp"
#include "polyecho/protocol.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho::client {

namespace {

bool is_quit(const std::string& line) {
  std::string lower;
  for (char c : line) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "q" || lower == "quit";
}

}  // namespace

int run_interactive(const ConnectOptions& options) {
  unique_fd fd = connect_or_explain(options);
  set_io_timeout(fd.get(),
                 std::chrono::milliseconds(static_cast<long long>(options.timeout_seconds * 1000)));
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  if (tty) fmt::print("connected to {}:{}; type a line, q to quit\n", options.host, options.port);
  std::string pending;  // bytes received beyond the last printed line
  std::string line;
  char chunk[16 * 1024];
  for (;;) {
    if (tty) {
      fmt::print("> ");
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    line += '\n';
    if (int error = send_all(fd.get(), {line.data(), line.size()}); error != 0) {
      throw ClientError(fmt::format("send: {}", std::strerror(error)));
    }
    // Wait for one reply line (or for the server to close).
    std::size_t end;
    while ((end = find_line_end(pending)) == std::string::npos) {
      const IoResult r = read_some(fd.get(), chunk);
      if (r.eof()) {
        if (!pending.empty()) fmt::print("{}\n", pending);
        fmt::print(stderr, "polyecho-client: server closed the connection\n");
        return 0;
      }
      if (r.bytes < 0) {
        if (r.would_block()) throw ClientError("no reply from the server (timed out)");
        throw ClientError(fmt::format("recv: {}", std::strerror(r.error)));
      }
      pending.append(chunk, static_cast<std::size_t>(r.bytes));
    }
    std::fwrite(pending.data(), 1, end + 1, stdout);
    std::fflush(stdout);
    pending.erase(0, end + 1);
    line.pop_back();
    if (is_quit(line)) return 0;
  }
  return 0;
}

}  // namespace polyecho::client
