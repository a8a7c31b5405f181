#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "lifecycle/peer_limit.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// One admitted connection's right to be served: its --max-per-ip place (PeerLease) and one
// active slot of --max-connections, counted in Stats. Move-only; whoever owns the connection
// owns its ticket, on whichever thread serves it, and destroying the ticket gives both back.
// An empty (default-constructed or moved-from) ticket holds nothing.
class AdmissionTicket {
 public:
  AdmissionTicket() = default;
  AdmissionTicket(AdmissionTicket&& other) noexcept { *this = std::move(other); }
  AdmissionTicket& operator=(AdmissionTicket&& other) noexcept;
  AdmissionTicket(const AdmissionTicket&) = delete;
  AdmissionTicket& operator=(const AdmissionTicket&) = delete;
  ~AdmissionTicket() { release(); }

  [[nodiscard]] explicit operator bool() const noexcept { return stats_ != nullptr; }

  // The admitted connection will not be served after all (its setup failed, the hand-off
  // queue is full, the drain already cut everything): the slot and the place are given back,
  // the connection is closed and it counts as rejected instead of accepted.
  void refuse(unique_fd connection) noexcept;

  // In a forked child that inherited this ticket: the parent keeps the real one and gives it
  // back when it reaps the child, so this copy must do nothing.
  void leave_to_parent() noexcept;

 private:
  friend class Admission;
  AdmissionTicket(Stats& stats, PeerLease lease, std::atomic<std::int64_t>* held) noexcept
      : stats_(&stats), held_(held), lease_(std::move(lease)) {}
  void release() noexcept;

  Stats* stats_ = nullptr;
  std::atomic<std::int64_t>* held_ = nullptr;
  PeerLease lease_;
};

// A connection that passed admission, with its ticket. The ticket outlives nothing it should
// not: declare it before anything that must be closed first.
struct AdmittedConnection {
  unique_fd fd;
  AdmissionTicket ticket;
};

// The one gate every model admits connections through, in the same order everywhere: the
// peer's --max-per-ip place first, then an active slot against --max-connections. Both counts
// are process-wide (Stats and PeerLimit live in shared memory), so threads and forked
// processes admit against the same numbers, exactly: the slot is claimed with one atomic add
// and given back if it overshot. Refusing is the same everywhere too: the connection is closed
// at once and counted as rejected (PeerLimit logs its own refusals, rate-limited).
// Thread-safe; the per-process `held` counter is set once per process, before serving.
class Admission {
 public:
  Admission(std::size_t max_connections, Stats& stats, PeerLimit& peers) noexcept
      : max_connections_(max_connections), stats_(stats), peers_(peers) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // nullopt: refused (the connection is closed and counted). Otherwise the connection is
  // counted as accepted and active until its ticket is destroyed.
  [[nodiscard]] std::optional<AdmittedConnection> admit(unique_fd connection);

  // Closes a connection the model will not even try to admit (its queue is full, it is
  // stopping) and counts it as rejected.
  void reject(unique_fd connection) noexcept;

  // Connections the server holds now: served, plus any admitted and waiting in a queue.
  [[nodiscard]] std::size_t held() const noexcept;
  [[nodiscard]] std::size_t max_connections() const noexcept { return max_connections_; }

  // In a prefork worker: every ticket of this process also counts in `held`, which the master
  // reads (shared memory) to take a dead worker's connections back out of Stats.
  void count_held_in(std::atomic<std::int64_t>* held) noexcept { held_ = held; }

  [[nodiscard]] Stats& stats() const noexcept { return stats_; }
  [[nodiscard]] PeerLimit& peers() const noexcept { return peers_; }

 private:
  std::size_t max_connections_;
  Stats& stats_;
  PeerLimit& peers_;
  std::atomic<std::int64_t>* held_ = nullptr;
};

}  // namespace polyecho
