#include "lifecycle/peer_limit.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

namespace {

// Who takes leases in this process: 0 in the master, slot + 1 in a prefork worker. Written
// once right after fork, before the worker starts any thread.
std::uint16_t process_owner = 0;

struct Entry {
  PeerAddress address;
  std::uint16_t owner;
  std::uint32_t count;  // 0: the slot is free
};

std::size_t home_of(const PeerAddress& address, std::size_t mask) noexcept {
  std::uint64_t hash = 14695981039346656037ull;  // FNV-1a: short keys, no allocation
  for (const std::uint8_t byte : address.bytes) hash = (hash ^ byte) * 1099511628211ull;
  return static_cast<std::size_t>(hash ^ (hash >> 32)) & mask;
}

std::optional<PeerAddress> peer_of(int fd) {
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return std::nullopt;
  PeerAddress address;
  if (peer.ss_family == AF_INET) {
    address.bytes[10] = address.bytes[11] = 0xff;
    std::memcpy(&address.bytes[12], &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, 4);
  } else if (peer.ss_family == AF_INET6) {
    std::memcpy(address.bytes.data(), &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, 16);
  } else {
    return std::nullopt;
  }
  return address;
}

std::string to_text(const PeerAddress& address) {
  char text[INET6_ADDRSTRLEN] = "?";
  const bool mapped = std::all_of(address.bytes.begin(), address.bytes.begin() + 10,
                                  [](std::uint8_t b) { return b == 0; }) &&
                      address.bytes[10] == 0xff && address.bytes[11] == 0xff;
  if (mapped) {
    ::inet_ntop(AF_INET, &address.bytes[12], text, sizeof text);
  } else {
    ::inet_ntop(AF_INET6, address.bytes.data(), text, sizeof text);
  }
  return text;
}

// A refusal is worth a log line, a flood of them is not: at most one per second per process.
void log_refusal(const PeerAddress& address, std::size_t open, std::size_t limit) {
  static std::atomic<std::int64_t> last_ms{-1000};
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  std::int64_t last = last_ms.load(std::memory_order_relaxed);
  if (now_ms - last < 1000 || !last_ms.compare_exchange_strong(last, now_ms)) return;
  spdlog::warn("max-per-ip: refusing a connection from {} ({} open, limit {})", to_text(address),
               open, limit);
}

}  // namespace

// The mapping: this header, then `mask + 1` entries.
struct PeerLimit::Table {
  pthread_mutex_t mutex;
  std::size_t mask;  // capacity - 1; capacity is a power of two

  // Robust: if a process dies holding the mutex, the next locker is told (EOWNERDEAD) and
  // takes over instead of waiting forever.
  class Lock {
   public:
    explicit Lock(Table& table) : mutex_(&table.mutex) {
      if (::pthread_mutex_lock(mutex_) == EOWNERDEAD) ::pthread_mutex_consistent(mutex_);
    }
    ~Lock() { ::pthread_mutex_unlock(mutex_); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    pthread_mutex_t* mutex_;
  };

  Entry& at(std::size_t i) noexcept { return reinterpret_cast<Entry*>(this + 1)[i & mask]; }

  // Linear probing with backward-shift deletion: no tombstones, so probe runs stay short.
  void erase(std::size_t hole) noexcept {
    for (std::size_t next = hole + 1; next - hole <= mask; ++next) {
      Entry& candidate = at(next);
      if (candidate.count == 0) break;
      const std::size_t home = home_of(candidate.address, mask);
      // The candidate may fill the hole only if its home is not cyclically in (hole, next].
      const std::size_t distance_to_hole = (hole - home) & mask;
      const std::size_t distance_to_next = (next - home) & mask;
      if (distance_to_hole < distance_to_next) {
        at(hole) = candidate;
        hole = next;
      }
    }
    at(hole).count = 0;
  }

