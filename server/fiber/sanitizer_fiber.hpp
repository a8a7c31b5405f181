#pragma once

#include <cstddef>

// AddressSanitizer tracks one stack per thread; a fiber switch moves the stack pointer to
// memory it does not know as a stack, which it then reports as stack-buffer-overflow or
// garbage on throw. These hooks tell it about each switch (compiler-rt's fiber API). GCC and
// Clang define __SANITIZE_ADDRESS__ under -fsanitize=address (the asan preset); elsewhere the
// hooks compile to nothing. This header is the only place that knows.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace polyecho::sanitizer {

// Call right before switching to the stack [bottom, bottom + size). `fake_stack` keeps the
// leaving context's fake frames; nullptr when the leaving context will never come back.
inline void start_switch(void** fake_stack, const void* bottom, std::size_t size) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
  (void)fake_stack, (void)bottom, (void)size;
#endif
}

// Call right after arriving on a stack; reports the stack we came from (optional).
inline void finish_switch(void* fake_stack, const void** from_bottom,
                          std::size_t* from_size) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake_stack, from_bottom, from_size);
#else
  (void)fake_stack, (void)from_bottom, (void)from_size;
#endif
}

inline void unpoison(const void* begin, std::size_t size) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(begin, size);
#else
  (void)begin, (void)size;
#endif
}

}  // namespace polyecho::sanitizer
