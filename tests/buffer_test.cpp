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

}  // namespace
}  // namespace polyecho
