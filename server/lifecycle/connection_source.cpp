#include "lifecycle/connection_source.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

ConnectionSource::Taken ConnectionSource::admit(unique_fd connection) {
  auto admitted = admission_.admit(std::move(connection));
  if (!admitted) return {Status::skipped, {}};
  return counted(std::move(*admitted));
}

ConnectionSource::Taken ConnectionSource::counted(AdmittedConnection connection) noexcept {
  if (loop_ != nullptr) loop_->connections.fetch_add(1, std::memory_order_relaxed);
  return {Status::admitted, std::move(connection)};
}

ListenerSource::ListenerSource(unique_fd listener, bool shared, Admission& admission,
                               LoopStats* loop)
    : ConnectionSource(admission, loop),
      listener_(std::move(listener)),
      acceptor_(listener_.get(), admission.stats()),
      shared_(shared) {
  // A peer that resets between readiness and accept() must not hang the loop, and draining
  // the backlog ends on EAGAIN.
  set_nonblocking(listener_.get());
}

ConnectionSource::Taken ListenerSource::take() {
  auto result = acceptor_.accept_one(/*nonblocking=*/true);
  switch (result.status) {
    case Acceptor::Status::accepted:
      return admit(std::move(result.fd));
    case Acceptor::Status::shed:
      return {Status::skipped, {}};
    case Acceptor::Status::would_block:
      return {Status::would_block, {}};
    case Acceptor::Status::stopped:
      return {Status::ended, {}};
    case Acceptor::Status::failed:
      spdlog::error("accept: {}", std::strerror(result.error));
      [[fallthrough]];  // unknown trouble: back off rather than spin
    case Acceptor::Status::exhausted:
      break;
  }
  return {Status::exhausted, {}};
}

}  // namespace polyecho
