#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "polyecho/session.hpp"
#include "polyecho/socket_ops.hpp"
#include "relay/relay_pipe.hpp"

namespace polyecho {

// One connection's relay of a raw stream: splice(2) from its socket into a RelayPipe, then from
// the pipe back out to the same socket, counted by its Session (on_relayed_in/out) so figures,
// metrics and streaming() follow as for copied bytes. Shared by every model that relays (the
// readiness loops and the uring workers); the caller decides when, and learns from the
// results when to wait for its socket.
// The socket must be non-blocking: a splice into a full socket would otherwise wait.
// Relay only while the Session holds no byte, and splice in only while the pipe is empty, so
// the bytes keep their order and at most one pipe's worth (64 KiB) waits for a peer that does
// not read. Holds its pipe only while bytes are in it. One thread at a time.
class StreamRelay {
 public:
  // How much one splice in asks for: a bulk read's worth.
  static constexpr std::size_t kAsk = Session::kBulkRead;

  struct Out {
    std::size_t sent = 0;  // bytes that reached the socket in this call
    IoResult ended;        // ok(): the pipe is empty (and given back); else why it stopped
  };

  // Bytes spliced in and not yet out.
  [[nodiscard]] std::uint32_t held() const noexcept { return in_pipe_; }

  // One splice from `fd` into the (empty) pipe, at most kAsk bytes. nullopt: no pipe to be had
  // (the process's cap, or pipe2 failed): copy this read instead. Otherwise the splice's
  // result: bytes now held, EAGAIN (the socket is empty: the pipe was empty, so it cannot be
  // full), EOF, or the error.
  [[nodiscard]] std::optional<IoResult> in(int fd, Session& session) noexcept;
  // Splices the held bytes out to `fd` until none is left, the socket is full (EAGAIN: keep
  // the pipe and wait for writability) or it fails. Only while held() > 0: with nothing held
  // there is nothing to report, and `ended` would read as an EOF.
  [[nodiscard]] Out out(int fd, Session& session) noexcept;

 private:
  std::uint32_t in_pipe_ = 0;
  RelayPipe pipe_;  // held only while in_pipe_ > 0, or during a splice in
};

}  // namespace polyecho
