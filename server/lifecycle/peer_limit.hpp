#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace polyecho {

class PeerLimit;

// A client address: IPv4 is stored as its IPv4-mapped IPv6 form, so one key type serves both.
struct PeerAddress {
  std::array<std::uint8_t, 16> bytes{};
  friend bool operator==(const PeerAddress&, const PeerAddress&) = default;
};

// One admitted connection's place in its address's count. Move-only; gives the place back when
// destroyed. An empty lease (the limit is off, or the peer is not an IP socket) does nothing.
// Owned by whatever owns the connection, on whichever thread serves it.
class PeerLease {
 public:
  PeerLease() = default;
  PeerLease(PeerLease&& other) noexcept { *this = std::move(other); }
  PeerLease& operator=(PeerLease&& other) noexcept;
  PeerLease(const PeerLease&) = delete;
  PeerLease& operator=(const PeerLease&) = delete;
  ~PeerLease() { release(); }

  // In a forked child that inherited this lease: the parent gives the place back (when it
  // reaps the child), so this copy must not.
  void leave_to_parent() noexcept { limit_ = nullptr; }

 private:
  friend class PeerLimit;
  PeerLease(PeerLimit* limit, const PeerAddress& address, std::uint16_t owner)
      : limit_(limit), address_(address), owner_(owner) {}
  void release() noexcept;

  PeerLimit* limit_ = nullptr;
  PeerAddress address_;
  std::uint16_t owner_ = 0;
};

// --max-per-ip: how many connections one client address may hold at once, counted across every
// thread and every process of the server, so each model admits through this one gate.
//
// The table lives in a MAP_SHARED mapping created before any fork, guarded by a robust
// process-shared mutex (a worker killed inside the few-instruction critical section does not
// wedge the others). Entries are keyed by (address, owner): the owner is 0 for the master
// process and its threads, and slot + 1 for a prefork worker, so when a worker dies the master
// drops exactly that worker's places (forget_owner); all entries of one address share a probe
// run, so admit() sums them in one pass. Only connection open and close touch it, never the
// data path; with the limit off (0) nothing is mapped and admit() makes no syscall.
class PeerLimit {
 public:
  PeerLimit(std::size_t max_per_ip, std::size_t max_connections);
  ~PeerLimit();
  PeerLimit(const PeerLimit&) = delete;
  PeerLimit& operator=(const PeerLimit&) = delete;

  [[nodiscard]] bool enabled() const noexcept { return table_ != nullptr; }

  // Takes one of the peer's places (getpeername on `fd`). nullopt: the address already holds
  // max_per_ip connections, or the table is full; the caller refuses the connection.
  [[nodiscard]] std::optional<PeerLease> admit(int fd);

  // In a freshly forked prefork worker: leases taken from now on belong to `slot`.
  static void enter_worker(unsigned slot) noexcept;
  // Master: worker `slot` is gone; the connections it held are gone with it.
  void forget_owner(unsigned slot) noexcept;

  // The places `address` holds, across owners (tests and diagnostics).
  [[nodiscard]] std::size_t count(const PeerAddress& address);

 private:
  friend class PeerLease;
  struct Table;
  void release(const PeerAddress& address, std::uint16_t owner) noexcept;

  std::size_t max_per_ip_;
  std::size_t mapped_bytes_ = 0;
  Table* table_ = nullptr;
};

}  // namespace polyecho
