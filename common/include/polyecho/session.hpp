#pragma once

#include <cstddef>
#include <span>

#include "polyecho/buffer.hpp"
#include "polyecho/protocol.hpp"

namespace polyecho {

// The per-connection echo protocol, sans IO: it never touches a socket. The transport reads
// straight into input_space(), reports the count with on_received(), and sends output().
//
// Zero-copy by design: received bytes are echoed from the very buffer they were read into.
// Raw mode releases them unchanged; line mode releases complete lines (upper-cased in place
// when asked) and holds an incomplete line back until its LF arrives.
//
// Buffer layout: [ owed output | held incomplete line | free ].
// Not thread-safe; owned by one connection.
class Session {
 public:
  explicit Session(const ProtocolConfig& config);

  // Where the transport should place received bytes. Empty means "do not read now": either
  // the output cap is reached (backpressure: flush first) or the session is closing.
  // `useful`: how much room is worth sliding or growing the buffer for.
  [[nodiscard]] std::span<char> input_space(std::size_t useful = Buffer::kInitialCapacity);
  // How many bytes input_space() is sure to offer next time, without allocating now: a
  // completion-based transport sizes a read by it before it has anywhere to put the bytes.
  [[nodiscard]] std::size_t input_space_floor() const noexcept {
    return closing_ ? 0 : buffer_.writable_floor();
  }
  // Room after the buffered bytes and `staged` bytes already copied there but not yet
  // reported, without sliding or growing the buffer: safe to fill while a send still points
  // into output(). Report the staged bytes with on_received() once no send is in flight.
  [[nodiscard]] std::span<char> input_space_in_place(std::size_t staged) noexcept {
    return closing_ ? std::span<char>() : buffer_.tail_in_place(staged);
  }
  // `n` bytes were written into the span last returned by input_space() (or staged in place).
  Intent on_received(std::size_t n);
  // The peer shut down its write side. Any incomplete line is still echoed.
  Intent on_peer_eof();

  // Bytes owed to the peer, in order.
  [[nodiscard]] std::span<const char> output() const noexcept {
    return buffer_.readable().first(releasable_);
  }
  void on_sent(std::size_t n) noexcept;

  [[nodiscard]] bool closing() const noexcept { return closing_; }
  // Closing and nothing left to send: the transport may close the connection now.
  [[nodiscard]] bool finished() const noexcept { return closing_ && releasable_ == 0; }
  [[nodiscard]] bool has_output() const noexcept { return releasable_ > 0; }
  // True while reading is allowed and there is room to read into.
  [[nodiscard]] bool wants_input() const noexcept {
    return !closing_ && buffer_.size() < buffer_.soft_cap();
  }
  [[nodiscard]] std::size_t buffered() const noexcept { return buffer_.size(); }
  [[nodiscard]] std::size_t buffer_allocated() const noexcept { return buffer_.allocated(); }

 private:
  Intent scan_lines();
  Intent finish_line(std::size_t line_start, std::size_t line_end);
  Intent close_with(std::size_t keep, std::string_view reply);

  ProtocolConfig config_;  // a copy: 32 bytes, and no lifetime to get wrong
  Buffer buffer_;
  std::size_t releasable_ = 0;    // leading bytes of the buffer that may be sent
  std::size_t scanned_held_ = 0;  // held bytes already known to contain no LF
  bool closing_ = false;
};

}  // namespace polyecho
