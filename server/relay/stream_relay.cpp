#include "relay/stream_relay.hpp"

namespace polyecho {

std::optional<IoResult> StreamRelay::in(int fd, Session& session) noexcept {
  if (!pipe_) pipe_ = RelayPipe::take();
  if (!pipe_) return std::nullopt;
  const IoResult r = splice_some(fd, pipe_.write_end(), kAsk);  // EINTR retried inside
  if (r.ok()) {
    in_pipe_ = static_cast<std::uint32_t>(r.bytes);
    session.on_relayed_in(static_cast<std::size_t>(r.bytes), kAsk);
  } else {
    pipe_.give_back();  // empty: nothing was spliced in
  }
  return r;
}

StreamRelay::Out StreamRelay::out(int fd, Session& session) noexcept {
  Out out;
  while (in_pipe_ > 0) {
    const IoResult r = splice_some(pipe_.read_end(), fd, in_pipe_);  // EINTR retried inside
    if (!r.ok()) {
      out.ended = r.eof() ? IoResult{-1, EPIPE} : r;  // nothing taken from a non-empty pipe
      return out;
    }
    in_pipe_ -= static_cast<std::uint32_t>(r.bytes);
    out.sent += static_cast<std::size_t>(r.bytes);
    session.on_relayed_out(static_cast<std::size_t>(r.bytes));
  }
  pipe_.give_back();  // empty: the next stream of this thread may take it
  out.ended = {static_cast<ssize_t>(out.sent), 0};
  return out;
}

}  // namespace polyecho
