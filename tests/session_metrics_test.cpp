// What a Session reports to its MessageObserver (live metrics), driven by a fake clock: bytes
// and messages per read, bytes per send, and each reply's latency from the read that completed
// its message to its release, work included.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "polyecho/message_observer.hpp"
#include "polyecho/session.hpp"
#include "support/session_harness.hpp"

namespace polyecho {
namespace {

using std::chrono::microseconds;

class FakeObserver final : public MessageObserver {
 public:
  [[nodiscard]] Clock::time_point now() const noexcept override { return now_; }
  void received(std::size_t bytes, std::size_t messages) noexcept override {
    bytes_in += bytes;
    messages_in += messages;
  }
  void replied(std::size_t messages, Clock::duration latency) noexcept override {
    for (std::size_t i = 0; i < messages; ++i)
      latencies.push_back(std::chrono::duration_cast<microseconds>(latency).count());
  }
  void sent(std::size_t bytes) noexcept override { bytes_out += bytes; }
  void advance(microseconds by) { now_ += by; }

  std::size_t bytes_in = 0;
  std::size_t bytes_out = 0;
  std::size_t messages_in = 0;
  std::vector<long> latencies;

 private:
  Clock::time_point now_{};
};

ProtocolConfig observed(Mode mode, bool hold, FakeObserver& observer) {
  ProtocolConfig config;
  config.mode = mode;
  config.hold_messages = hold;
  config.observer = &observer;
  return config;
}

TEST(SessionMetrics, RawModeCountsEachReadAsOneMessage) {
  FakeObserver observer;
  test::SessionHarness h{observed(Mode::raw, false, observer)};
  h.feed("abcdef", 2);
  EXPECT_EQ(observer.bytes_in, 6u);
  EXPECT_EQ(observer.messages_in, 3u);
  EXPECT_EQ(observer.latencies.size(), 3u);
  EXPECT_EQ(observer.bytes_out, 6u);
}

TEST(SessionMetrics, LinesCountWhenCompleteAndAnUnterminatedLastLineAtEof) {
  FakeObserver observer;
  test::SessionHarness h{observed(Mode::line, false, observer)};
  h.feed("one\ntw");
  EXPECT_EQ(observer.messages_in, 1u);
  h.feed("o\nlast");
  EXPECT_EQ(observer.messages_in, 2u);
  h.eof();
  EXPECT_EQ(observer.messages_in, 3u);
  EXPECT_EQ(observer.latencies.size(), 3u);
  EXPECT_EQ(observer.bytes_in, 12u);
  EXPECT_EQ(observer.bytes_out, 12u);
}

// Held messages are timed from the read that completed each one to its release.
TEST(SessionMetrics, HeldMessagesAreTimedFromTheirReadToTheirRelease) {
  FakeObserver observer;
  test::SessionHarness h{observed(Mode::frame, true, observer)};
  h.feed(test::frame("a") + test::frame("b"));  // both complete at t = 0
  observer.advance(microseconds(100));
  h.feed(test::frame("c"));  // complete at t = 100
  observer.advance(microseconds(50));
  Session& s = h.session();
  s.release_message();  // a at 150
  observer.advance(microseconds(10));
  s.release_message();  // b at 160
  s.release_message();  // c at 160
  EXPECT_EQ(observer.messages_in, 3u);
  EXPECT_EQ(observer.latencies, (std::vector<long>{150, 160, 60}));
}

// More separate reads than the arrival ring holds: the overflow joins the newest entry, so those
// messages are timed from an earlier read (overstated, never understated) and none is lost.
TEST(SessionMetrics, ArrivalRingOverflowOverstatesNeverLoses) {
  FakeObserver observer;
  test::SessionHarness h{observed(Mode::line, true, observer)};
  for (int i = 0; i < 12; ++i) {
    h.feed("x\n");
    observer.advance(microseconds(10));
  }
  for (int i = 0; i < 12; ++i) h.session().release_message();
  ASSERT_EQ(observer.latencies.size(), 12u);
  // Now t = 120. Lines 0..6 each had their own entry (arrived at 0, 10, ... 60); lines 7..11
  // joined the eighth (arrived at 70).
  EXPECT_EQ(observer.latencies.front(), 120);
  EXPECT_EQ(observer.latencies[6], 60);
  for (std::size_t i = 7; i < 12; ++i) EXPECT_EQ(observer.latencies[i], 50) << i;
}

}  // namespace
}  // namespace polyecho
