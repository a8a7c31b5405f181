// The reactor's TimerQueue alone: deadline order, ties, cancellation, stale ids, and a long
// random run checked against a plain sorted model.
#include "reactor/timer_queue.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <utility>
#include <vector>

namespace polyecho {
namespace {

using Clock = TimerQueue::Clock;
using std::chrono::milliseconds;

const Clock::time_point kStart{};  // a fixed origin: the queue never reads the clock itself

// Pops everything due at `now`, returning the payloads in the order they came out.
std::vector<std::uint64_t> drain_due(TimerQueue& timers, Clock::time_point now) {
  std::vector<std::uint64_t> fired;
  while (const auto due = timers.pop_due(now)) fired.push_back(due->payload);
  return fired;
}

TEST(TimerQueue, FiresInDeadlineOrderAndOnlyWhenDue) {
  TimerQueue timers;
  EXPECT_FALSE(timers.next_deadline());
  for (const int ms : {50, 10, 40, 20, 30}) timers.arm(kStart + milliseconds(ms), ms);
  EXPECT_EQ(timers.size(), 5u);
  EXPECT_EQ(timers.next_deadline(), kStart + milliseconds(10));
  EXPECT_TRUE(drain_due(timers, kStart + milliseconds(9)).empty());
  EXPECT_EQ(drain_due(timers, kStart + milliseconds(25)), (std::vector<std::uint64_t>{10, 20}));
  EXPECT_EQ(timers.next_deadline(), kStart + milliseconds(30));
  EXPECT_EQ(drain_due(timers, kStart + milliseconds(100)),
            (std::vector<std::uint64_t>{30, 40, 50}));
  EXPECT_TRUE(timers.empty());
  EXPECT_FALSE(timers.next_deadline());
}

TEST(TimerQueue, EqualDeadlinesFireInTheOrderArmed) {
  TimerQueue timers;
  const auto at = kStart + milliseconds(5);
  std::vector<std::uint64_t> expected{100};  // armed last but earlier: it still goes first
  for (std::uint64_t i = 0; i < 20; ++i) {
    timers.arm(at, i);
    expected.push_back(i);
  }
  timers.arm(kStart + milliseconds(1), 100);
  EXPECT_EQ(drain_due(timers, at), expected);
}

TEST(TimerQueue, ACancelledTimerNeverFires) {
  TimerQueue timers;
  std::vector<TimerQueue::TimerId> ids;
  for (std::uint64_t i = 0; i < 8; ++i) ids.push_back(timers.arm(kStart + milliseconds(i), i));
  EXPECT_TRUE(timers.cancel(ids[0]));  // the earliest: the next deadline moves on
  EXPECT_TRUE(timers.cancel(ids[4]));  // one in the middle
  EXPECT_TRUE(timers.cancel(ids[7]));  // the last node of the heap
  EXPECT_FALSE(timers.cancel(ids[4])) << "cancelled twice";
  EXPECT_FALSE(timers.armed(ids[4]));
  EXPECT_TRUE(timers.armed(ids[5]));
  EXPECT_EQ(timers.size(), 5u);
  EXPECT_EQ(timers.next_deadline(), kStart + milliseconds(1));
  EXPECT_EQ(drain_due(timers, kStart + milliseconds(10)),
            (std::vector<std::uint64_t>{1, 2, 3, 5, 6}));
}

TEST(TimerQueue, AStaleIdTouchesNothingEvenWhenItsSlotIsReused) {
  TimerQueue timers;
  const auto fired = timers.arm(kStart + milliseconds(1), 1);
  const auto due = timers.pop_due(kStart + milliseconds(1));
  ASSERT_TRUE(due);
  EXPECT_EQ(due->id, fired);  // the caller can tell which of its timers this was
  EXPECT_FALSE(timers.armed(fired));
  EXPECT_FALSE(timers.cancel(fired)) << "already fired";
  // The freed slot is taken by the next timer; the old id must not name it.
  const auto reused = timers.arm(kStart + milliseconds(2), 2);
  EXPECT_NE(reused, fired);
  EXPECT_FALSE(timers.cancel(fired));
  EXPECT_TRUE(timers.armed(reused));
  EXPECT_FALSE(timers.cancel(TimerQueue::TimerId{})) << "the empty id names no timer";
  EXPECT_FALSE(TimerQueue::TimerId{});
  EXPECT_TRUE(reused);
}

// Arms, cancels and pops at random and compares every step with a std::map keyed by
// (deadline, arm order): the heap's sift up and down after removals in the middle are where
// a bug would hide.
TEST(TimerQueue, MatchesASortedModelOverARandomRun) {
  TimerQueue timers;
  std::map<std::pair<Clock::time_point, std::uint64_t>, TimerQueue::TimerId> model;
  std::mt19937 random(12345);
  std::uint64_t next = 0;
  Clock::time_point now = kStart;
  for (int step = 0; step < 20000; ++step) {
    const unsigned action = random() % 10;
    if (action < 5) {
      const auto deadline = now + milliseconds(random() % 50);
      model[{deadline, next}] = timers.arm(deadline, next);
      ++next;
    } else if (action < 7 && !model.empty()) {
      auto victim = model.begin();
      std::advance(victim, static_cast<long>(random() % model.size()));
      ASSERT_TRUE(timers.cancel(victim->second));
      model.erase(victim);
    } else {
      now += milliseconds(random() % 5);
      while (!model.empty() && model.begin()->first.first <= now) {
        const auto due = timers.pop_due(now);
        ASSERT_TRUE(due);
        ASSERT_EQ(due->payload, model.begin()->first.second);
        ASSERT_EQ(due->id, model.begin()->second);
        model.erase(model.begin());
      }
      ASSERT_FALSE(timers.pop_due(now));
    }
    ASSERT_EQ(timers.size(), model.size());
    if (!model.empty()) {
      ASSERT_EQ(timers.next_deadline(), model.begin()->first.first);
    }
  }
}

}  // namespace
}  // namespace polyecho
