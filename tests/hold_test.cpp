// Hold mode of the sans-IO protocol: complete messages wait as "pending" until the transport
// has done their work, then leave in order; endings queue behind them.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "polyecho/session.hpp"
#include "support/session_harness.hpp"

namespace polyecho {
namespace {

using Harness = test::SessionHarness;
using test::frame;
using Messages = std::vector<std::string>;

ProtocolConfig held(Mode mode) {
  ProtocolConfig config;
  config.mode = mode;
  config.hold_messages = true;
  return config;
}

std::string pending_text(Session& session) {
  const auto message = session.pending_message();
  return message ? std::string(message->data(), message->size()) : "<none>";
}

TEST(HoldLines, MessagesWaitUntilReleasedThenLeaveInOrder) {
  Harness h{held(Mode::line)};
  h.feed("one\ntwo\r\nthr");
  Session& s = h.session();
  EXPECT_EQ(h.sent(), "") << "nothing leaves before its work";
  EXPECT_FALSE(s.has_output());
  EXPECT_EQ(s.pending_count(), 2u);
  EXPECT_EQ(pending_text(s), "one") << "content only, no LF";
  EXPECT_EQ(pending_text(s), "one") << "asking again does not move on";
  s.release_message();
  h.drain();
  EXPECT_EQ(h.sent(), "one\n");
  EXPECT_EQ(pending_text(s), "two") << "no CRLF either";
  h.feed("ee\n");
  EXPECT_EQ(s.pending_count(), 2u);
  EXPECT_EQ(h.work(), 2u);
  EXPECT_EQ(h.sent(), "one\ntwo\r\nthree\n");
  EXPECT_EQ(h.worked(), (Messages{"two", "three"}));
  EXPECT_EQ(s.pending_message(), std::nullopt);
  EXPECT_EQ(s.pending_count(), 0u);
  s.release_message();  // nothing pending: no effect
  EXPECT_FALSE(s.has_output());
}

TEST(HoldLines, ByteAtATimeKeepsEveryMessageAndItsOrder) {
  ProtocolConfig config = held(Mode::line);
  config.transform = Transform::upper;
  Harness h{config};
  h.work_on_arrival(true);
  h.feed("a\n\nbc\r\ndef\n", 1);
  EXPECT_EQ(h.sent(), "A\n\nBC\r\nDEF\n");
  EXPECT_EQ(h.worked(), (Messages{"A", "", "BC", "DEF"})) << "the work sees the transformed line";
}

TEST(HoldLines, WorkMayRewriteAMessageInPlace) {
  Harness h{held(Mode::line)};
  h.feed("abc\n");
  auto message = h.session().pending_message();
  ASSERT_TRUE(message);
  std::memcpy(message->data(), "xyz", 3);
  h.work();
  EXPECT_EQ(h.sent(), "xyz\n");
}

TEST(HoldLines, QuitReplyWaitsBehindPendingMessages) {
  Harness h{held(Mode::line)};
  h.feed("x\ny\nquit\nignored\n");
  Session& s = h.session();
  EXPECT_TRUE(s.closing());
  EXPECT_FALSE(s.finished());
  EXPECT_EQ(h.sent(), "") << "bye must not overtake x and y";
  EXPECT_EQ(s.pending_count(), 2u);
  s.release_message();
  h.drain();
  EXPECT_EQ(h.sent(), "x\n");
  s.release_message();
  h.drain();
  EXPECT_EQ(h.sent(), "x\ny\nbye\n");
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.protocol_error(), "") << "quitting is no error";
}

TEST(HoldLines, TooLongReplyWaitsBehindPendingMessages) {
  ProtocolConfig config = held(Mode::line);
  config.max_line = 4;
  Harness h{config};
  h.feed("ok\nfine\n12345");  // detected before its LF
  EXPECT_TRUE(h.session().closing());
  EXPECT_EQ(h.sent(), "");
  EXPECT_EQ(h.work(), 2u);
  EXPECT_EQ(h.sent(), "ok\nfine\nerror: line too long (max 4 bytes)\n");
  EXPECT_TRUE(h.session().finished());
  EXPECT_EQ(h.session().protocol_error(), "line too long (max 4 bytes)");
}

TEST(HoldLines, EofKeepsPendingMessagesAndTheLastLineJoinsThem) {
  Harness h{held(Mode::line)};
  h.feed("first\nlast words");
  h.eof();
  Session& s = h.session();
  EXPECT_TRUE(s.closing());
  EXPECT_FALSE(s.finished()) << "pending work is still owed";
  EXPECT_EQ(s.pending_count(), 2u);
  EXPECT_EQ(h.work(), 2u);
  EXPECT_EQ(h.worked(), (Messages{"first", "last words"}));
  EXPECT_EQ(h.sent(), "first\nlast words");
  EXPECT_TRUE(s.finished());
}

TEST(HoldLines, EofWithAQuitLastLineSaysByeAfterThePendingOnes) {
  Harness h{held(Mode::line)};
  h.feed("one\nq");
  h.eof();
  EXPECT_EQ(h.work(), 1u);
  EXPECT_EQ(h.sent(), "one\nbye\n");
  EXPECT_TRUE(h.session().finished());
}

TEST(HoldLines, PendingMessagesFillTheBufferAndStopInput) {
  ProtocolConfig config = held(Mode::line);
  config.max_buffer = 1024;
  config.max_line = 100;
  Session session{config};
  std::size_t taken = 0;
  for (auto space = session.input_space(); !space.empty(); space = session.input_space()) {
    std::memset(space.data(), '\n', space.size());
    session.on_received(space.size());
    taken += space.size();
  }
  EXPECT_EQ(taken, 1024u);
  EXPECT_EQ(session.pending_count(), 1024u);
  EXPECT_FALSE(session.wants_input()) << "backpressure counts held messages";
  EXPECT_FALSE(session.has_output());
  session.release_message();
  session.on_sent(session.output().size());
  EXPECT_TRUE(session.wants_input());
}

TEST(HoldLines, OffByDefaultSoLinesLeaveAtOnce) {
  ProtocolConfig config;
  config.mode = Mode::line;
  Harness h{config};
  h.feed("a\nb\n");
  EXPECT_EQ(h.sent(), "a\nb\n");
  EXPECT_EQ(h.session().pending_count(), 0u);
  EXPECT_EQ(h.session().pending_message(), std::nullopt);
}

TEST(HoldRaw, RawModeHasNoMessagesToHold) {
  Harness h{held(Mode::raw)};
  h.feed("any bytes\n");
  EXPECT_EQ(h.sent(), "any bytes\n");
  EXPECT_EQ(h.session().pending_message(), std::nullopt);
}

TEST(HoldFrames, PayloadPendingUntilReleasedThenWholeFrameLeaves) {
  Harness h{held(Mode::frame)};
  const std::string input = frame("alpha") + frame("") + frame("gamma");
  h.feed(input + frame("incomplete").substr(0, 6));
  Session& s = h.session();
  EXPECT_EQ(h.sent(), "");
  EXPECT_EQ(s.pending_count(), 3u);
  EXPECT_EQ(pending_text(s), "alpha") << "the payload, without its header";
  s.release_message();
  EXPECT_EQ(pending_text(s), "") << "a zero-length frame is still a message";
  EXPECT_EQ(h.work(), 2u);
  EXPECT_EQ(h.worked(), (Messages{"", "gamma"}));
  EXPECT_EQ(h.sent(), input);
}

TEST(HoldFrames, ByteAtATimeKeepsEveryFrameAndItsOrder) {
  Harness h{held(Mode::frame)};
  h.work_on_arrival(true);
  const std::string input = frame("a") + frame("") + frame(std::string(300, 'b')) + frame("c");
  h.feed(input, 1);
  EXPECT_EQ(h.sent(), input);
  EXPECT_EQ(h.worked(), (Messages{"a", "", std::string(300, 'b'), "c"}));
}

TEST(HoldFrames, TooLongFrameClosesAfterThePendingOnesWithNothingAdded) {
  ProtocolConfig config = held(Mode::frame);
  config.max_frame = 8;
  Harness h{config};
  h.feed(frame("one") + frame("two") + frame("123456789") + frame("after"));
  Session& s = h.session();
  EXPECT_TRUE(s.closing());
  EXPECT_FALSE(s.finished());
  EXPECT_EQ(s.protocol_error(), "frame too long (9 > max 8 bytes)");
  EXPECT_EQ(h.work(), 2u);
  EXPECT_EQ(h.sent(), frame("one") + frame("two"));
  EXPECT_TRUE(s.finished());
}

TEST(HoldFrames, EofKeepsPendingFramesAndDropsThePartialOne) {
  Harness h{held(Mode::frame)};
  h.feed(frame("kept") + frame("cut").substr(0, 5));
  h.eof();
  Session& s = h.session();
  EXPECT_TRUE(s.closing());
  EXPECT_EQ(s.pending_count(), 1u);
  EXPECT_FALSE(s.finished());
  EXPECT_EQ(h.work(), 1u);
  EXPECT_EQ(h.sent(), frame("kept"));
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.protocol_error(), "frame cut short by EOF (1 of 3 payload bytes)");
}

TEST(HoldFrames, ReleasedOutputAndNewInputInterleave) {
  Harness h{held(Mode::frame)};
  h.feed(frame("1") + frame("2"));
  h.session().release_message();
  h.drain();
  h.feed(frame("3"));
  EXPECT_EQ(h.session().pending_count(), 2u);
  EXPECT_EQ(h.work(), 2u);
  EXPECT_EQ(h.worked(), (Messages{"2", "3"}));
  EXPECT_EQ(h.sent(), frame("1") + frame("2") + frame("3"));
}

}  // namespace
}  // namespace polyecho
