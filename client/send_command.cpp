// `polyecho-client send [--frame] [TEXT...]`: send TEXT (or all of stdin), half-close, print
// everything the server sends back until it closes. Reading and writing are interleaved with
// poll() so a large stdin cannot deadlock against a server whose socket buffers are full.
//
// --frame speaks frame mode: TEXT (its words joined by spaces) is one frame, or each line of
// stdin (without its LF; a last unterminated line too) is one frame; each echoed frame's payload
// is printed followed by a newline. A server that closes mid-frame is an error.
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "client_options.hpp"
#include "polyecho/protocol.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho::client {

namespace {

void write_stdout(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ClientError(fmt::format("write to stdout: {}", std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::uint32_t frame_length(std::string_view frame_start) {
  return read_frame_length(
      std::span<const char, kFrameHeaderSize>(frame_start.data(), kFrameHeaderSize));
}

void append_frame(std::string_view payload, std::string& out) {
  if (payload.size() > std::numeric_limits<std::uint32_t>::max())
    throw ClientError(fmt::format("{} bytes do not fit in one frame", payload.size()));
  char header[kFrameHeaderSize];
  write_frame_header(static_cast<std::uint32_t>(payload.size()), header);
  out.append(header, kFrameHeaderSize).append(payload);
}

// What goes out: stdin as it comes, or (framed) one frame per line once the line is whole.
class Encoder {
 public:
  explicit Encoder(bool frame) : frame_(frame) {}

  void words(const std::vector<std::string>& words, std::string& out) const {
    std::string text;
    for (std::size_t i = 0; i < words.size(); ++i) text += (i ? " " : "") + words[i];
    if (frame_) return append_frame(text, out);
    out += text + '\n';
  }
  void input(std::string_view chunk, std::string& out) {
    if (!frame_) {
      out.append(chunk);
      return;
    }
    // Only the new chunk is searched: a long line arriving in pieces is scanned once.
    for (std::size_t lf; (lf = find_line_end(chunk)) != std::string_view::npos;) {
      line_.append(chunk.substr(0, lf));
      append_frame(line_, out);
      line_.clear();
      chunk.remove_prefix(lf + 1);
    }
    line_.append(chunk);
  }
  void end_of_input(std::string& out) {
    if (!line_.empty()) append_frame(line_, out);
    line_.clear();
  }

 private:
  bool frame_;
  std::string line_;  // framed: the stdin line still waiting for its LF
};

// What comes back: printed as it comes, or (framed) each whole frame's payload and a newline.
class Printer {
 public:
  explicit Printer(bool frame) : frame_(frame) {}

  void reply(std::string_view bytes) {
    if (!frame_) return write_stdout(bytes);
    held_.append(bytes);
    std::string_view rest = held_;
    std::string lines;
    while (rest.size() >= kFrameHeaderSize) {
      const std::size_t length = frame_length(rest);
      if (rest.size() - kFrameHeaderSize < length) break;
      lines.append(rest.substr(kFrameHeaderSize, length)).push_back('\n');
      rest.remove_prefix(kFrameHeaderSize + length);
    }
    write_stdout(lines);
    held_.erase(0, held_.size() - rest.size());
  }
  // The server closed: an incomplete frame can never be printed.
  void end_of_replies() const {
    if (held_.empty()) return;
    if (held_.size() < kFrameHeaderSize) {
      throw ClientError(
          fmt::format("the server closed the connection mid-frame ({} of {} header bytes)",
                      held_.size(), kFrameHeaderSize));
    }
    throw ClientError(
        fmt::format("the server closed the connection mid-frame ({} of {} payload bytes)",
                    held_.size() - kFrameHeaderSize, frame_length(held_)));
  }

 private:
  bool frame_;
  std::string held_;  // framed: an incomplete frame
};

}  // namespace

int run_send(const ConnectOptions& options, const std::vector<std::string>& words, bool frame) {
  unique_fd fd = connect_or_explain(options);
  set_nonblocking(fd.get());
  const bool from_stdin = words.empty();
  Encoder encoder(frame);
  Printer printer(frame);
  std::string outgoing;
  if (!from_stdin) encoder.words(words, outgoing);
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
      outgoing.clear();  // stdin is polled only once everything before was sent
      sent = 0;
      if (n > 0) {
        encoder.input({chunk.data(), static_cast<std::size_t>(n)}, outgoing);
      } else if (n == 0 || errno != EINTR) {
        encoder.end_of_input(outgoing);
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
        printer.end_of_replies();
        if (have_outgoing || !input_done) {
          throw ClientError("the server closed the connection before all input was sent");
        }
        return 0;
      }
      if (r.bytes > 0)
        printer.reply({chunk.data(), static_cast<std::size_t>(r.bytes)});
      else if (!r.would_block())
        throw ClientError(fmt::format("recv: {}", std::strerror(r.error)));
    }
  }
}

}  // namespace polyecho::client
