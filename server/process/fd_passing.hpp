#pragma once

#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Handing an open descriptor to another process over a Unix socket (SCM_RIGHTS). The kernel
// installs a new descriptor for the same open socket in the receiver; the sender still owns
// (and should close) its own copy. Use SOCK_SEQPACKET so each descriptor travels with its own
// one-byte record and a partial read can never split them.

// Returns 0 or the errno (EAGAIN on a full channel when it is non-blocking).
[[nodiscard]] int send_fd(int channel, int fd) noexcept;

struct ReceivedFd {
  unique_fd fd;         // set when a descriptor arrived
  bool closed = false;  // the sender's end is gone
  int error = 0;        // EAGAIN: nothing there right now
};
// Non-blocking receive; the new descriptor is close-on-exec.
[[nodiscard]] ReceivedFd receive_fd(int channel) noexcept;

}  // namespace polyecho
