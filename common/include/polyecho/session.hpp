#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "polyecho/buffer.hpp"
#include "polyecho/message_observer.hpp"
#include "polyecho/protocol.hpp"

namespace polyecho {

// The per-connection echo protocol, sans IO: it never touches a socket. The transport reads
// straight into input_space(), reports the count with on_received(), and sends output().
//
// Zero-copy by design: received bytes are echoed from the very buffer they were read into.
// Raw mode releases them unchanged; line mode releases complete lines (upper-cased in place
// when asked) and holds an incomplete line back until its LF arrives; frame mode releases
// complete frames, header and payload unchanged, and holds an incomplete one back.
//
// Buffer layout: [ owed output | pending messages | held incomplete message | free ].
// "Pending" is empty unless ProtocolConfig::hold_messages is set: then each complete message
// waits there until the transport has done its work and calls release_message(), and the
// messages leave in the order they arrived. Everything lives in the one bounded buffer, so a
// connection whose messages wait for work stops being read once the buffer is full.
//
// Endings. A quit line or a too-long line drops what follows and queues a reply ("bye",
// "error: ...") behind every message before it: with hold_messages the reply leaves once those
// are released. A frame declaring more than max_frame bytes does the same with no reply at all
// (a binary peer gets nothing it did not send). At the peer's EOF an unterminated last line is
// still a line, but an incomplete frame (a partial header, or a partial payload) is dropped
// whole: the peer can never complete it, and half a frame would break the peer's framing.
// The too-long and cut-short cases are protocol errors, described by protocol_error().
//
// Metrics. With ProtocolConfig::observer set, the session reports each read (its bytes and
// the messages it completed), each send, and each reply's latency: from the read that
// completed its message to the moment its echo joins output(), work included. The observer
// is the clock, so the session itself still does no IO. Raw mode has no message boundaries:
// each read counts as one message.
//
// Not thread-safe; owned by one connection.
class Session {
 public:
  explicit Session(const ProtocolConfig& config);

  // Where the transport should place received bytes. Empty means "do not read now": either
  // the output cap is reached (backpressure: flush first) or the session is closing. It may
  // slide or grow the buffer, which moves output() and pending_message().
  // `useful`: how much room is worth sliding or growing the buffer for; 0 lets the session
  // choose: Buffer::kInitialCapacity, and Buffer::kBulkCapacity once a read filled all it was
  // offered (a stream: fewer, larger reads and sends, so fewer syscalls per byte on both ends),
  // back again when a read brings under an eighth of that. Both sizes come from the pool.
  [[nodiscard]] std::span<char> input_space(std::size_t useful = 0);
  static constexpr std::size_t kBulkRead = Buffer::kBulkCapacity;
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
  // The peer shut down its write side. An unterminated last line is still echoed (or becomes
  // pending); an incomplete frame is dropped. Pending messages stay pending: the transport
  // still does their work and releases them, and finished() waits for that.
  Intent on_peer_eof();

  // Bytes owed to the peer, in order.
  [[nodiscard]] std::span<const char> output() const noexcept {
    return buffer_.readable().first(releasable_);
  }
  // `n` bytes of output() left. Once nothing is buffered any more the buffer's memory goes
  // back to the thread's pool (Buffer::release_if_empty()), so it must not be called while
  // a read into input_space() is still in flight.
  void on_sent(std::size_t n) noexcept;
  // on_sent() while a read into input_space_in_place() is still in flight: the buffer neither
  // rewinds nor goes back to the pool, so the read's bytes land right after what is buffered.
  void on_sent_in_place(std::size_t n) noexcept;
  // Raw mode: `n` bytes the transport moved from the socket toward the peer without this
  // buffer (through a kernel pipe, splice(2)), out of `asked`. Counted as a read that was
  // released at once, so figures, metrics and the read size (streaming()) follow as for
  // on_received(). Only while nothing is buffered, so the bytes keep their order.
  void on_relayed_in(std::size_t n, std::size_t asked) noexcept;
  // `n` relayed bytes reached the peer's socket.
  void on_relayed_out(std::size_t n) noexcept;
  // The latest reads filled what they were offered: a stream (see input_space()).
  [[nodiscard]] bool streaming() const noexcept { return read_size_ == kBulkRead; }
  // Raw mode, nothing held: the session itself never writes into its buffer (no reply, no
  // truncation, no transform), so a read may keep filling the tail in place while earlier
  // bytes are reported with on_received() and sent. Other modes may append a reply there.
  [[nodiscard]] bool tail_is_transports() const noexcept {
    return config_.mode == Mode::raw && !config_.hold_messages;
  }
  // The transport found nothing to read and will wait for its peer: if the session holds no
  // bytes, its buffer goes back to the pool meanwhile (input_space() takes one again). Idle
  // connections then cost no buffer, whatever the order of their last reads and sends.
  void park() noexcept { buffer_.release_if_empty(); }

