// The sans-IO protocol, tested without any socket: bytes in, bytes and intent out.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "polyecho/session.hpp"
#include "support/session_harness.hpp"

namespace polyecho {
namespace {

using Harness = test::SessionHarness;

ProtocolConfig line_mode(std::size_t max_line = 65536, Transform transform = Transform::none) {
  ProtocolConfig config;
  config.mode = Mode::line;
  config.max_line = max_line;
  config.transform = transform;
  return config;
}

TEST(RawProtocol, EchoesBinaryBytesUnchanged) {
  Harness h{ProtocolConfig{}};
  std::string bytes;
  for (int i = 0; i < 256 * 8; ++i) bytes += static_cast<char>(i);
  h.feed(bytes);
  EXPECT_EQ(h.sent(), bytes);
  EXPECT_FALSE(h.session().closing());
}

TEST(RawProtocol, EchoesFromTheReadBufferWithoutCopy) {
  Session session{ProtocolConfig{}};
  auto space = session.input_space();
  std::memcpy(space.data(), "abc", 3);
  session.on_received(3);
  EXPECT_EQ(session.output().data(), space.data()) << "output must point into the read buffer";
}

TEST(RawProtocol, HalfCloseFlushesThenFinishes) {
  Session session{ProtocolConfig{}};
  auto space = session.input_space();
  std::memcpy(space.data(), "tail", 4);
  session.on_received(4);
  EXPECT_EQ(session.on_peer_eof(), Intent::close_after_flush);
  EXPECT_TRUE(session.closing());
  EXPECT_FALSE(session.finished()) << "four bytes are still owed";
  EXPECT_EQ(std::string(session.output().data(), session.output().size()), "tail");
  session.on_sent(4);
  EXPECT_TRUE(session.finished());
}

TEST(RawProtocol, BackpressureStopsInputAtTheCap) {
  ProtocolConfig config;
  config.max_buffer = 4096;
  Session session{config};
  std::size_t taken = 0;
  for (auto space = session.input_space(); !space.empty(); space = session.input_space()) {
    session.on_received(space.size());
    taken += space.size();
  }
  EXPECT_EQ(taken, 4096u);
  EXPECT_FALSE(session.wants_input());
  session.on_sent(1000);
  EXPECT_TRUE(session.wants_input());
}

// A connection that owes nothing holds no buffer, so thousands of idle ones cost little.
TEST(RawProtocol, AFlushedSessionHoldsNoBuffer) {
  Harness h{ProtocolConfig{}};
  h.feed("ping");
  EXPECT_EQ(h.sent(), "ping");
  EXPECT_EQ(h.session().buffer_allocated(), 0u) << "given back once the echo left";
  h.feed("pong");
  EXPECT_EQ(h.sent(), "pingpong") << "and a pooled one taken for the next read";
  EXPECT_EQ(h.session().buffer_allocated(), 0u);
}

TEST(LineProtocol, AHeldIncompleteLineKeepsItsBufferWhileParked) {
  Harness h{line_mode()};
  h.feed("no end yet");
  h.session().park();
  EXPECT_GT(h.session().buffer_allocated(), 0u) << "the held bytes are owed";
  h.feed("\n");
  EXPECT_EQ(h.sent(), "no end yet\n");
  EXPECT_EQ(h.session().buffer_allocated(), 0u);
  Session idle{ProtocolConfig{}};
  (void)idle.input_space();  // a read that will say EAGAIN
  EXPECT_GT(idle.buffer_allocated(), 0u);
  idle.park();
  EXPECT_EQ(idle.buffer_allocated(), 0u) << "nothing buffered: parked without memory";
}

// uring reads a raw stream straight into the Session's tail while a send is in flight
// (uring_connection.cpp): on_sent_in_place() keeps the buffer where it is, so the bytes read
// meanwhile follow what is buffered.
TEST(RawProtocol, SentInPlaceKeepsTheTailForAReadInFlight) {
  Session s{ProtocolConfig{}};
  const auto first = s.input_space();
  std::memcpy(first.data(), "abc", 3);
  s.on_received(3);
  ASSERT_EQ(std::string(s.output().data(), s.output().size()), "abc");
  const auto reading = s.input_space_in_place(0);  // armed while "abc" is being sent
  s.on_sent_in_place(3);
  EXPECT_FALSE(s.has_output());
  EXPECT_GT(s.buffer_allocated(), 0u) << "the read in flight still writes into it";
  std::memcpy(reading.data(), "de", 2);
  s.on_received(2);
  EXPECT_EQ(std::string(s.output().data(), s.output().size()), "de");
  s.on_sent(2);
  EXPECT_EQ(s.buffer_allocated(), 0u);
}

// Only raw mode leaves its buffer to the transport: line and frame modes may write a closing
// reply into it, and holding messages for work keeps bytes the transport must not pass on.
TEST(Protocol, OnlyRawModeWithoutHeldMessagesLeavesTheTailToTheTransport) {
  EXPECT_TRUE(Session{ProtocolConfig{}}.tail_is_transports());
  EXPECT_FALSE(Session{line_mode()}.tail_is_transports());
  ProtocolConfig frames;
  frames.mode = Mode::frame;
  EXPECT_FALSE(Session{frames}.tail_is_transports());
  ProtocolConfig held;
  held.hold_messages = true;
  EXPECT_FALSE(Session{held}.tail_is_transports());
}

// Reads that fill all they are offered are a stream: the session offers more, up to
// kBulkRead, so a stream costs fewer syscalls per byte; small reads bring it back down.
TEST(RawProtocol, TheReadSizeFollowsTheTraffic) {
  Session s{ProtocolConfig{}};
  const auto fill = [&s] {
    const auto space = s.input_space();
    std::memset(space.data(), 'x', space.size());
    s.on_received(space.size());
    const std::size_t offered = space.size();
    s.on_sent(s.output().size());
    return offered;
  };
  EXPECT_EQ(fill(), Buffer::kInitialCapacity);
  EXPECT_EQ(fill(), Session::kBulkRead);
  EXPECT_EQ(fill(), Session::kBulkRead) << "never beyond kBulkRead";
  auto space = s.input_space();
  space[0] = 'y';
  s.on_received(1);
  s.on_sent(1);
  EXPECT_EQ(s.input_space().size(), Buffer::kInitialCapacity);
}

TEST(LineProtocol, EchoesManyLinesFromOneRead) {
  Harness h{line_mode()};
  h.feed("one\ntwo\r\nthree\n");
  EXPECT_EQ(h.sent(), "one\ntwo\r\nthree\n");
}

TEST(LineProtocol, SameResultForEverySplitPoint) {
  const std::string input = "alpha\r\nbeta\n\ngamma delta\nquit\nafter\n";
  const std::string expected = "alpha\r\nbeta\n\ngamma delta\nbye\n";
  for (std::size_t split = 0; split <= input.size(); ++split) {
    Harness h{line_mode()};
    h.feed(std::string_view(input).substr(0, split));
    h.feed(std::string_view(input).substr(split));
    EXPECT_EQ(h.sent(), expected) << "split at " << split;
    EXPECT_TRUE(h.session().finished());
  }
}

TEST(LineProtocol, ByteAtATime) {
  Harness h{line_mode(65536, Transform::upper)};
  h.feed("mixed Case\nline two\n", 1);
  EXPECT_EQ(h.sent(), "MIXED CASE\nLINE TWO\n");
}

TEST(LineProtocol, HoldsAnIncompleteLineUntilItsLf) {
  Harness h{line_mode()};
  h.feed("partial");
  EXPECT_EQ(h.sent(), "");
  h.feed(" line\n");
  EXPECT_EQ(h.sent(), "partial line\n");
}

TEST(LineProtocol, QuitInAnyCaseSaysBye) {
  for (const char* quit : {"quit\n", "QUIT\n", "q\n", "Q\r\n", "qUiT\r\n"}) {
    Harness h{line_mode()};
    h.feed(std::string("hello\n") + quit + "more\n");
    EXPECT_EQ(h.sent(), "hello\nbye\n") << quit;
    EXPECT_TRUE(h.session().finished());
  }
  Harness not_quit{line_mode()};
  not_quit.feed("quitter\nq uit\n");
  EXPECT_EQ(not_quit.sent(), "quitter\nq uit\n");
}

TEST(LineProtocol, LineAtTheLimitPassesAndOneMoreFails) {
  Harness at_limit{line_mode(8)};
  at_limit.feed("12345678\r\n12345678\n");
  EXPECT_EQ(at_limit.sent(), "12345678\r\n12345678\n");
  EXPECT_FALSE(at_limit.session().closing());
  EXPECT_EQ(at_limit.session().protocol_error(), "");

  Harness over{line_mode(8)};
  over.feed("ok\n123456789\nnext\n");
  EXPECT_EQ(over.sent(), "ok\nerror: line too long (max 8 bytes)\n");
  EXPECT_TRUE(over.session().finished());
  EXPECT_EQ(over.session().protocol_error(), "line too long (max 8 bytes)");
}

TEST(LineProtocol, OverlongLineDetectedBeforeItsLfArrives) {
  Harness h{line_mode(8)};
  h.feed("abc\n123456789");  // no LF yet, already too long
  EXPECT_EQ(h.sent(), "abc\nerror: line too long (max 8 bytes)\n");
  EXPECT_TRUE(h.session().closing());
}

TEST(LineProtocol, CrAtTheLimitWaitsForItsLf) {
  Harness h{line_mode(8)};
  h.feed("12345678\r");
  EXPECT_FALSE(h.session().closing());
  h.feed("\n");
  EXPECT_EQ(h.sent(), "12345678\r\n");
}

TEST(LineProtocol, DefaultLimitWithHugeLineByteAtATimeStaysBounded) {
  Harness h{line_mode()};
  const std::string big(65537, 'z');
  h.feed(big, 4096);
  EXPECT_EQ(h.sent(), "error: line too long (max 65536 bytes)\n");
  EXPECT_LE(h.session().buffer_allocated(), 2u << 20);
}

TEST(LineProtocol, BinaryAndNulBytesInsideLines) {
  Harness h{line_mode()};
  const std::string line("a\0b\xff\xfe\n", 6);
  h.feed(line);
  EXPECT_EQ(h.sent(), line);
}

TEST(LineProtocol, HalfCloseEchoesTheUnterminatedLastLine) {
  Harness h{line_mode(65536, Transform::upper)};
  h.feed("done\nlast words");
  h.eof();
  EXPECT_EQ(h.sent(), "DONE\nLAST WORDS");
  EXPECT_TRUE(h.session().finished());
}

TEST(LineProtocol, UpperLeavesNonAsciiAlone) {
  Harness h{line_mode(65536, Transform::upper)};
  h.feed("caf\xc3\xa9 abc\n");
  EXPECT_EQ(h.sent(), "CAF\xc3\xa9 ABC\n");
}

TEST(LineProtocol, ManyTinyLinesInOneWrite) {
  Harness h{line_mode()};
  std::string input;
  for (int i = 0; i < 100000; ++i) input += "x\n";
  h.feed(input);
  EXPECT_EQ(h.sent(), input);
}

TEST(ProtocolNames, ParseAndPrint) {
  EXPECT_EQ(parse_mode("line"), Mode::line);
  EXPECT_EQ(parse_mode("LINE"), std::nullopt);
  EXPECT_EQ(parse_transform("upper"), Transform::upper);
  EXPECT_EQ(to_string(Mode::raw), "raw");
  EXPECT_EQ(find_line_end("ab\ncd"), 2u);
}

}  // namespace
}  // namespace polyecho
