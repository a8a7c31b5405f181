#pragma once

#include <cstddef>

#include "polyecho/unique_fd.hpp"

namespace polyecho {

// A kernel pipe that carries a raw stream's bytes from its socket back out to the same socket
// with splice(2): the kernel moves references to the received pages, and the bytes never
// reach user space (zero copy, where a read and a write copy each byte twice). Go's io.Copy
// does this between two TCP connections, and HAProxy can ("kernel splicing").
//
// A connection holds one only while bytes are in it: take() when a splice in is due, give_back()
// once the splice out has emptied it. So a loop whose sockets take their echoes at once needs
// one pipe in all; a connection whose peer does not read keeps its pipe, and at most 64 KiB
// (the pipe's capacity) waits in it. Each pipe costs two descriptors: at most kMaxPipes exist
// in the process (each thread keeps up to kSpares of them for reuse); past that, or when pipe2
// fails (out of descriptors), take() gives an empty RelayPipe and the connection copies its
// bytes as usual. A pipe with bytes left in it is never reused: destroying it closes it.
// Used by one thread at a time; take() and give_back() may run on different threads.
class RelayPipe {
 public:
  static constexpr std::size_t kMaxPipes = 64;
  static constexpr std::size_t kSpares = 4;

  RelayPipe() noexcept = default;
  RelayPipe(RelayPipe&& other) noexcept = default;
  RelayPipe& operator=(RelayPipe&& other) noexcept;
  RelayPipe(const RelayPipe&) = delete;
  RelayPipe& operator=(const RelayPipe&) = delete;
  ~RelayPipe();

  // A spare of this thread, else a new pipe; empty when the cap is reached or pipe2 fails.
  [[nodiscard]] static RelayPipe take() noexcept;
  // The pipe is empty: keep it among this thread's spares (or close it when they are full).
  void give_back() noexcept;

  [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(read_end_); }
  [[nodiscard]] int read_end() const noexcept { return read_end_.get(); }
  [[nodiscard]] int write_end() const noexcept { return write_end_.get(); }

  // Pipes in existence in the process (held or spare), for tests.
  [[nodiscard]] static std::size_t live() noexcept;

 private:
  RelayPipe(unique_fd read_end, unique_fd write_end) noexcept
      : read_end_(std::move(read_end)), write_end_(std::move(write_end)) {}
  void close() noexcept;

  unique_fd read_end_;
  unique_fd write_end_;
};

}  // namespace polyecho
