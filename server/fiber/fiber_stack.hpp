#pragma once

#include <boost/context/stack_context.hpp>
#include <cstddef>
#include <vector>

namespace polyecho {

// Fiber stacks from mmap, each with one PROT_NONE guard page below it: a fiber that overflows
// its stack faults (SIGSEGV) instead of silently writing over its neighbour's memory. The
// pages above the guard are only reserved until touched, so a parked connection costs the
// pages its deepest call actually used, not --stack-size.
//
// Freed stacks are kept for reuse, up to `max_pooled`, because mmap + mprotect + munmap are
// three syscalls and a TLB shootdown per connection otherwise; beyond that they are unmapped.
// Owns every pooled mapping (unmapped in the destructor); a stack handed out is owned by the
// fiber that runs on it until deallocate(). Not thread-safe: one pool per scheduler thread.
class FiberStackPool {
 public:
  // `usable_size` is rounded up to whole pages; the guard page comes on top of it.
  FiberStackPool(std::size_t usable_size, std::size_t max_pooled);
  ~FiberStackPool();
  FiberStackPool(const FiberStackPool&) = delete;
  FiberStackPool& operator=(const FiberStackPool&) = delete;

  // Boost.Context's stack_context: `sp` is the top (stacks grow down), `size` the usable bytes
  // below it; the guard page lies just under sp - size. Throws std::system_error naming mmap.
  [[nodiscard]] boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& stack) noexcept;

  [[nodiscard]] std::size_t usable_size() const noexcept { return usable_size_; }
  [[nodiscard]] std::size_t pooled() const noexcept { return free_.size(); }
  [[nodiscard]] static std::size_t guard_size() noexcept;

 private:
  std::size_t usable_size_;
  std::size_t max_pooled_;
  std::vector<boost::context::stack_context> free_;
};

// The StackAllocator Boost.Context copies into each fiber: a handle on the thread's pool.
struct PooledStackAllocator {
  FiberStackPool* pool;
  [[nodiscard]] boost::context::stack_context allocate() { return pool->allocate(); }
  void deallocate(boost::context::stack_context& stack) noexcept { pool->deallocate(stack); }
};

}  // namespace polyecho