  bool insert(const Entry& entry) noexcept {
    for (std::size_t i = home_of(entry.address, mask), probes = 0; probes <= mask; ++i, ++probes) {
      if (at(i).count == 0) {
        at(i) = entry;
        return true;
      }
    }
    return false;
  }
};

PeerLease& PeerLease::operator=(PeerLease&& other) noexcept {
  if (this != &other) {
    release();
    limit_ = std::exchange(other.limit_, nullptr);
    address_ = other.address_;
    owner_ = other.owner_;
  }
  return *this;
}

void PeerLease::release() noexcept {
  if (limit_ != nullptr) std::exchange(limit_, nullptr)->release(address_, owner_);
}

PeerLimit::PeerLimit(std::size_t max_per_ip, std::size_t max_connections)
    : max_per_ip_(max_per_ip) {
  if (max_per_ip == 0) return;
  // Every entry holds at least one open connection, so twice --max-connections keeps the
  // table at most half full (several acceptors may overshoot that limit by a little).
  const std::size_t capacity =
      std::bit_ceil(std::clamp<std::size_t>(2 * max_connections, 1024, std::size_t{1} << 20));
  static_assert(sizeof(Table) % alignof(Entry) == 0);
  mapped_bytes_ = sizeof(Table) + capacity * sizeof(Entry);
  void* memory =
      ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw_errno("mmap(peer table)");
  table_ = static_cast<Table*>(memory);  // zero-filled: every entry free
  table_->mask = capacity - 1;
  pthread_mutexattr_t attributes;
  ::pthread_mutexattr_init(&attributes);
  ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  ::pthread_mutex_init(&table_->mutex, &attributes);
  ::pthread_mutexattr_destroy(&attributes);
}

PeerLimit::~PeerLimit() {
  if (table_ == nullptr) return;
  ::pthread_mutex_destroy(&table_->mutex);
  ::munmap(table_, mapped_bytes_);
}

std::optional<PeerLease> PeerLimit::admit(int fd) {
  if (table_ == nullptr) return PeerLease();
  const auto address = peer_of(fd);
  // Not an IP peer, or already gone: nothing to count (the model's own IO sees the error).
  if (!address) return PeerLease();
  const std::uint16_t owner = process_owner;
  std::size_t open = 0;
  {
    Table::Lock lock(*table_);
    Entry* mine = nullptr;
    Entry* free_slot = nullptr;
    for (std::size_t i = home_of(*address, table_->mask), probes = 0; probes <= table_->mask;
         ++i, ++probes) {
      Entry& entry = table_->at(i);
      if (entry.count == 0) {
        free_slot = &entry;
        break;
      }
      if (entry.address == *address) {
        open += entry.count;
        if (entry.owner == owner) mine = &entry;
      }
    }
    if (open < max_per_ip_ && (mine != nullptr || free_slot != nullptr)) {
      if (mine != nullptr) {
        ++mine->count;
      } else {
        *free_slot = Entry{*address, owner, 1};
      }
      return PeerLease(this, *address, owner);
    }
  }
  log_refusal(*address, open, max_per_ip_);
  return std::nullopt;
}

void PeerLimit::release(const PeerAddress& address, std::uint16_t owner) noexcept {
  Table::Lock lock(*table_);
  for (std::size_t i = home_of(address, table_->mask), probes = 0; probes <= table_->mask;
       ++i, ++probes) {
    Entry& entry = table_->at(i);
    if (entry.count == 0) return;  // not found: forget_owner() already dropped it
    if (entry.address == address && entry.owner == owner) {
      if (--entry.count == 0) table_->erase(i & table_->mask);
      return;
    }
  }
}

void PeerLimit::enter_worker(unsigned slot) noexcept {
  process_owner = static_cast<std::uint16_t>(slot + 1);
}

void PeerLimit::forget_owner(unsigned slot) noexcept {
  if (table_ == nullptr) return;
  const auto owner = static_cast<std::uint16_t>(slot + 1);
  Table::Lock lock(*table_);
  // Rare (a worker died): rebuild the table without that owner's entries.
  std::vector<Entry> kept;
  for (std::size_t i = 0; i <= table_->mask; ++i) {
    Entry& entry = table_->at(i);
    if (entry.count > 0 && entry.owner != owner) kept.push_back(entry);
    entry.count = 0;
  }
  for (const Entry& entry : kept) table_->insert(entry);
}

std::size_t PeerLimit::count(const PeerAddress& address) {
  if (table_ == nullptr) return 0;
  Table::Lock lock(*table_);
  std::size_t open = 0;
  for (std::size_t i = home_of(address, table_->mask), probes = 0; probes <= table_->mask;
       ++i, ++probes) {
    const Entry& entry = table_->at(i);
    if (entry.count == 0) break;
    if (entry.address == address) open += entry.count;
  }
  return open;
}

}  // namespace polyecho
