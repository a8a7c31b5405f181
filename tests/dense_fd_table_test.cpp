// DenseFdTable, the pollers' fd -> record map: lookups through a growing index, and erasure
// that keeps the record array dense by moving the last record into the hole.
#include "poller/dense_fd_table.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace polyecho::test {
namespace {

struct Record {
  int fd;
  int payload;
};

// The fds in the order the table stores them (what a poller hands the kernel or walks).
std::vector<int> fds_in_order(DenseFdTable<Record>& table) {
  std::vector<int> fds;
  for (const Record& r : table.records()) fds.push_back(r.fd);
  return fds;
}

// Where `fd` is found, as an index into records(); -1 when it is not found there.
long position_of(DenseFdTable<Record>& table, int fd) {
  const Record* found = table.find(fd);
  auto& records = table.records();
  if (found == nullptr || found < records.data() || found >= records.data() + records.size())
    return -1;
  return found->fd == fd ? found - records.data() : -1;
}

DenseFdTable<Record> table_of(std::initializer_list<int> fds) {
  DenseFdTable<Record> table;
  for (const int fd : fds) table.insert({fd, fd * 10});
  return table;
}

TEST(DenseFdTable, FindsWhatWasInsertedAndNothingElse) {
  auto table = table_of({3, 7});
  ASSERT_NE(table.find(3), nullptr);
  EXPECT_EQ(table.find(3)->payload, 30);
  EXPECT_EQ(table.at(7).payload, 70);
  EXPECT_EQ(table.find(5), nullptr) << "inside the index, never inserted";
  EXPECT_EQ(table.find(8), nullptr) << "past the end of the index";
  EXPECT_EQ(table.find(-1), nullptr);
  table.at(3).payload = 31;  // records are updated in place
  EXPECT_EQ(table.find(3)->payload, 31);
  EXPECT_EQ(fds_in_order(table), (std::vector<int>{3, 7}));
}

TEST(DenseFdTable, IndexGrowsWithTheHighestFd) {
  auto table = table_of({2, 4000, 1});
  EXPECT_EQ(table.at(4000).payload, 40000);
  EXPECT_EQ(table.at(2).payload, 20) << "records found before the index grew still are";
  EXPECT_EQ(table.at(1).payload, 10);
  EXPECT_EQ(table.find(3999), nullptr);
  EXPECT_EQ(fds_in_order(table), (std::vector<int>{2, 4000, 1})) << "dense, in insertion order";
}

TEST(DenseFdTable, ErasingAMiddleRecordMovesTheLastIntoItsPlace) {
  auto table = table_of({5, 6, 7, 8});
  table.erase(6);
  EXPECT_EQ(fds_in_order(table), (std::vector<int>{5, 8, 7}));
  EXPECT_EQ(table.find(6), nullptr);
  EXPECT_EQ(position_of(table, 8), 1) << "the moved record is found at its new place";
  EXPECT_EQ(table.at(8).payload, 80);
  table.erase(5);  // the first: again the last moves to the front
  EXPECT_EQ(fds_in_order(table), (std::vector<int>{7, 8}));
  EXPECT_EQ(position_of(table, 7), 0);
  EXPECT_EQ(position_of(table, 8), 1);
}

TEST(DenseFdTable, ErasingTheLastRecordMovesNothing) {
  auto table = table_of({5, 6, 7});
  table.erase(7);
  EXPECT_EQ(fds_in_order(table), (std::vector<int>{5, 6}));
  EXPECT_EQ(table.find(7), nullptr);
  EXPECT_EQ(position_of(table, 5), 0);
  EXPECT_EQ(position_of(table, 6), 1);
}

TEST(DenseFdTable, AnErasedFdCanComeBack) {
  auto table = table_of({4});
  table.erase(4);
  EXPECT_TRUE(table.records().empty());
  EXPECT_EQ(table.find(4), nullptr);
  table.insert({9, 90});
  table.insert({4, 41});  // the number reused by a new connection: a new record, at the end
  EXPECT_EQ(fds_in_order(table), (std::vector<int>{9, 4}));
  EXPECT_EQ(position_of(table, 4), 1);
  EXPECT_EQ(table.at(4).payload, 41);
}

}  // namespace
}  // namespace polyecho::test
