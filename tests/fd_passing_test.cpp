// send_fd()/receive_fd(): a descriptor handed over a SOCK_SEQPACKET channel (SCM_RIGHTS), as
// the fd dispatcher hands connections to worker processes. Within one process the received
// descriptor is a new number for the same open socket, which is what the tests check.
#include "process/fd_passing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>

#include "polyecho/socket_ops.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

struct Ends {
  unique_fd one;
  unique_fd other;
};

Ends socket_pair(int type) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

// The channel: `one` sends, `other` receives.
Ends channel() {
  return socket_pair(SOCK_SEQPACKET);
}

// The socket a descriptor refers to (its inode), whatever its number.
ino_t socket_of(int fd) {
  struct stat status {};
  if (::fstat(fd, &status) != 0) throw_errno("fstat");
  return status.st_ino;
}

TEST(FdPassing, TheReceivedFdIsTheSameSocket) {
  const Ends link = channel();
  Ends connection = socket_pair(SOCK_STREAM);
  ASSERT_EQ(send_fd(link.one.get(), connection.one.get()), 0);
  ReceivedFd received = receive_fd(link.other.get());
  ASSERT_TRUE(received.fd) << "error " << received.error;
  EXPECT_FALSE(received.closed);
  EXPECT_EQ(received.error, 0);
  EXPECT_NE(received.fd.get(), connection.one.get()) << "a new descriptor";
  EXPECT_EQ(socket_of(received.fd.get()), socket_of(connection.one.get())) << "the same socket";
  EXPECT_NE(::fcntl(received.fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "close-on-exec";

  connection.one.reset();  // the sender closes its copy; the socket lives on in the receiver
  ASSERT_TRUE(send_text(received.fd.get(), "ping"));
  EXPECT_EQ(recv_exact(connection.other.get(), 4), "ping");
  ASSERT_TRUE(send_text(connection.other.get(), "pong"));
  EXPECT_EQ(recv_exact(received.fd.get(), 4), "pong");
}

TEST(FdPassing, NothingPendingIsEagain) {
  const Ends link = channel();
  const ReceivedFd received = receive_fd(link.other.get());
  EXPECT_FALSE(received.fd);
  EXPECT_FALSE(received.closed);
  EXPECT_EQ(received.error, EAGAIN);
}

TEST(FdPassing, EachFdArrivesInOrderThenTheClose) {
  Ends link = channel();
  const Ends first = socket_pair(SOCK_STREAM);
  const Ends second = socket_pair(SOCK_STREAM);
  ASSERT_EQ(send_fd(link.one.get(), first.one.get()), 0);
  ASSERT_EQ(send_fd(link.one.get(), second.one.get()), 0);
  link.one.reset();  // the sender is gone; what it sent is still delivered
  const ReceivedFd a = receive_fd(link.other.get());
  const ReceivedFd b = receive_fd(link.other.get());
  ASSERT_TRUE(a.fd && b.fd);
  EXPECT_EQ(socket_of(a.fd.get()), socket_of(first.one.get()));
  EXPECT_EQ(socket_of(b.fd.get()), socket_of(second.one.get()));
  const ReceivedFd end = receive_fd(link.other.get());
  EXPECT_TRUE(end.closed);
  EXPECT_FALSE(end.fd);
  EXPECT_EQ(end.error, 0);
}

TEST(FdPassing, SendingToAClosedChannelIsEpipeNotSigpipe) {
  Ends link = channel();
  const Ends connection = socket_pair(SOCK_STREAM);
  link.other.reset();
  EXPECT_EQ(send_fd(link.one.get(), connection.one.get()), EPIPE);
}

}  // namespace
}  // namespace polyecho::test
