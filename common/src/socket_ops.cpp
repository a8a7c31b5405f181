#include "polyecho/socket_ops.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace polyecho {

void throw_errno(std::string_view syscall_name, int error_number) {
  throw std::system_error(error_number, std::generic_category(), std::string(syscall_name));
}

namespace {
void set_int_option(int fd, int level, int name, int value, std::string_view what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw_errno(what);
}
}  // namespace

unique_fd make_listener(const Endpoint& endpoint, const ListenerOptions& options) {
  int type = SOCK_STREAM | SOCK_CLOEXEC;
  if (options.nonblocking) type |= SOCK_NONBLOCK;
  unique_fd fd(::socket(endpoint.family(), type, 0));
  if (!fd) throw_errno("socket");
  // SO_REUSEADDR: a restarted server must not wait out TIME_WAIT of its previous run.
  set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)");
  if (options.reuse_port)
    set_int_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)");
  if (endpoint.family() == AF_INET6) {
    // "::" should mean both families, whatever the system default says.
    set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 0, "setsockopt(IPV6_V6ONLY)");
  }
  if (::bind(fd.get(), endpoint.addr(), endpoint.length) != 0) throw_errno("bind");
  if (::listen(fd.get(), options.backlog) != 0) throw_errno("listen");
  return fd;
}

Endpoint local_endpoint(int fd) {
  Endpoint endpoint;
  endpoint.length = sizeof endpoint.storage;
  if (::getsockname(fd, endpoint.addr(), &endpoint.length) != 0) throw_errno("getsockname");
  return endpoint;
}

Endpoint peer_endpoint(int fd) {
  Endpoint endpoint;
  endpoint.length = sizeof endpoint.storage;
  if (::getpeername(fd, endpoint.addr(), &endpoint.length) != 0) throw_errno("getpeername");
  return endpoint;
}

unique_fd connect_to(const Endpoint& endpoint) {
  unique_fd fd(::socket(endpoint.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  while (::connect(fd.get(), endpoint.addr(), endpoint.length) != 0) {
    if (errno != EINTR) throw_errno("connect");
  }
  return fd;
}

void set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_errno("fcntl(F_GETFL)");
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) throw_errno("fcntl(F_SETFL)");
}

void set_nodelay(int fd) {
  set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)");
}

void set_keepalive(int fd, int idle_seconds) {
  set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "setsockopt(SO_KEEPALIVE)");
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_seconds, "setsockopt(TCP_KEEPIDLE)");
  // Probe a few times, a few seconds apart, so a vanished peer is reclaimed soon after idle.
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, std::max(1, idle_seconds / 3),
                 "setsockopt(TCP_KEEPINTVL)");
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, 3, "setsockopt(TCP_KEEPCNT)");
}

void set_io_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
    throw_errno("setsockopt(SO_RCVTIMEO)");
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    throw_errno("setsockopt(SO_SNDTIMEO)");
}

// The hot path calls the kernel through syscall(2), not glibc's recv/send: those are
// cancellation points, and in a multi-threaded process each call toggles the thread's
// asynchronous-cancel state with two atomic operations (1.1% of the bench client's samples at
// 500 ping-pong connections). Nothing here cancels threads, so that work buys nothing.
IoResult read_some(int fd, std::span<char> into) noexcept {
  for (;;) {
    const auto n = static_cast<ssize_t>(
        ::syscall(SYS_recvfrom, fd, into.data(), into.size(), 0, nullptr, nullptr));
    if (n >= 0) return {n, 0};
    if (errno != EINTR) return {-1, errno};
  }
}

IoResult send_some(int fd, std::span<const char> bytes) noexcept {
  for (;;) {
    const auto n = static_cast<ssize_t>(
        ::syscall(SYS_sendto, fd, bytes.data(), bytes.size(), MSG_NOSIGNAL, nullptr, 0));
    if (n >= 0) return {n, 0};
    if (errno != EINTR) return {-1, errno};
  }
}

IoResult splice_some(int from, int to, std::size_t n) noexcept {
  for (;;) {
    const ssize_t moved =
        ::splice(from, nullptr, to, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (moved >= 0) return {moved, 0};
    if (errno != EINTR) return {-1, errno};
  }
}

int send_all(int fd, std::span<const char> bytes) noexcept {
  while (!bytes.empty()) {
    const IoResult r = send_some(fd, bytes);
    if (r.bytes < 0) return r.error;
    bytes = bytes.subspan(static_cast<std::size_t>(r.bytes));
  }
  return 0;
}

void ignore_sigpipe() {
  struct sigaction action {};
  action.sa_handler = SIG_IGN;
  ::sigemptyset(&action.sa_mask);
  ::sigaction(SIGPIPE, &action, nullptr);
}

}  // namespace polyecho
