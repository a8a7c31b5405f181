#include "payload.hpp"

#include <algorithm>
#include <cstring>

namespace polyecho::bench {

namespace {

constexpr std::size_t kRotations = 256;

void put_le(std::uint64_t value, std::size_t bytes, char* out) noexcept {
  for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

}  // namespace

Payload::Payload(std::size_t size)
    : size_(std::max(size, kHeaderSize)), pattern_(size_ + kRotations) {
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

void Payload::fill(std::uint32_t conn, std::uint64_t seq, std::size_t offset,
                   std::span<char> out) const noexcept {
  char header[kHeaderSize];
  std::size_t i = 0;
  if (offset < kHeaderSize) {
    put_le(conn, 4, header);
    put_le(seq, 8, header + 4);
    put_le(size_, 4, header + 12);
    i = std::min(out.size(), kHeaderSize - offset);
    std::memcpy(out.data(), header + offset, i);
  }
  if (i < out.size()) {
    std::memcpy(out.data() + i, pattern_.data() + rotation(conn, seq) + offset + i, out.size() - i);
  }
}

bool Payload::matches(std::uint32_t conn, std::uint64_t seq, std::size_t offset,
                      std::span<const char> got) const noexcept {
  std::size_t i = 0;
  if (offset < kHeaderSize) {
    char header[kHeaderSize];
    i = std::min(got.size(), kHeaderSize - offset);
    fill(conn, seq, offset, {header, i});
    if (std::memcmp(got.data(), header, i) != 0) return false;
  }
  if (i == got.size()) return true;
  return std::memcmp(got.data() + i, pattern_.data() + rotation(conn, seq) + offset + i,
                     got.size() - i) == 0;
}

std::size_t fill_stream(const Payload& payload, std::uint32_t conn, StreamCursor from,
                        std::uint64_t end_seq, std::span<char> out) noexcept {
  std::size_t written = 0;
  while (from.seq < end_seq && written < out.size()) {
    const std::size_t n = std::min(out.size() - written, payload.size() - from.offset);
    payload.fill(conn, from.seq, from.offset, out.subspan(written, n));
    written += n;
    from.offset += n;
    if (from.offset == payload.size()) {
      ++from.seq;
      from.offset = 0;
    }
  }
  return written;
}

}  // namespace polyecho::bench
