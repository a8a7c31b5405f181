#include "process/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace polyecho {

namespace {
// One record: a single byte of ordinary data (SCM_RIGHTS needs some to ride on) plus a control
// buffer sized and aligned for exactly one descriptor. Points into itself: not copyable.
struct OneFdMessage {
  char byte = 'F';
  iovec payload{&byte, 1};
  struct {
    alignas(cmsghdr) char bytes[CMSG_SPACE(sizeof(int))];
  } control{};
  msghdr message{};

  OneFdMessage() {
    message.msg_iov = &payload;
    message.msg_iovlen = 1;
    message.msg_control = control.bytes;
    message.msg_controllen = sizeof control.bytes;
  }
  OneFdMessage(const OneFdMessage&) = delete;
  OneFdMessage& operator=(const OneFdMessage&) = delete;
};
}  // namespace

int send_fd(int channel, int fd) noexcept {
  OneFdMessage record;
  msghdr& message = record.message;
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
  OneFdMessage record;
  msghdr& message = record.message;
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
