// Payload generation and streaming verification of the bench: what is sent can be checked in
// any chunking, and any wrong byte, message or connection is caught.
#include "bench/payload.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace polyecho::bench {
namespace {

std::string message(const Payload& payload, std::uint32_t conn, std::uint64_t seq) {
  std::string bytes(payload.wire_size(), '\0');
  payload.fill(conn, seq, 0, {bytes.data(), bytes.size()});
  return bytes;
}

TEST(Payload, CarriesConnectionSequenceAndSizeInItsHeader) {
  const Payload payload(64);
  const std::string m = message(payload, 0x01020304, 0x0a0b0c0d0e0f1011);
  EXPECT_EQ(m.substr(0, 4), std::string("\x04\x03\x02\x01", 4));
  EXPECT_EQ(m.substr(4, 8), std::string("\x11\x10\x0f\x0e\x0d\x0c\x0b\x0a", 8));
  EXPECT_EQ(m.substr(12, 4), std::string("\x40\x00\x00\x00", 4));
}

TEST(Payload, PartialFillsMatchTheWholeMessage) {
  const Payload payload(100);
  const std::string whole = message(payload, 5, 9);
  for (std::size_t offset = 0; offset < whole.size(); offset += 7) {
    const std::size_t n = std::min<std::size_t>(13, whole.size() - offset);
    std::string part(n, '\0');
    payload.fill(5, 9, offset, {part.data(), n});
    EXPECT_EQ(part, whole.substr(offset, n)) << "offset " << offset;
    EXPECT_TRUE(payload.matches(5, 9, offset, {part.data(), n}));
  }
}

TEST(Payload, FramedIsTheSameMessageAfterItsBigEndianLength) {
  const Payload framed(300, true);
  EXPECT_EQ(framed.size(), 300u);
  EXPECT_EQ(framed.wire_size(), 304u);
  const std::string wire = message(framed, 7, 11);
  EXPECT_EQ(wire.substr(0, 4), std::string("\x00\x00\x01\x2c", 4));
  EXPECT_EQ(wire.substr(4), message(Payload(300), 7, 11));
  for (std::size_t offset = 0; offset < wire.size(); offset += 3) {
    const std::size_t n = std::min<std::size_t>(5, wire.size() - offset);
    EXPECT_TRUE(framed.matches(7, 11, offset, {wire.data() + offset, n})) << "offset " << offset;
  }
}

TEST(Payload, AnyFlippedByteIsDetected) {
  for (const bool framed : {false, true}) {
    const Payload payload(64, framed);
    const std::string good = message(payload, 3, 42);
    for (std::size_t i = 0; i < good.size(); ++i) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      EXPECT_FALSE(payload.matches(3, 42, 0, {bad.data(), bad.size()}))
          << "byte " << i << (framed ? " framed" : "");
    }
  }
}

TEST(Payload, AnotherConnectionsOrMessagesBytesDoNotMatch) {
  const Payload payload(4096);
  const std::string m = message(payload, 3, 42);
  EXPECT_TRUE(payload.matches(3, 42, 0, {m.data(), m.size()}));
  EXPECT_FALSE(payload.matches(4, 42, 0, {m.data(), m.size()}));
  EXPECT_FALSE(payload.matches(3, 43, 0, {m.data(), m.size()}));
  // The body alone differs too, so a chunk that starts after the header is still checked.
  EXPECT_FALSE(payload.matches(3, 43, 16, {m.data() + 16, m.size() - 16}));
  EXPECT_FALSE(payload.matches(4, 42, 16, {m.data() + 16, m.size() - 16}));
}

// Sends a stream of messages through fill_stream/advance in one chunking and checks it with
// verify_stream in another, as a socket would split it.
// Framed or not: the frame header is part of each message's wire bytes.
class PayloadStream : public ::testing::TestWithParam<bool> {};

TEST_P(PayloadStream, RoundTripsInAnyChunking) {
  const Payload payload(37, GetParam());
  constexpr std::uint64_t kMessages = 50;
  std::string wire;
  StreamCursor sent;
  std::vector<std::uint64_t> started;
  char scratch[23];
  while (sent.seq < kMessages) {
    const std::size_t n = fill_stream(payload, 8, sent, kMessages, scratch);
    const std::size_t taken = std::max<std::size_t>(1, n / 2);  // a partial send
    wire.append(scratch, taken);
    advance(payload, sent, taken, [&](std::uint64_t seq) { started.push_back(seq); });
  }
  ASSERT_EQ(wire.size(), kMessages * payload.wire_size());
  ASSERT_EQ(started.size(), kMessages);
  for (std::size_t chunk : {1u, 5u, 37u, 64u, 1000u}) {
    StreamCursor at;
    std::vector<std::uint64_t> done;
    for (std::size_t i = 0; i < wire.size(); i += chunk) {
      const std::size_t n = std::min(chunk, wire.size() - i);
      ASSERT_TRUE(verify_stream(payload, 8, at, {wire.data() + i, n},
                                [&](std::uint64_t s) { done.push_back(s); }));
    }
    EXPECT_EQ(done.size(), kMessages) << "chunk " << chunk;
    EXPECT_EQ(at.seq, kMessages);
    EXPECT_EQ(at.offset, 0u);
  }
  std::string corrupted = wire;
  corrupted[20 * payload.wire_size() + 30] ^= 0x40;
  StreamCursor at;
  std::uint64_t completed = 0;
  EXPECT_FALSE(verify_stream(payload, 8, at, {corrupted.data(), corrupted.size()},
                             [&](std::uint64_t) { ++completed; }));
  EXPECT_EQ(completed, 20u);
  // Two messages swapped: each header names the wrong sequence number.
  std::string swapped =
      wire.substr(payload.wire_size(), payload.wire_size()) + wire.substr(0, payload.wire_size());
  StreamCursor from_start;
  EXPECT_FALSE(verify_stream(payload, 8, from_start, {swapped.data(), swapped.size()},
                             [](std::uint64_t) {}));
}

INSTANTIATE_TEST_SUITE_P(Payload, PayloadStream, ::testing::Values(false, true),
                         [](const auto& param_info) {
                           return param_info.param ? "framed" : "bare";
                         });

}  // namespace
}  // namespace polyecho::bench
