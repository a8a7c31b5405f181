#include "payload.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "polyecho/protocol.hpp"

namespace polyecho::bench {

namespace {

constexpr std::size_t kRotations = 256;

// Little-endian on the wire whatever the host: one store each on x86 and arm64.
template <typename T>
void put_le(T value, char* out) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out, &value, sizeof value);
  } else {
    for (std::size_t i = 0; i < sizeof value; ++i) out[i] = static_cast<char>(value >> (8 * i));
  }
}

}  // namespace

Payload::Payload(std::size_t size, bool framed)
    : size_(std::max(size, kHeaderSize)),
      prefix_(framed ? kFrameHeaderSize : 0),
      pattern_(size_ + kRotations) {
  // A fixed xorshift sequence: the same bytes in every run, no visible period in a message.
  std::uint32_t state = 0x9e3779b9u;
  for (char& c : pattern_) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    c = static_cast<char>(state >> 24);
  }
}

std::size_t Payload::rotation(std::uint32_t conn, std::uint64_t seq) noexcept {
  return static_cast<std::size_t>((std::uint64_t{conn} * 37u + seq * 11u) % kRotations);
}

// The frame header (when framed) and the message header of (conn, seq): head_size() bytes.
// A handful of stores, because it runs once per message on both sides of a streaming run.
void Payload::write_head(std::uint32_t conn, std::uint64_t seq, char* out) const noexcept {
  if (prefix_ > 0) {
    write_frame_header(static_cast<std::uint32_t>(size_),
                       std::span<char, kFrameHeaderSize>(out, kFrameHeaderSize));
  }
  put_le(conn, out + prefix_);
  put_le(seq, out + prefix_ + 4);
  put_le(static_cast<std::uint32_t>(size_), out + prefix_ + 12);
}

// Wire offsets [0, head_size()) are the frame header (when framed) and the message header;
// from there on the wire carries the pattern, rotated per message.
void Payload::fill(std::uint32_t conn, std::uint64_t seq, std::size_t offset,
                   std::span<char> out) const noexcept {
  const std::size_t head_size = prefix_ + kHeaderSize;
  std::size_t i = 0;
  if (offset == 0 && out.size() >= head_size) {
    write_head(conn, seq, out.data());  // the common case: straight into place
    i = head_size;
  } else if (offset < head_size) {
    char head[kFrameHeaderSize + kHeaderSize];
    write_head(conn, seq, head);
    i = std::min(out.size(), head_size - offset);
    std::memcpy(out.data(), head + offset, i);
  }
  if (i < out.size()) {
    std::memcpy(out.data() + i, pattern_.data() + rotation(conn, seq) + offset + i - prefix_,
                out.size() - i);
  }
}

bool Payload::matches(std::uint32_t conn, std::uint64_t seq, std::size_t offset,
                      std::span<const char> got) const noexcept {
  const std::size_t head_size = prefix_ + kHeaderSize;
  std::size_t i = 0;
  if (offset < head_size) {
    char head[kFrameHeaderSize + kHeaderSize];
    write_head(conn, seq, head);
    i = std::min(got.size(), head_size - offset);
    if (std::memcmp(got.data(), head + offset, i) != 0) return false;
  }
  if (i == got.size()) return true;
  return std::memcmp(got.data() + i, pattern_.data() + rotation(conn, seq) + offset + i - prefix_,
                     got.size() - i) == 0;
}

std::size_t fill_stream(const Payload& payload, std::uint32_t conn, StreamCursor from,
                        std::uint64_t end_seq, std::span<char> out) noexcept {
  std::size_t written = 0;
  while (from.seq < end_seq && written < out.size()) {
    const std::size_t n = std::min(out.size() - written, payload.wire_size() - from.offset);
    payload.fill(conn, from.seq, from.offset, out.subspan(written, n));
    written += n;
    from.offset += n;
    if (from.offset == payload.wire_size()) {
      ++from.seq;
      from.offset = 0;
    }
  }
  return written;
}

}  // namespace polyecho::bench
