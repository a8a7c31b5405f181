// Frame mode of the sans-IO protocol: length-prefixed binary messages, echoed whole.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "polyecho/session.hpp"
#include "support/session_harness.hpp"

namespace polyecho {
namespace {

using Harness = test::SessionHarness;
using test::frame;

ProtocolConfig frame_mode(std::size_t max_frame = std::size_t{1024} * 1024) {
  ProtocolConfig config;
  config.mode = Mode::frame;
  config.max_frame = max_frame;
  return config;
}

// Binary payload with NULs, LFs and high bytes, which frame mode must not care about.
std::string binary(std::size_t n, unsigned seed) {
  std::string bytes(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    bytes[i] = static_cast<char>((i * 131 + std::size_t{seed} * 7) % 256);
  return bytes;
}

TEST(FrameHeader, IsBigEndianAndRoundTrips) {
  char header[kFrameHeaderSize];
  write_frame_header(0x01020304u, header);
  EXPECT_EQ(std::string(header, 4), std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ(read_frame_length(header), 0x01020304u);
  write_frame_header(0xfffffffeu, header);
  EXPECT_EQ(read_frame_length(header), 0xfffffffeu);
}

TEST(FrameProtocol, NamesParseAndPrint) {
  EXPECT_EQ(parse_mode("frame"), Mode::frame);
  EXPECT_EQ(to_string(Mode::frame), "frame");
  EXPECT_EQ(ProtocolConfig{}.max_frame, 1048576u);
}

TEST(FrameProtocol, EchoesManyFramesFromOneReadUnchanged) {
  Harness h{frame_mode()};
  const std::string input =
      frame("one") + frame(binary(300, 1)) + frame("\n\r\0x") + frame("quit") + frame("last");
  h.feed(input);
  EXPECT_EQ(h.sent(), input);
  EXPECT_FALSE(h.session().closing()) << "quit means nothing to frame mode";
}

TEST(FrameProtocol, EchoesFromTheReadBufferWithoutCopy) {
  Session session{frame_mode()};
  const std::string input = frame("abc");
  auto space = session.input_space();
  std::memcpy(space.data(), input.data(), input.size());
  session.on_received(input.size());
  EXPECT_EQ(session.output().data(), space.data()) << "output must point into the read buffer";
  EXPECT_EQ(session.output().size(), input.size());
}

TEST(FrameProtocol, SplitHeadersByteAtATime) {
  const std::string input = frame("alpha") + frame("") + frame(binary(70, 2));
  Harness h{frame_mode()};
  h.feed(input, 1);
  EXPECT_EQ(h.sent(), input);
}

TEST(FrameProtocol, SameResultForEverySplitPoint) {
  const std::string input = frame("ab") + frame("") + frame(binary(9, 3));
  for (std::size_t split = 0; split <= input.size(); ++split) {
    Harness h{frame_mode()};
    h.feed(std::string_view(input).substr(0, split));
    h.feed(std::string_view(input).substr(split));
    EXPECT_EQ(h.sent(), input) << "split at " << split;
  }
}

TEST(FrameProtocol, HoldsAnIncompleteFrameUntilItsLastByte) {
  Harness h{frame_mode()};
  const std::string whole = frame("payload");
  h.feed(whole.substr(0, 2));
  EXPECT_EQ(h.sent(), "") << "half a header";
  h.feed(whole.substr(2, 6));
  EXPECT_EQ(h.sent(), "") << "a header and part of the payload";
  h.feed(whole.substr(8));
  EXPECT_EQ(h.sent(), whole);
}

TEST(FrameProtocol, ZeroLengthFrameIsEchoedAsItsHeader) {
  Harness h{frame_mode()};
  h.feed(frame(""));
  EXPECT_EQ(h.sent(), std::string(4, '\0'));
  h.feed(frame("") + frame("x") + frame(""));
  EXPECT_EQ(h.sent(), frame("") + frame("") + frame("x") + frame(""));
}

TEST(FrameProtocol, FrameAtTheLimitPassesAndOneMoreCloses) {
  Harness at_limit{frame_mode(8)};
  at_limit.feed(frame("12345678") + frame("12345678"));
  EXPECT_EQ(at_limit.sent(), frame("12345678") + frame("12345678"));
  EXPECT_FALSE(at_limit.session().closing());
  EXPECT_EQ(at_limit.session().protocol_error(), "");

  Harness over{frame_mode(8)};
  const std::string before = frame("ok") + frame("");
  over.feed(before + frame("123456789") + frame("next"));
  EXPECT_EQ(over.sent(), before) << "the frames before it, and nothing else";
  EXPECT_TRUE(over.session().finished());
  EXPECT_EQ(over.session().protocol_error(), "frame too long (9 > max 8 bytes)");
}

TEST(FrameProtocol, OverlongFrameRefusedAsSoonAsItsHeaderArrives) {
  Session session{frame_mode()};
  const std::string header = frame(std::string(1024 * 1024 + 1, 'z')).substr(0, 4);
  auto space = session.input_space();
  std::memcpy(space.data(), header.data(), header.size());
  EXPECT_EQ(session.on_received(header.size()), Intent::close_after_flush);
  EXPECT_TRUE(session.finished()) << "nothing owed: the bad frame is not echoed";
  EXPECT_TRUE(session.input_space().empty());
  EXPECT_EQ(session.protocol_error(), "frame too long (1048577 > max 1048576 bytes)");
}

TEST(FrameProtocol, LargestFrameAcrossManyReadsFitsWhateverTheBufferCap) {
  ProtocolConfig config = frame_mode();
  config.max_buffer =
      std::size_t{64} * 1024;  // smaller than one maximal frame: the cap must grow to fit it
  Harness h{config};
  EXPECT_GE(h.session().buffer_cap(), config.max_frame + kFrameHeaderSize);
  const std::string big = frame(binary(config.max_frame, 4));
  h.feed(big, 60000);
  EXPECT_EQ(h.sent().size(), big.size());
  EXPECT_TRUE(h.sent() == big);
  EXPECT_FALSE(h.session().closing());
}

TEST(FrameProtocol, BackpressureStopsInputAtTheCapAndReleasesWholeFrames) {
  ProtocolConfig config = frame_mode(1000);
  config.max_buffer = 4096;
  Session session{config};
  const std::string one = frame(binary(96, 5));  // 100 bytes on the wire
  std::string stream;
  while (stream.size() < 8192) stream += one;
  std::size_t taken = 0;
  for (auto space = session.input_space(); !space.empty(); space = session.input_space()) {
    const std::size_t n = std::min(space.size(), stream.size() - taken);
    std::memcpy(space.data(), stream.data() + taken, n);
    session.on_received(n);
    taken += n;
  }
  EXPECT_EQ(taken, 4096u);
  EXPECT_FALSE(session.wants_input());
  EXPECT_EQ(session.output().size(), 4000u) << "40 whole frames; the 41st is incomplete";
  session.on_sent(1000);
  EXPECT_TRUE(session.wants_input());
}

TEST(FrameProtocol, TransformNeverTouchesFrames) {
  ProtocolConfig config = frame_mode();
  config.transform = Transform::upper;
  Harness h{config};
  h.feed(frame("lower case"));
  EXPECT_EQ(h.sent(), frame("lower case"));
}

TEST(FrameProtocol, EofAtAFrameBoundaryIsClean) {
  Harness h{frame_mode()};
  h.feed(frame("a") + frame("b"));
  h.eof();
  EXPECT_EQ(h.sent(), frame("a") + frame("b"));
  EXPECT_TRUE(h.session().finished());
  EXPECT_EQ(h.session().protocol_error(), "");
}

TEST(FrameProtocol, EofInsideAHeaderDropsThePartialHeader) {
  Harness h{frame_mode()};
  h.feed(frame("a") + std::string("\0\0", 2));
  h.eof();
  EXPECT_EQ(h.sent(), frame("a"));
  EXPECT_TRUE(h.session().finished());
  EXPECT_EQ(h.session().protocol_error(), "frame header cut short by EOF (2 of 4 bytes)");
}

TEST(FrameProtocol, EofInsideAPayloadDropsTheWholePartialFrame) {
  Harness h{frame_mode()};
  h.feed(frame("a") + frame("complete me").substr(0, 7));
  h.eof();
  EXPECT_EQ(h.sent(), frame("a"));
  EXPECT_TRUE(h.session().finished());
  EXPECT_EQ(h.session().protocol_error(), "frame cut short by EOF (3 of 11 payload bytes)");
}

}  // namespace
}  // namespace polyecho
