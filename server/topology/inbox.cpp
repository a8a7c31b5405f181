#include "topology/inbox.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

Inbox::Inbox(std::size_t capacity) : slots_(capacity == 0 ? 1 : capacity) {
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) throw_errno("eventfd");
}

Inbox::~Inbox() {
  close();
}

bool Inbox::push(AdmittedConnection& connection) {
  bool was_empty = false;
  {
    const std::lock_guard lock(mutex_);
    if (closed_ || size_ == slots_.size()) return false;
    was_empty = size_ == 0;
    slots_[(head_ + size_) % slots_.size()] = std::move(connection);
    ++size_;
  }
  if (was_empty) {
    const std::uint64_t one = 1;
    // Only EAGAIN can fail here (the counter is at its maximum), and then it is readable anyway.
    [[maybe_unused]] const auto n = ::write(wake_.get(), &one, sizeof one);
  }
  return true;
}

bool Inbox::pop_locked(AdmittedConnection& out) {
  if (size_ == 0) return false;
  out = std::move(slots_[head_]);
  head_ = (head_ + 1) % slots_.size();
  --size_;
  return true;
}

bool Inbox::pop(AdmittedConnection& out) {
  {
    const std::lock_guard lock(mutex_);
    if (pop_locked(out)) return true;
  }
  // Empty: clear the wake, then look again. A push that found the queue empty after our look
  // wrote the eventfd before or after this read; either way the second look or the next wake
  // sees its connection.
  std::uint64_t count = 0;
  [[maybe_unused]] const auto n = ::read(wake_.get(), &count, sizeof count);
  const std::lock_guard lock(mutex_);
  return pop_locked(out);
}

void Inbox::close() noexcept {
  std::vector<AdmittedConnection> refused;
  {
    const std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    refused.reserve(size_);
    AdmittedConnection c;
    while (pop_locked(c)) refused.push_back(std::move(c));
  }
  for (auto& c : refused) c.ticket.refuse(std::move(c.fd));  // outside the lock: they close
}

ConnectionSource::Taken InboxSource::take() {
  AdmittedConnection connection;
  if (!inbox_.pop(connection)) return {Status::would_block, {}};
  return counted(std::move(connection));
}

}  // namespace polyecho
