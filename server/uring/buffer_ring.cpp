#include "uring/buffer_ring.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include "polyecho/socket_ops.hpp"

namespace polyecho::uring {

namespace {
void* map_anonymous(std::size_t bytes) {
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw_errno("mmap");
  return memory;
}
}  // namespace

ProvidedBufferRing::ProvidedBufferRing(io_uring& ring, std::uint16_t group, unsigned count,
                                       std::size_t buffer_size)
    : ring_(ring), group_(group), count_(count), size_(buffer_size) {
  // count must be a power of two (io_uring_buf_ring_mask relies on it).
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  ring_bytes_ = (count_ * sizeof(io_uring_buf) + page - 1) / page * page;
  entries_ = static_cast<io_uring_buf_ring*>(map_anonymous(ring_bytes_));
  try {
    buffers_ = static_cast<char*>(map_anonymous(count_ * size_));
  } catch (...) {
    ::munmap(entries_, ring_bytes_);
    throw;
  }
  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<std::uint64_t>(entries_);
  registration.ring_entries = count_;
  registration.bgid = group_;
  if (const int rc = io_uring_register_buf_ring(&ring_, &registration, 0); rc < 0) {
    ::munmap(buffers_, count_ * size_);
    ::munmap(entries_, ring_bytes_);
    throw_errno("io_uring_register_buf_ring", -rc);
  }
  io_uring_buf_ring_init(entries_);
  const int mask = io_uring_buf_ring_mask(count_);
  for (unsigned id = 0; id < count_; ++id) {
    io_uring_buf_ring_add(entries_, buffers_ + std::size_t{id} * size_,
                          static_cast<unsigned>(size_), static_cast<unsigned short>(id), mask,
                          static_cast<int>(id));
  }
  io_uring_buf_ring_advance(entries_, static_cast<int>(count_));
}

ProvidedBufferRing::~ProvidedBufferRing() {
  io_uring_unregister_buf_ring(&ring_, group_);
  ::munmap(buffers_, count_ * size_);
  ::munmap(entries_, ring_bytes_);
}

void ProvidedBufferRing::recycle(std::uint16_t id) noexcept {
  io_uring_buf_ring_add(entries_, buffers_ + std::size_t{id} * size_, static_cast<unsigned>(size_),
                        id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(entries_, 1);
}

}  // namespace polyecho::uring
