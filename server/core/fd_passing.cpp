#include "core/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace polyecho {

namespace {
// Control buffer sized and aligned for exactly one descriptor.
union FdControl {
  char bytes[CMSG_SPACE(sizeof(int))];
  cmsghdr align;
};
}  // namespace

int send_fd(int channel, int fd) noexcept {
  char byte = 'F';  // SCM_RIGHTS needs at least one byte of ordinary data to ride on
  iovec payload{&byte, 1};
  FdControl control{};
  msghdr message{};
  message.msg_iov = &payload;
  message.msg_iovlen = 1;
  message.msg_control = control.bytes;
  message.msg_controllen = sizeof control.bytes;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
  for (;;) {
    if (::sendmsg(channel, &message, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

ReceivedFd receive_fd(int channel) noexcept {
  char byte;
  iovec payload{&byte, 1};
  FdControl control{};
  msghdr message{};
  message.msg_iov = &payload;
  message.msg_iovlen = 1;
  message.msg_control = control.bytes;
  message.msg_controllen = sizeof control.bytes;
  ssize_t n;
  do {
    n = ::recvmsg(channel, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  ReceivedFd result;
  if (n < 0) {
    result.error = errno;
    return result;
  }
  if (n == 0) {
    result.closed = true;
    return result;
  }
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
      result.fd.reset(fd);
    }
  }
  if (!result.fd) result.error = (message.msg_flags & MSG_CTRUNC) ? EMFILE : EPROTO;
  return result;
}

}  // namespace polyecho
