#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace polyecho {

// A contiguous byte buffer with a readable region (bytes owed to someone) followed by a
// writable region (room for the next read). Memory is allocated lazily on first use and grows
// geometrically, but never past `soft_cap` for received data: when the buffer is full the
// transport must stop reading (backpressure) until the readable region is consumed.
// `append()` may use a small reserve above the soft cap so the protocol can always emit a
// short reply (e.g. "bye") even when the buffer is full.
//
// An empty buffer can give its memory back (release_if_empty()), so a connection that owes
// nothing holds nothing while it waits for its peer. Blocks of the two usual sizes
// (kInitialCapacity, and kBulkCapacity for a stream) go to a small per-thread pool and the next
// buffer to grow to that size on the thread takes one from there: a pop instead of malloc,
// into memory that is likely still in cache. Without it a stream paid for its buffer on every
// flush: glibc gave the freed top of the heap back to the kernel (brk) and the next read
// faulted the pages in again (a third of sigio's profile while streaming). A completion loop
// holds one block per send in flight (hundreds in a batch), hence 64 small blocks. The pool
// keeps at most 2 MiB per thread and frees the rest; a block may be pooled or freed by another
// thread than the one that took it.
// Not thread-safe: owned by one connection, used by one thread at a time.
class Buffer {
 public:
  static constexpr std::size_t kReplyReserve = 128;
  static constexpr std::size_t kInitialCapacity = std::size_t{16} * 1024;
  static constexpr std::size_t kBulkCapacity = std::size_t{64} * 1024;
  static constexpr std::size_t kPooledBlocks = 64;      // of kInitialCapacity: 1 MiB
  static constexpr std::size_t kPooledBulkBlocks = 16;  // of kBulkCapacity: 1 MiB

  explicit Buffer(std::size_t soft_cap);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Room for incoming bytes (compacts or grows as needed to offer `useful` bytes, or what is
  // left below the soft cap). Empty when the soft cap is reached.
  [[nodiscard]] std::span<char> writable(std::size_t useful = kInitialCapacity);
  void commit(std::size_t n) noexcept { end_ += n; }
  // How much writable() is sure to offer on its next call, without allocating anything now.
  [[nodiscard]] std::size_t writable_floor() const noexcept;
  // Room after the readable bytes plus `skip` more, as it stands: never slides or grows the
  // buffer, so the readable region stays where it is (e.g. while the kernel sends from it).
  [[nodiscard]] std::span<char> tail_in_place(std::size_t skip) noexcept;

  [[nodiscard]] std::span<const char> readable() const noexcept {
    return {data_.get() + begin_, end_ - begin_};
  }
  [[nodiscard]] std::span<char> readable() noexcept {
    return {data_.get() + begin_, end_ - begin_};
  }
  void consume(std::size_t n) noexcept;
  // consume() that leaves the tail where it is, even when the buffer empties: for when a read
  // into tail_in_place() is still in flight.
  void consume_in_place(std::size_t n) noexcept { begin_ += n; }
  // Drops readable bytes from the tail so that `keep` bytes remain.
  void truncate(std::size_t keep) noexcept { end_ = begin_ + keep; }
  // Appends a short reply; may use the reserve above the soft cap. False if it cannot fit.
  bool append(std::string_view bytes);

  // Gives the memory back when nothing is buffered; the next writable() or append() takes a
  // block again. Only while no IO points into the buffer (no read in flight into writable(),
  // no send from readable()).
  void release_if_empty() noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return end_ - begin_; }
  [[nodiscard]] bool empty() const noexcept { return end_ == begin_; }
  [[nodiscard]] std::size_t soft_cap() const noexcept { return soft_cap_; }
  [[nodiscard]] std::size_t allocated() const noexcept { return capacity_; }

 private:
  // Makes `want` bytes of tail room available without exceeding `limit`; false if impossible.
  bool reserve_tail(std::size_t want, std::size_t limit);

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t soft_cap_;
};

}  // namespace polyecho
