#include "polyecho/stats.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <system_error>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

namespace {

// The calling thread's slot, and whose Stats it belongs to (tests may hold several).
thread_local TrafficSlot* tls_slot = nullptr;
thread_local const Stats* tls_owner = nullptr;

// A forked child starts as a copy of the thread that forked, thread-locals included: it would
// keep writing its parent's slot (a fork-per-connection model: every child the same one).
// The child handler runs in the child's only thread, so it resets exactly that copy.
void forget_slot_in_child() noexcept {
  tls_slot = nullptr;
  tls_owner = nullptr;
}

}  // namespace

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::protocol:
      return "protocol";
    case ErrorKind::connection:
      return "connection";
    case ErrorKind::process:
      return "process";
  }
  return "unknown";
}

TrafficSlot& Stats::this_thread() noexcept {
  if (tls_owner != this) {
    const auto slot = traffic_slots_taken.fetch_add(1, std::memory_order_relaxed);
    tls_slot = &traffic[slot % kTrafficSlots];
    tls_owner = this;
  }
  return *tls_slot;
}

TrafficTotals Stats::traffic_totals() const noexcept {
  TrafficTotals totals;
  const std::size_t used =
      std::min<std::size_t>(traffic_slots_taken.load(std::memory_order_relaxed), kTrafficSlots);
  for (std::size_t i = 0; i < used; ++i) {
    const TrafficSlot& slot = traffic[i];
    // Replies before requests, bytes out before bytes in, so a reader does not see more out
    // than in (on x86; relaxed atomics promise no order elsewhere: a rate is what counts).
    totals.messages_out += slot.messages_out.load(std::memory_order_relaxed);
    totals.bytes_out += slot.bytes_out.load(std::memory_order_relaxed);
    totals.messages_in += slot.messages_in.load(std::memory_order_relaxed);
    totals.bytes_in += slot.bytes_in.load(std::memory_order_relaxed);
    totals.latency_sum_ns += slot.latency_sum_ns.load(std::memory_order_relaxed);
    for (std::size_t b = 0; b < kLatencyBuckets; ++b)
      totals.latency_buckets[b] += slot.latency_buckets[b].load(std::memory_order_relaxed);
  }
  return totals;
}

void StatsObserver::received(std::size_t bytes, std::size_t messages) noexcept {
  TrafficSlot& slot = stats_.this_thread();
  slot.bytes_in.fetch_add(bytes, std::memory_order_relaxed);
  if (messages > 0) slot.messages_in.fetch_add(messages, std::memory_order_relaxed);
}

void StatsObserver::replied(std::size_t messages, Clock::duration latency) noexcept {
  TrafficSlot& slot = stats_.this_thread();
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count()));
  std::size_t bucket = 0;
  while (bucket < kLatencyBoundsNs.size() && ns > kLatencyBoundsNs[bucket]) ++bucket;
  slot.messages_out.fetch_add(messages, std::memory_order_relaxed);
  slot.latency_sum_ns.fetch_add(ns * messages, std::memory_order_relaxed);
  slot.latency_buckets[bucket].fetch_add(messages, std::memory_order_relaxed);
}

void StatsObserver::sent(std::size_t bytes) noexcept {
  stats_.this_thread().bytes_out.fetch_add(bytes, std::memory_order_relaxed);
}

LoopStats* Stats::register_loop() noexcept {
  const auto slot = loops_started.fetch_add(1, std::memory_order_relaxed);
  return slot < kMaxLoops ? &loops[slot] : nullptr;
}

std::string Stats::summary() const {
  const TrafficTotals totals = traffic_totals();
  std::string line = fmt::format(
      "accepted={} rejected={} active={} bytes_in={} bytes_out={} errors={} offloaded={} "
      "offload_queue_peak={}",
      accepted.load(), rejected.load(), active.load(), totals.bytes_in, totals.bytes_out,
      errors.load(), offloaded.load(), offload_queue_peak.load());
  const std::size_t counted = std::min<std::size_t>(loops_started.load(), kMaxLoops);
  if (counted > 1) {
    line += " loop_connections=";
    for (std::size_t i = 0; i < counted; ++i) {
      if (i > 0) line += '/';
      line += std::to_string(loops[i].connections.load());
    }
  }
  return line;
}

SharedStats::SharedStats() {
  // Before any fork, once per program: every child forgets the slot of the thread that forked.
  static const int registered = ::pthread_atfork(nullptr, nullptr, forget_slot_in_child);
  if (registered != 0)
    throw std::system_error(registered, std::generic_category(), "pthread_atfork");
  void* memory =
      ::mmap(nullptr, sizeof(Stats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw_errno("mmap(stats)");
  stats_ = new (memory) Stats();
}

SharedStats::~SharedStats() {
  stats_->~Stats();
  ::munmap(stats_, sizeof(Stats));
}

}  // namespace polyecho
