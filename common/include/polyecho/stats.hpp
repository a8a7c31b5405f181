#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace polyecho {

// One event loop's counters: which loop served how many connections shows how a topology
// spreads them (docs/TOPOLOGIES.md). A cache line each, so loops on different cores never write
// to the same line.
struct alignas(64) LoopStats {
  std::atomic<std::uint64_t> connections{0};  // admitted and handed to this loop
};

// Server-wide counters. Lives in a MAP_SHARED anonymous mapping (see SharedStats) so that
// forked children and prefork workers add to the very same counters as the parent; the
// atomics are lock-free, which is what makes them valid across processes.
struct Stats {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::int64_t> active{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> errors{0};
  // --offload: messages whose work ran on the offload pool, the jobs waiting in its queue now
  // (a gauge), and the most that ever waited there at once (never above --offload-queue).
  // Written by the pool under its own lock; read by anyone.
  std::atomic<std::uint64_t> offloaded{0};
  std::atomic<std::int64_t> offload_queue_depth{0};
  std::atomic<std::int64_t> offload_queue_peak{0};

  // Per event loop, in every process: a loop takes the next slot when it starts (a replaced
  // worker process's loops take new ones). Loops beyond kMaxLoops are not counted.
  static constexpr std::size_t kMaxLoops = 64;
  std::atomic<std::uint32_t> loops_started{0};
  LoopStats loops[kMaxLoops];
  // This loop's slot, or null when every slot is taken. Thread-safe.
  [[nodiscard]] LoopStats* register_loop() noexcept;

  // "accepted=… rejected=… active=… bytes_in=… bytes_out=… errors=… offloaded=…
  // offload_queue_peak=…", then with two loops or more " loop_connections=A/B/…" in the order
  // the loops started.
  [[nodiscard]] std::string summary() const;
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "Stats are shared across processes; that needs lock-free atomics");

// Owner of the shared mapping that holds one Stats. Create before forking.
class SharedStats {
 public:
  SharedStats();
  ~SharedStats();
  SharedStats(const SharedStats&) = delete;
  SharedStats& operator=(const SharedStats&) = delete;
  [[nodiscard]] Stats& get() const noexcept { return *stats_; }

 private:
  Stats* stats_;
};

// Per-connection byte counts, kept in plain integers on the hot path and added to the shared
// atomics once, when the connection ends (no contended atomic per message).
struct ConnectionCounters {
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  void flush_to(Stats& stats) noexcept {
    stats.bytes_in.fetch_add(bytes_in, std::memory_order_relaxed);
    stats.bytes_out.fetch_add(bytes_out, std::memory_order_relaxed);
    bytes_in = bytes_out = 0;
  }
};

}  // namespace polyecho
