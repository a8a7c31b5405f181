#include "polyecho/buffer.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace polyecho {
namespace {

void put(Buffer& buffer, std::string_view text) {
  auto space = buffer.writable();
  ASSERT_GE(space.size(), text.size());
  std::memcpy(space.data(), text.data(), text.size());
  buffer.commit(text.size());
}

std::string contents(const Buffer& buffer) {
  auto r = buffer.readable();
  return {r.data(), r.size()};
}

TEST(Buffer, AllocatesLazily) {
  Buffer buffer(1 << 20);
  EXPECT_EQ(buffer.allocated(), 0u);
  EXPECT_TRUE(buffer.empty());
  EXPECT_FALSE(buffer.writable().empty());
  EXPECT_EQ(buffer.allocated(), Buffer::kInitialCapacity);
}

TEST(Buffer, AnEmptiedBufferGivesItsMemoryBackAndTheNextOneOnThisThreadReusesIt) {
  Buffer first(1 << 20);
  put(first, "hello");
  const char* block = first.readable().data();
  first.release_if_empty();
  EXPECT_EQ(first.allocated(), Buffer::kInitialCapacity) << "bytes are still owed: kept";
  EXPECT_EQ(contents(first), "hello");
  first.consume(5);
  first.release_if_empty();
  EXPECT_EQ(first.allocated(), 0u);
  Buffer second(1 << 20);
  EXPECT_EQ(second.writable().data(), block) << "taken from this thread's pool, not malloc";
  // And the first one simply takes another block when it is needed again.
  put(first, "again");
  EXPECT_EQ(contents(first), "again");
  EXPECT_NE(first.readable().data(), block);
}

TEST(Buffer, BulkBlocksArePooledTooButOtherSizesAreFreed) {
  Buffer bulk(1 << 20);
  EXPECT_GE(bulk.writable(Buffer::kBulkCapacity).size(), Buffer::kBulkCapacity);
  const char* block = bulk.writable().data();
  bulk.release_if_empty();
  EXPECT_EQ(bulk.allocated(), 0u);
  Buffer next(1 << 20);
  EXPECT_EQ(next.writable(Buffer::kBulkCapacity).data(), block);
  Buffer big(1 << 20);
  EXPECT_GE(big.writable(2 * Buffer::kBulkCapacity).size(), 2 * Buffer::kBulkCapacity);
  big.release_if_empty();
  EXPECT_EQ(big.allocated(), 0u) << "freed: only the two usual sizes are kept";
}

TEST(Buffer, ReadableThenConsumedInOrder) {
  Buffer buffer(1024);
  put(buffer, "hello ");
  put(buffer, "world");
  EXPECT_EQ(contents(buffer), "hello world");
  buffer.consume(6);
  EXPECT_EQ(contents(buffer), "world");
  buffer.consume(5);
  EXPECT_TRUE(buffer.empty());
}

TEST(Buffer, NeverExceedsSoftCapForReads) {
  Buffer buffer(100);
  std::size_t total = 0;
  for (auto space = buffer.writable(); !space.empty(); space = buffer.writable()) {
    buffer.commit(space.size());
    total += space.size();
  }
  EXPECT_EQ(total, 100u);
  EXPECT_LE(buffer.allocated(), 100u);
  buffer.consume(40);
  EXPECT_EQ(buffer.writable().size(), 40u);  // compacted, not grown
  EXPECT_LE(buffer.allocated(), 100u);
}

TEST(Buffer, GrowsUpToCapAndKeepsContent) {
  Buffer buffer(1 << 20);
  std::string expected;
  while (expected.size() < (200u << 10)) {
    auto space = buffer.writable();
    ASSERT_FALSE(space.empty());
    for (auto& c : space) c = static_cast<char>('a' + expected.size() % 26), expected += c;
    buffer.commit(space.size());
  }
  EXPECT_EQ(contents(buffer), expected);
  EXPECT_LE(buffer.allocated(), 1u << 20);
}

TEST(Buffer, AppendUsesReserveAboveCapButNoMore) {
  Buffer buffer(64);
  put(buffer, std::string(64, 'x'));
  EXPECT_TRUE(buffer.writable().empty());
  EXPECT_TRUE(buffer.append("bye\n"));
  EXPECT_EQ(buffer.size(), 68u);
  EXPECT_FALSE(buffer.append(std::string(Buffer::kReplyReserve, 'z')));
}

TEST(Buffer, TruncateDropsTail) {
  Buffer buffer(64);
  put(buffer, "keep-drop");
  buffer.truncate(4);
  EXPECT_EQ(contents(buffer), "keep");
}

TEST(Buffer, WritableFloorPromisesNoMoreThanWritableGivesAndAllocatesNothing) {
  Buffer buffer(40 << 10);
  EXPECT_EQ(buffer.writable_floor(), Buffer::kInitialCapacity);
  EXPECT_EQ(buffer.allocated(), 0u);
  for (std::size_t floor = buffer.writable_floor(); floor > 0; floor = buffer.writable_floor()) {
    const auto space = buffer.writable();
    ASSERT_GE(space.size(), floor);
    buffer.commit(std::min<std::size_t>(space.size(), 5000));
  }
  EXPECT_EQ(buffer.size(), 40u << 10);
  EXPECT_TRUE(buffer.writable().empty());
  buffer.consume(10);
  EXPECT_EQ(buffer.writable_floor(), 10u);
}

TEST(Buffer, TailInPlaceLeavesReadableBytesWhereTheyAre) {
  Buffer buffer(1 << 20);
  put(buffer, std::string(1000, 'a'));
  buffer.consume(100);  // room at the front too, which only writable() would reclaim
  const char* sending = buffer.readable().data();
  auto first = buffer.tail_in_place(0);
  ASSERT_EQ(first.size(), buffer.allocated() - 1000);
  std::memcpy(first.data(), "bc", 2);
  auto second = buffer.tail_in_place(2);  // after bytes staged but not yet committed
  EXPECT_EQ(second.data(), first.data() + 2);
  std::memcpy(second.data(), "d", 1);
  buffer.commit(3);
  EXPECT_EQ(buffer.readable().data(), sending);
  EXPECT_EQ(contents(buffer), std::string(900, 'a') + "bcd");
  EXPECT_TRUE(buffer.tail_in_place(buffer.allocated()).empty());
}

// A read into the tail is still in flight when the send before it completes: the emptied
// buffer must not rewind or go back to the pool, or the read's bytes would land elsewhere.
TEST(Buffer, ConsumeInPlaceNeitherRewindsNorReleases) {
  Buffer buffer(1 << 20);
  put(buffer, "sent");
  const auto reading = buffer.tail_in_place(0);  // the read armed behind the send
  buffer.consume_in_place(4);
  EXPECT_TRUE(buffer.empty());
  EXPECT_GT(buffer.allocated(), 0u);
  std::memcpy(reading.data(), "next", 4);  // the read completes
  buffer.commit(4);
  EXPECT_EQ(contents(buffer), "next");
  EXPECT_EQ(buffer.readable().data(), reading.data());
  buffer.consume(4);  // no read in flight any more: an ordinary consume rewinds
  EXPECT_EQ(buffer.tail_in_place(0).data(), reading.data() - 4);
}

TEST(Buffer, TailInPlaceRespectsTheSoftCap) {
  Buffer buffer(100);
  put(buffer, std::string(60, 'x'));
  EXPECT_EQ(buffer.tail_in_place(0).size(), 40u);
  EXPECT_EQ(buffer.tail_in_place(30).size(), 10u);
  EXPECT_TRUE(buffer.tail_in_place(40).empty());
}

}  // namespace
}  // namespace polyecho
