#include "polyecho/buffer.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace polyecho {

namespace {

// This thread's spare blocks of the two pooled sizes. Only connections running on the thread
// touch it, so no lock; it frees what it holds when the thread ends.
class BlockPool {
 public:
  BlockPool() = default;
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  ~BlockPool() {
    for (Class& c : classes_) {
      for (std::size_t i = 0; i < c.count; ++i) delete[] c.blocks[i];
    }
  }
  static bool pooled(std::size_t size) noexcept {
    return size == Buffer::kInitialCapacity || size == Buffer::kBulkCapacity;
  }
  // `size` is one of the pooled sizes.
  std::unique_ptr<char[]> take(std::size_t size) {
    Class& c = of(size);
    if (c.count == 0) return std::make_unique_for_overwrite<char[]>(size);
    return std::unique_ptr<char[]>(c.blocks[--c.count]);
  }
  void give(std::size_t size, std::unique_ptr<char[]> block) noexcept {
    Class& c = of(size);
    const std::size_t depth =
        size == Buffer::kInitialCapacity ? Buffer::kPooledBlocks : Buffer::kPooledBulkBlocks;
    if (c.count < depth) c.blocks[c.count++] = block.release();
  }  // else `block` frees it

 private:
  struct Class {
    std::array<char*, Buffer::kPooledBlocks> blocks{};
    std::size_t count = 0;
  };
  Class& of(std::size_t size) noexcept {
    return classes_[size == Buffer::kInitialCapacity ? 0 : 1];
  }
  std::array<Class, 2> classes_{};
};

thread_local BlockPool pool;

}  // namespace

Buffer::Buffer(std::size_t soft_cap) : soft_cap_(std::max<std::size_t>(soft_cap, 1)) {}

// Not into the pool: a buffer may be destroyed while its thread's pool is being torn down.
Buffer::~Buffer() = default;

void Buffer::release_if_empty() noexcept {
  if (!empty() || capacity_ == 0) return;
  if (BlockPool::pooled(capacity_)) pool.give(capacity_, std::move(data_));
  data_.reset();
  capacity_ = 0;
  begin_ = end_ = 0;
}

void Buffer::consume(std::size_t n) noexcept {
  begin_ += n;
  // Rewinding an empty buffer is free and keeps reads large, without any memmove.
  if (begin_ == end_) begin_ = end_ = 0;
}

bool Buffer::reserve_tail(std::size_t want, std::size_t limit) {
  if (capacity_ - end_ >= want) return true;
  const std::size_t used = size();
  if (used + want > limit) return false;
  // Prefer sliding unsent bytes to the front over growing: memory stays bounded by `limit`.
  if (begin_ > 0 && capacity_ - used >= want) {
    std::memmove(data_.get(), data_.get() + begin_, used);
    begin_ = 0;
    end_ = used;
    return true;
  }
  std::size_t new_capacity = std::max(capacity_ * 2, kInitialCapacity);
  while (new_capacity < used + want) new_capacity *= 2;
  new_capacity = std::min(new_capacity, limit);
  auto grown = BlockPool::pooled(new_capacity)
                   ? pool.take(new_capacity)
                   : std::make_unique_for_overwrite<char[]>(new_capacity);
  if (used > 0) std::memcpy(grown.get(), data_.get() + begin_, used);
  if (BlockPool::pooled(capacity_)) pool.give(capacity_, std::move(data_));
  data_ = std::move(grown);
  capacity_ = new_capacity;
  begin_ = 0;
  end_ = used;
  return true;
}

std::span<char> Buffer::writable(std::size_t useful) {
  const std::size_t used = size();
  if (used >= soft_cap_) return {};
  // A read into a sliver of tail room wastes a syscall; ask for a useful amount when possible.
  useful = std::min(soft_cap_ - used, useful);
  if (capacity_ - end_ < useful) reserve_tail(useful, soft_cap_);
  const std::size_t room = std::min(capacity_ - end_, soft_cap_ - used);
  return {data_.get() + end_, room};
}

std::size_t Buffer::writable_floor() const noexcept {
  const std::size_t used = size();
  if (used >= soft_cap_) return 0;
  // writable() always reserves this much, and reserve_tail() cannot refuse it.
  return std::max(std::min(soft_cap_ - used, kInitialCapacity),
                  std::min(capacity_ - end_, soft_cap_ - used));
}

std::span<char> Buffer::tail_in_place(std::size_t skip) noexcept {
  const std::size_t used = size() + skip;
  if (used >= soft_cap_ || end_ + skip >= capacity_) return {};
  return {data_.get() + end_ + skip, std::min(capacity_ - end_ - skip, soft_cap_ - used)};
}

bool Buffer::append(std::string_view bytes) {
  if (!reserve_tail(bytes.size(), soft_cap_ + kReplyReserve)) return false;
  std::memcpy(data_.get() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
  return true;
}

}  // namespace polyecho