  // Hold mode (ProtocolConfig::hold_messages). The first complete message not yet released:
  // its content only, without framing (a line without its LF or CRLF, already upper-cased
  // when asked; a frame's payload without its header). Empty optional when none is pending.
  // The bytes stay in the buffer and are what will be echoed, so work may read them, or
  // rewrite them in place at the same length. Valid until the next input_space() or
  // release_message().
  [[nodiscard]] std::optional<std::span<char>> pending_message() noexcept;
  // The first pending message (with its framing) joins output(), after everything before
  // it. When it was the last one and the session is closing, the closing reply (if any)
  // follows it. Does nothing when no message is pending.
  void release_message() noexcept;
  [[nodiscard]] std::size_t pending_count() const noexcept { return pending_count_; }

  [[nodiscard]] bool closing() const noexcept { return closing_; }
  // Closing and nothing left to release or send: the transport may close the connection now.
  [[nodiscard]] bool finished() const noexcept { return closing_ && buffer_.empty(); }
  [[nodiscard]] bool has_output() const noexcept { return releasable_ > 0; }
  // True while reading is allowed and there is room to read into.
  [[nodiscard]] bool wants_input() const noexcept {
    return !closing_ && buffer_.size() < buffer_.soft_cap();
  }
  // Why the peer broke the protocol (a line or frame too long, a frame cut short by EOF), for
  // the transport to log and count as an error; empty when it did not. Set once, when the
  // session starts closing because of it. Formatted on demand: the session keeps only the
  // kind and its figures, so a connection carries no text it will almost never need.
  [[nodiscard]] std::string protocol_error() const;
  [[nodiscard]] std::size_t buffered() const noexcept { return buffer_.size(); }
  [[nodiscard]] std::size_t buffer_allocated() const noexcept { return buffer_.allocated(); }
  // Most bytes the session ever reads in: max_buffer, or more so one maximal message fits.
  [[nodiscard]] std::size_t buffer_cap() const noexcept { return buffer_.soft_cap(); }

 private:
  // Offset of the first byte not yet part of a complete message.
  [[nodiscard]] std::size_t parsed() const noexcept { return releasable_ + pending_; }
  void accept_through(std::size_t end, std::size_t messages) noexcept;
  void adapt_read_size(std::size_t n) noexcept;
  void report_received(std::size_t bytes, MessageObserver::Clock::time_point at);
  void remember_arrival(std::size_t messages, MessageObserver::Clock::time_point at);
  void report_released() noexcept;
  [[nodiscard]] std::size_t first_pending_length() noexcept;
  Intent scan_lines();
  Intent scan_frames();
  Intent line_too_long();
  Intent frame_cut_short();
  Intent close_with(std::string_view reply);
  Intent begin_close() noexcept;

  ProtocolConfig config_;  // a copy: 40 bytes, and no lifetime to get wrong
  Buffer buffer_;
  std::size_t releasable_ = 0;     // leading bytes of the buffer that may be sent
  std::size_t pending_ = 0;        // hold mode: bytes of complete messages after those
  std::size_t pending_count_ = 0;  // hold mode: how many messages those bytes are
  std::size_t first_length_ = 0;   // hold mode, lines: the first pending line's length, 0 = unknown
  std::size_t scanned_held_ = 0;   // line mode: held bytes already known to contain no LF
  std::size_t accepted_now_ = 0;   // messages accept_through() took in the current call
  // Hold mode with an observer: when the pending messages arrived, oldest first, one entry
  // per read. A fixed ring, allocated with the first held message of such a session (never per
  // message) so that every other connection carries only the pointer: when it is full a read
  // joins the newest entry and its messages count from that earlier read (their latency is
  // overstated by the gap between the two reads, never understated).
  struct Arrival {
    std::size_t messages = 0;
    MessageObserver::Clock::time_point at;
  };
  static constexpr std::size_t kArrivalSlots = 8;
  std::unique_ptr<std::array<Arrival, kArrivalSlots>> arrivals_;
  std::uint8_t first_arrival_ = 0;
  std::uint8_t arrival_count_ = 0;
  bool closing_ = false;
  std::uint32_t read_size_ = Buffer::kInitialCapacity;  // what input_space(0) asks for
  std::uint32_t offered_ = 0;                           // the room it offered last
  // Why the session closed on a protocol error; protocol_error() words it.
  enum class Fault : std::uint8_t {
    none,
    line_too_long,
    frame_too_long,    // fault_declared_ > max_frame
    header_cut_short,  // fault_got_ of kFrameHeaderSize bytes
    frame_cut_short,   // fault_got_ of fault_declared_ payload bytes
  };
  Fault fault_ = Fault::none;
  std::uint32_t fault_got_ = 0;
  std::uint32_t fault_declared_ = 0;
};

}  // namespace polyecho
