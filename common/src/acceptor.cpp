#include "polyecho/acceptor.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace polyecho {

namespace {
// Several Acceptors in one process (epoll --workers N) share one descriptor table. Without
// this lock, the descriptor one thread frees from its reserve to shed a connection can be
// taken by another thread's accept4(), and that reserve is lost for good: later connections
// then wait in the backlog instead of being shed. Held around accept4() only (never around
// connection IO), and uncontended with a single accepting thread.
std::mutex& descriptor_mutex() {
  static std::mutex mutex;
  return mutex;
}

// The shedding burst, process-wide because descriptor exhaustion is; guarded by
// descriptor_mutex() (shed_one and end_burst only run under it).
struct Burst {
  std::uint64_t shed = 0;
  bool active = false;
};
Burst& burst() {
  static Burst state;
  return state;
}

unique_fd open_reserve() {
  return unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}
}  // namespace

Acceptor::Acceptor(int listen_fd, Stats& stats)
    : listen_fd_(listen_fd), stats_(stats), reserve_(open_reserve()) {}

Acceptor::Result Acceptor::accept_one(bool nonblocking) {
  const int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
  const std::lock_guard lock(descriptor_mutex());
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, flags);
    if (fd >= 0) {
      end_burst();
      return {Status::accepted, unique_fd(fd)};
    }
    switch (errno) {
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        continue;
      case EAGAIN:
        return {Status::would_block, {}};
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        return shed_one(errno);
      case EINVAL:  // the listener was shut down: we are stopping
      case EBADF:
        return {Status::stopped, {}, errno};
      default:
        return {Status::failed, {}, errno};
    }
  }
}

Acceptor::Result Acceptor::shed_one(int error) {
  if (!burst().active) {
    burst().active = true;  // once per burst, even while every attempt ends `exhausted`
    spdlog::warn("accept: {}; shedding new connections until descriptors free up",
                 std::strerror(error));
  }
  if (!reserve_) {
    reserve_ = open_reserve();  // maybe descriptors came back since last time
    if (!reserve_) return {Status::exhausted, {}, error};
  }
  reserve_.reset();
  unique_fd victim(::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC));
  const bool got_victim = static_cast<bool>(victim);
  const int victim_error = got_victim ? 0 : errno;
  // Close the victim first: it holds the very slot the reserve needs back. (Reopening first
  // left the reserve empty, so the next accept took the slot for real and the one after was
  // `exhausted` with connections stuck in the backlog.)
  victim.reset();  // the peer sees an orderly close instead of hanging in our backlog
  reserve_ = open_reserve();
  // At the limit accept4 reports EMFILE even when the backlog is empty (the descriptor is
  // allocated first), so the victim's EAGAIN means "nothing to shed": wait, don't back off.
  if (victim_error == EAGAIN || victim_error == EWOULDBLOCK) return {Status::would_block, {}, 0};
  if (!got_victim) return {Status::exhausted, {}, error};
  ++burst().shed;
  stats_.rejected.fetch_add(1, std::memory_order_relaxed);
  return {Status::shed, {}, error};
}

void Acceptor::end_burst() {
  if (burst().active) {
    burst().active = false;
    spdlog::warn("accept: descriptors available again; shed {} connection(s)", burst().shed);
    burst().shed = 0;
  }
}

}  // namespace polyecho
