#include "lifecycle/admission.hpp"

#include <utility>

namespace polyecho {

AdmissionTicket& AdmissionTicket::operator=(AdmissionTicket&& other) noexcept {
  if (this != &other) {
    release();
    stats_ = std::exchange(other.stats_, nullptr);
    held_ = std::exchange(other.held_, nullptr);
    lease_ = std::move(other.lease_);
  }
  return *this;
}

void AdmissionTicket::release() noexcept {
  if (stats_ == nullptr) return;
  stats_->active.fetch_sub(1, std::memory_order_relaxed);
  if (held_ != nullptr) held_->fetch_sub(1, std::memory_order_relaxed);
  stats_ = nullptr;
  held_ = nullptr;
  lease_ = PeerLease{};
}

void AdmissionTicket::refuse(unique_fd connection) noexcept {
  if (stats_ != nullptr) {
    stats_->accepted.fetch_sub(1, std::memory_order_relaxed);
    stats_->rejected.fetch_add(1, std::memory_order_relaxed);
  }
  release();
  connection.reset();
}

void AdmissionTicket::leave_to_parent() noexcept {
  stats_ = nullptr;
  held_ = nullptr;
  lease_.leave_to_parent();
  lease_ = PeerLease{};
}

std::optional<AdmittedConnection> Admission::admit(unique_fd connection) {
  auto lease = peers_.admit(connection.get());
  if (!lease) {
    reject(std::move(connection));
    return std::nullopt;
  }
  // Claim first, check after: two threads (or processes) racing for the last slot cannot
  // both win, because each sees the other's increment.
  const auto before = stats_.active.fetch_add(1, std::memory_order_relaxed);
  if (before >= static_cast<std::int64_t>(max_connections_)) {
    stats_.active.fetch_sub(1, std::memory_order_relaxed);
    lease.reset();  // the place goes back before the peer can see the close
    reject(std::move(connection));
    return std::nullopt;
  }
  stats_.accepted.fetch_add(1, std::memory_order_relaxed);
  if (held_ != nullptr) held_->fetch_add(1, std::memory_order_relaxed);
  return AdmittedConnection{std::move(connection),
                            AdmissionTicket(stats_, std::move(*lease), held_)};
}

void Admission::reject(unique_fd connection) noexcept {
  connection.reset();
  stats_.rejected.fetch_add(1, std::memory_order_relaxed);
}

std::size_t Admission::held() const noexcept {
  const auto active = stats_.active.load(std::memory_order_relaxed);
  return active > 0 ? static_cast<std::size_t>(active) : 0;
}

}  // namespace polyecho
