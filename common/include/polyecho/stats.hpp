#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "polyecho/message_observer.hpp"

namespace polyecho {

// One event loop's counters: which loop served how many connections shows how a topology
// spreads them (docs/TOPOLOGIES.md). A cache line each, so loops on different cores never write
// to the same line.
struct alignas(64) LoopStats {
  std::atomic<std::uint64_t> connections{0};  // admitted and handed to this loop
  // Each return from the loop's wait (epoll_wait, poll, io_uring_enter...) and the events it
  // brought: events per wakeup is how much work one syscall buys. Written by the loop only.
  std::atomic<std::uint64_t> wakeups{0};
  std::atomic<std::uint64_t> events{0};
  // Waits put off by --wait-moderation (poll and select after a stream). Written by the loop.
  std::atomic<std::uint64_t> moderated{0};
  void record_wait(std::size_t ready) noexcept {
    wakeups.fetch_add(1, std::memory_order_relaxed);
    events.fetch_add(ready, std::memory_order_relaxed);
  }
};

// Why a connection counted as an error (Stats::errors is their sum).
enum class ErrorKind : std::uint8_t {
  protocol,    // the peer broke the protocol: a line or frame too long, a frame cut short
  connection,  // a reset or another socket error ended the connection
  process,     // a child or worker process died and took its connections with it
};
inline constexpr std::size_t kErrorKinds = 3;
[[nodiscard]] const char* to_string(ErrorKind kind) noexcept;

// Upper bounds of the message latency histogram's buckets, in nanoseconds (the last bucket,
// +Inf, is implicit): 1 µs to 1 s in 1-2.5-5 steps.
inline constexpr std::array<std::uint64_t, 19> kLatencyBoundsNs = {
    1'000,      2'500,       5'000,       10'000,      25'000,       50'000,     100'000,
    250'000,    500'000,     1'000'000,   2'500'000,   5'000'000,    10'000'000, 25'000'000,
    50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000};
inline constexpr std::size_t kLatencyBuckets = kLatencyBoundsNs.size() + 1;

// Traffic counters of one thread (or a few, see Stats::this_thread), moved once per read,
// send or released message: live figures without a shared cache line on the hot path. Only
// the threads that picked this slot write it, so its atomics are uncontended.
struct alignas(64) TrafficSlot {
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> messages_in{0};
  std::atomic<std::uint64_t> messages_out{0};
  std::atomic<std::uint64_t> latency_sum_ns{0};
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets> latency_buckets{};  // not cumulative
};

// A consistent-enough sum of every TrafficSlot (each counter is read once; they move while
// summed, so a reader may see a message in before its reply; no counter ever goes back).
struct TrafficTotals {
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t messages_in = 0;
  std::uint64_t messages_out = 0;
  std::uint64_t latency_sum_ns = 0;
  std::array<std::uint64_t, kLatencyBuckets> latency_buckets{};
};

// Server-wide counters. Lives in a MAP_SHARED anonymous mapping (see SharedStats) so that
// forked children and prefork workers add to the very same counters as the parent; the
// atomics are lock-free, which is what makes them valid across processes.
struct Stats {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::int64_t> active{0};
  std::atomic<std::uint64_t> errors{0};
  std::array<std::atomic<std::uint64_t>, kErrorKinds> errors_by_kind{};
  void count_error(ErrorKind kind, std::uint64_t n = 1) noexcept {
    errors.fetch_add(n, std::memory_order_relaxed);
    errors_by_kind[static_cast<std::size_t>(kind)].fetch_add(n, std::memory_order_relaxed);
  }
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

  // Traffic slots, shared by every process. A thread takes the next one the first time it
  // counts (a forked child's thread takes a new one too, see this_thread()); with more threads
  // than slots they wrap around and share, which stays exact (atomic adds), only less cheap.
  static constexpr std::size_t kTrafficSlots = 256;
  std::atomic<std::uint32_t> traffic_slots_taken{0};
  TrafficSlot traffic[kTrafficSlots];
  // The calling thread's slot. Thread-safe; a thread-local lookup after the first call.
  [[nodiscard]] TrafficSlot& this_thread() noexcept;
  [[nodiscard]] TrafficTotals traffic_totals() const noexcept;

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

// The server's MessageObserver: every Session reports into the calling thread's TrafficSlot,
// with steady_clock (vDSO, no syscall) as its clock. One per server, shared by every thread.
class StatsObserver final : public MessageObserver {
 public:
  explicit StatsObserver(Stats& stats) noexcept : stats_(stats) {}
  [[nodiscard]] Clock::time_point now() const noexcept override { return Clock::now(); }
  void received(std::size_t bytes, std::size_t messages) noexcept override;
  void replied(std::size_t messages, Clock::duration latency) noexcept override;
  void sent(std::size_t bytes) noexcept override;

 private:
  Stats& stats_;
};

}  // namespace polyecho
