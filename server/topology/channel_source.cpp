#include "topology/channel_source.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "process/fd_passing.hpp"

namespace polyecho {

ChannelSource::ChannelSource(unique_fd channel, bool shared, Admission& admission, LoopStats* loop)
    : ConnectionSource(admission, loop), channel_(std::move(channel)), shared_(shared) {}

ConnectionSource::Taken ChannelSource::take() {
  ReceivedFd received = receive_fd(channel_.get());
  if (received.fd) {
    if (shedding_) {
      shedding_ = false;
      spdlog::warn("descriptors available again: no longer shedding connections");
    }
    // The master accepted it non-blocking, and O_NONBLOCK travels with the open file.
    return admit(std::move(received.fd));
  }
  if (received.closed) return {Status::ended, {}};  // the master is gone
  if (received.error == EAGAIN || received.error == EWOULDBLOCK) return {Status::would_block, {}};
  if (received.error == EPROTO) return {Status::skipped, {}};  // a record without a descriptor
  // Out of descriptors (EMFILE): the kernel closed the connection it could not install here.
  // It counts as refused, and the loop backs off instead of spinning on the next record.
  // Logged once per burst, as the Acceptor does for its own shedding.
  admission().stats().rejected.fetch_add(1, std::memory_order_relaxed);
  if (!shedding_) {
    shedding_ = true;
    spdlog::warn("{}: shedding new connections passed by the master until descriptors free up",
                 std::strerror(received.error));
  }
  return {Status::exhausted, {}};
}

}  // namespace polyecho
