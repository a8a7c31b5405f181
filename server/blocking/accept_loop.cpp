#include "blocking/accept_loop.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

BlockingAcceptLoop::BlockingAcceptLoop(ServerContext& context)
    : owned_listener_(&context.listener),
      listen_fd_(context.listener.get()),
      acceptor_(listen_fd_, context.stats) {
  set_nonblocking(listen_fd_);
}

BlockingAcceptLoop::BlockingAcceptLoop(int shared_listener, Stats& stats)
    : owned_listener_(nullptr), listen_fd_(shared_listener), acceptor_(shared_listener, stats) {
  // O_NONBLOCK lives on the open file, so every sharer sees it: a thread that loses the race
  // for a connection gets EAGAIN instead of blocking in accept() past a stop request.
  set_nonblocking(listen_fd_);
}

void BlockingAcceptLoop::watch_extra(int fd, std::function<void()> on_ready) {
  extras_.push_back({fd, std::move(on_ready)});
}

void BlockingAcceptLoop::run(const std::function<void(unique_fd)>& on_connection) {
  // [stop fd | extras... | listener]; built once, the listener slot is -1 while paused.
  std::vector<pollfd> fds{{stop_signal::stop_fd(), POLLIN, 0}};
  for (const auto& extra : extras_) fds.push_back({extra.fd, POLLIN, 0});
  fds.push_back({listen_fd_, POLLIN, 0});
  pollfd& listener = fds.back();
  bool listener_paused = false;
  bool listener_gone = false;  // shut down by the pool's owner: this loop is done
  while (!stop_signal::requested() && !listener_gone) {
    listener.fd = listener_paused ? -1 : listen_fd_;
    const int ready =
        ::poll(fds.data(), fds.size(),
               listener_paused ? static_cast<int>(Acceptor::kExhaustedBackoff.count()) : -1);
    if (ready < 0 && errno != EINTR) throw_errno("poll");
    listener_paused = false;
    if (stop_signal::requested()) break;
    for (std::size_t i = 0; ready > 0 && i < extras_.size(); ++i) {
      if (fds[i + 1].revents & POLLIN) extras_[i].on_ready();
    }
    // Any event counts: a listener shut down by its owner reports POLLHUP, and accept() then
    // says EINVAL (stopped) rather than leaving us to spin.
    if (ready <= 0 || listener.revents == 0) continue;
    // Drain what the backlog holds now; the non-blocking listener says when it is empty.
    for (;;) {
      auto result = acceptor_.accept_one(nonblocking_);
      if (result.status == Acceptor::Status::accepted) {
        on_connection(std::move(result.fd));
        if (stop_signal::requested()) break;
        continue;
      }
      if (result.status == Acceptor::Status::shed) continue;
      if (result.status == Acceptor::Status::exhausted) listener_paused = true;
      if (result.status == Acceptor::Status::stopped) listener_gone = true;
      if (result.status == Acceptor::Status::failed) {
        spdlog::error("accept: {}", std::strerror(result.error));
        listener_paused = true;  // unknown trouble: back off rather than spin
      }
      break;
    }
  }
  if (owned_listener_ != nullptr) owned_listener_->reset();
}

}  // namespace polyecho
