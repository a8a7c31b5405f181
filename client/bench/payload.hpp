#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace polyecho::bench {

// The bytes the bench sends, and how it checks what comes back, without keeping a copy.
//
// Message `seq` of connection `conn` is fully determined by (conn, seq, size):
//   [0, 4)   conn, little-endian
//   [4, 12)  seq, little-endian
//   [12, 16) size, little-endian
//   [16, size) a pseudo-random pattern, rotated by a function of (conn, seq)
// so a byte echoed from another connection, from another message, out of order, or flipped
// compares unequal. Because any byte can be regenerated from its position, neither side of a
// connection buffers what it sent: the sender fills a scratch buffer on demand and the
// receiver compares each chunk as it arrives (memcmp against the pattern table).
//
// Framed (`bench --frame`), each message travels as one frame: its 4-byte big-endian length
// (the message size), then the message. The length prefix is part of the wire bytes that
// fill() writes and matches() checks, so an echo that mangles the framing fails the same way.
class Payload {
 public:
  static constexpr std::size_t kHeaderSize = 16;

  // `size` >= kHeaderSize. Builds the pattern table once (size + 256 bytes).
  explicit Payload(std::size_t size, bool framed = false);

  // The message: what --size counts.
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  // The message as it travels: with its frame header when framed.
  [[nodiscard]] std::size_t wire_size() const noexcept { return prefix_ + size_; }
  // Bytes [offset, offset + out.size()) of message (conn, seq) on the wire; the range must fit
  // wire_size().
  void fill(std::uint32_t conn, std::uint64_t seq, std::size_t offset,
            std::span<char> out) const noexcept;
  // True when `got` equals bytes [offset, offset + got.size()) of message (conn, seq) on the
  // wire.
  [[nodiscard]] bool matches(std::uint32_t conn, std::uint64_t seq, std::size_t offset,
                             std::span<const char> got) const noexcept;

 private:
  void write_head(std::uint32_t conn, std::uint64_t seq, char* out) const noexcept;
  [[nodiscard]] static std::size_t rotation(std::uint32_t conn, std::uint64_t seq) noexcept;

  std::size_t size_;
  std::size_t prefix_;  // frame header bytes before the message: 0, or 4 when framed
  std::vector<char> pattern_;
};

// A position in a connection's endless stream of messages.
struct StreamCursor {
  std::uint64_t seq = 0;   // message number
  std::size_t offset = 0;  // byte within that message on the wire (frame header included)
};

// Fills `out` with the stream's bytes from `from` up to (not including) message `end_seq`.
// Returns how many bytes it wrote. `from` is not moved: call advance() with what was sent.
std::size_t fill_stream(const Payload& payload, std::uint32_t conn, StreamCursor from,
                        std::uint64_t end_seq, std::span<char> out) noexcept;

// Checks `got` against the stream at `at` and moves `at` past it. Returns false at the first
// mismatch (then `at` is unspecified). `on_complete(seq)` runs for every message finished.
// `scratch` is room to regenerate the expected bytes in: one memcmp per scratch-full instead of
// two per message, which made verification half of a streaming client's CPU time.
template <typename OnComplete>
bool verify_stream(const Payload& payload, std::uint32_t conn, StreamCursor& at,
                   std::span<const char> got, std::span<char> scratch, OnComplete&& on_complete) {
  const std::size_t wire = payload.wire_size();
  const auto pass = [&](std::size_t bytes) {
    for (std::size_t left = bytes; left > 0;) {
      const std::size_t step = std::min(left, wire - at.offset);
      at.offset += step;
      left -= step;
      if (at.offset == wire) {
        on_complete(at.seq);
        ++at.seq;
        at.offset = 0;
      }
    }
  };
  while (!got.empty()) {
    const std::size_t n = std::min(got.size(), scratch.size());
    fill_stream(payload, conn, at, UINT64_MAX, scratch.first(n));
    if (std::memcmp(got.data(), scratch.data(), n) != 0) {
      // The messages before the first wrong byte still arrived intact.
      pass(static_cast<std::size_t>(
          std::mismatch(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n), scratch.begin())
              .first -
          got.begin()));
      return false;
    }
    got = got.subspan(n);
    pass(n);
  }
  return true;
}

// The same with a scratch of its own on the stack, for callers that check little at a time.
template <typename OnComplete>
bool verify_stream(const Payload& payload, std::uint32_t conn, StreamCursor& at,
                   std::span<const char> got, OnComplete&& on_complete) {
  std::array<char, 4096> scratch;
  return verify_stream(payload, conn, at, got, scratch, std::forward<OnComplete>(on_complete));
}

// Moves `at` forward by `bytes`. `on_start(seq)` runs for every message whose first byte is
// among them (the bench stamps its send time there).
template <typename OnStart>
void advance(const Payload& payload, StreamCursor& at, std::size_t bytes, OnStart&& on_start) {
  while (bytes > 0) {
    if (at.offset == 0) on_start(at.seq);
    const std::size_t n = std::min(bytes, payload.wire_size() - at.offset);
    at.offset += n;
    bytes -= n;
    if (at.offset == payload.wire_size()) {
      ++at.seq;
      at.offset = 0;
    }
  }
}

}  // namespace polyecho::bench
