#pragma once

#include <cstddef>
#include <vector>

namespace polyecho {

// A dense array of per-fd records (anything with an `int fd` member, e.g. pollfd) plus an
// fd -> position index that grows with the highest fd. Removal swaps the last record into the
// hole, so the array a poller hands the kernel, or walks, never contains gaps.
// Not thread-safe; used by one poller.
template <typename Record>
class DenseFdTable {
 public:
  void insert(const Record& record) {
    const auto slot = static_cast<std::size_t>(record.fd);
    if (slot >= index_.size()) index_.resize(slot + 1, kNone);
    index_[slot] = records_.size();
    records_.push_back(record);
  }
  [[nodiscard]] Record& at(int fd) { return records_[index_[static_cast<std::size_t>(fd)]]; }
  // nullptr when `fd` is not in the table (e.g. a late notification for a removed fd).
  [[nodiscard]] Record* find(int fd) {
    const auto slot = static_cast<std::size_t>(fd);
    if (fd < 0 || slot >= index_.size() || index_[slot] == kNone) return nullptr;
    return &records_[index_[slot]];
  }
  void erase(int fd) {
    const std::size_t at = index_[static_cast<std::size_t>(fd)];
    index_[static_cast<std::size_t>(fd)] = kNone;
    if (at + 1 != records_.size()) {
      records_[at] = records_.back();
      index_[static_cast<std::size_t>(records_[at].fd)] = at;
    }
    records_.pop_back();
  }
  [[nodiscard]] std::vector<Record>& records() noexcept { return records_; }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::vector<Record> records_;
  std::vector<std::size_t> index_;
};

}  // namespace polyecho
