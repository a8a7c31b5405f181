#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

namespace polyecho::uring {

// A provided-buffer ring (IORING_REGISTER_PBUF_RING): a pool of equal buffers the kernel picks
// from when a recv with IOSQE_BUFFER_SELECT completes, naming the one it used in the CQE.
// liburing 2.3 has no io_uring_setup_buf_ring, so the ring memory is mapped here (page
// aligned, as the kernel requires) and registered by hand. The buffers themselves are one
// anonymous mapping, resident only once the kernel has written into them.
// Owns both mappings and the registration. Used by the ring's thread only.
class ProvidedBufferRing {
 public:
  ProvidedBufferRing(io_uring& ring, std::uint16_t group, unsigned count, std::size_t buffer_size);
  ~ProvidedBufferRing();
  ProvidedBufferRing(const ProvidedBufferRing&) = delete;
  ProvidedBufferRing& operator=(const ProvidedBufferRing&) = delete;

  [[nodiscard]] std::uint16_t group() const noexcept { return group_; }
  [[nodiscard]] std::size_t buffer_size() const noexcept { return size_; }
  [[nodiscard]] unsigned count() const noexcept { return count_; }
  [[nodiscard]] const char* data(std::uint16_t id) const noexcept {
    return buffers_ + std::size_t{id} * size_;
  }
  // Hands buffer `id` back to the kernel. Only once its bytes have been consumed.
  void recycle(std::uint16_t id) noexcept;

 private:
  io_uring& ring_;
  std::uint16_t group_;
  unsigned count_;
  std::size_t size_;
  std::size_t ring_bytes_;
  io_uring_buf_ring* entries_ = nullptr;
  char* buffers_ = nullptr;
};

}  // namespace polyecho::uring
