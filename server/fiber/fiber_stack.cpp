#include "fiber/fiber_stack.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "fiber/sanitizer_fiber.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {

namespace {
std::size_t page_size() noexcept {
  static const auto size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

void unmap(boost::context::stack_context& stack) noexcept {
  char* base = static_cast<char*>(stack.sp) - stack.size - page_size();
  ::munmap(base, stack.size + page_size());
}
}  // namespace

std::size_t FiberStackPool::guard_size() noexcept {
  return page_size();
}

FiberStackPool::FiberStackPool(std::size_t usable_size, std::size_t max_pooled)
    : usable_size_((std::max(usable_size, page_size()) + page_size() - 1) / page_size() *
                   page_size()),
      max_pooled_(max_pooled) {
  free_.reserve(max_pooled_);  // deallocate() is noexcept: never grow there
}

FiberStackPool::~FiberStackPool() {
  for (auto& stack : free_) unmap(stack);
}

boost::context::stack_context FiberStackPool::allocate() {
  if (!free_.empty()) {
    const auto stack = free_.back();
    free_.pop_back();
    return stack;
  }
  const std::size_t total = usable_size_ + page_size();
  // MAP_NORESERVE: only touched pages are committed; most of a 64 KiB stack never is.
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) throw_errno("mmap");
  if (::mprotect(base, page_size(), PROT_NONE) != 0) {
    const int error = errno;
    ::munmap(base, total);
    throw_errno("mprotect", error);
  }
  boost::context::stack_context stack;
  stack.size = usable_size_;
  stack.sp = static_cast<char*>(base) + total;
  return stack;
}

void FiberStackPool::deallocate(boost::context::stack_context& stack) noexcept {
  // The fiber that ran here never returned through its outermost frames, so ASan may still
  // hold poisoned redzones for them; the next fiber on this memory must start clean.
  sanitizer::unpoison(static_cast<char*>(stack.sp) - stack.size, stack.size);
  if (free_.size() < max_pooled_) {
    free_.push_back(stack);
  } else {
    unmap(stack);
  }
}

}  // namespace polyecho
