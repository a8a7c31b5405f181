#pragma once

#include <unistd.h>

#include <utility>

namespace polyecho {

// Sole owner of one file descriptor; closes it exactly once. Movable, not copyable, so a
// descriptor's owner is always visible in the type that holds it.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives up ownership without closing (e.g. to hand the fd to another owner).
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the current fd (if any) and takes ownership of `fd`. close() is not retried on
  // EINTR: on Linux the descriptor is released even when close reports EINTR.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace polyecho
