#include "core/accept_loop.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

BlockingAcceptLoop::BlockingAcceptLoop(ServerContext& context)
    : context_(context), acceptor_(context.listener.get(), context.stats) {
  set_nonblocking(context_.listener.get());
}

void BlockingAcceptLoop::watch_extra(int fd, std::function<void()> on_ready) {
  extra_fd_ = fd;
  on_extra_ = std::move(on_ready);
}

void BlockingAcceptLoop::run(const std::function<void(unique_fd)>& on_connection) {
  bool listener_paused = false;
  while (!stop_signal::requested()) {
    pollfd fds[3] = {{stop_signal::stop_fd(), POLLIN, 0},
                     {extra_fd_, POLLIN, 0},
                     {listener_paused ? -1 : context_.listener.get(), POLLIN, 0}};
    const int ready = ::poll(fds, 3, listener_paused ? static_cast<int>(Acceptor::kExhaustedBackoff.count()) : -1);
    if (ready < 0 && errno != EINTR) throw_errno("poll");
    listener_paused = false;
    if (stop_signal::requested()) break;
    if (ready > 0 && (fds[1].revents & POLLIN)) on_extra_();
    if (ready == 0 || (fds[2].revents & POLLIN) == 0) continue;
    // Drain what the backlog holds now; the non-blocking listener says when it is empty.
    for (;;) {
      auto result = acceptor_.accept_one(/*nonblocking=*/false);
      if (result.status == Acceptor::Status::accepted) {
        on_connection(std::move(result.fd));
        if (stop_signal::requested()) break;
        continue;
      }
      if (result.status == Acceptor::Status::shed) continue;
      if (result.status == Acceptor::Status::exhausted) listener_paused = true;
      if (result.status == Acceptor::Status::failed) {
        spdlog::error("accept: {}", std::strerror(result.error));
        listener_paused = true;  // unknown trouble: back off rather than spin
      }
      break;
    }
  }
  context_.listener.reset();
}

void reject_connection(unique_fd connection, Stats& stats) {
  connection.reset();
  stats.rejected.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace polyecho
