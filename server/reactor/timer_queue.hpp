#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

namespace polyecho {

// The reactor's general timer facility: one-shot timers ordered by deadline, each carrying a
// payload the loop interprets (the reactor stores the fd of the connection whose wait ends).
//  - A binary min-heap keyed by (deadline, arm order): arm, cancel and pop are O(log n),
//    next_deadline() is O(1). Timers with the same deadline fire in the order they were armed.
//  - Cancellation is exact, not lazy: each timer's slot knows where it sits in the heap, so
//    cancel() takes it out at once. The heap never holds a dead timer, its size is the number
//    armed (one per waiting connection at most), and next_deadline() is always a live one: a
//    closed connection's timer cannot wake the loop for nothing.
//  - No allocation per timer once the vectors have grown to the most timers ever armed at
//    once: the slots of fired and cancelled timers are reused, and a generation count in each
//    TimerId makes an id whose timer is gone harmless (cancel() and armed() see it is stale).
// The idle timeout does not live here: every connection has the same one, so the reactor's
// activity list is already in deadline order and refreshing it is an O(1) splice, where a heap
// would pay O(log n) on every read.
// Not thread-safe: owned and used by one loop thread.
class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Names one armed timer. Default-constructed: no timer (false).
  class TimerId {
   public:
    TimerId() = default;
    explicit operator bool() const noexcept { return generation_ != 0; }
    friend bool operator==(TimerId, TimerId) = default;

   private:
    friend class TimerQueue;
    TimerId(std::uint32_t slot, std::uint32_t generation) : slot_(slot), generation_(generation) {}
    std::uint32_t slot_ = 0;
    std::uint32_t generation_ = 0;  // 0: none; a live slot's generation is never 0
  };

  // A timer whose deadline came: it is no longer armed when the caller sees it.
  struct Due {
    TimerId id;
    std::uint64_t payload;
  };

  TimerId arm(Clock::time_point deadline, std::uint64_t payload);
  // Takes the timer out; false if it already fired or was cancelled (or `id` names none).
  bool cancel(TimerId id) noexcept;
  [[nodiscard]] bool armed(TimerId id) const noexcept;

  // The earliest deadline armed, nullopt when none is: what the loop's wait must not outsleep.
  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const noexcept;
  // Removes and returns the earliest timer if its deadline is at or before `now`. A loop calls
  // it until nullopt; timers armed meanwhile for later than `now` end the round.
  [[nodiscard]] std::optional<Due> pop_due(Clock::time_point now) noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }
  [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }

 private:
  struct Node {
    Clock::time_point deadline;
    std::uint64_t sequence;  // arm order: breaks ties between equal deadlines
    std::uint32_t slot;
  };
  struct Slot {
    std::uint32_t heap_index;  // where its node is; kFree when the slot holds no timer
    std::uint32_t generation;
    std::uint64_t payload;
  };
  static constexpr std::uint32_t kFree = UINT32_MAX;

  [[nodiscard]] static bool earlier(const Node& a, const Node& b) noexcept {
    return a.deadline < b.deadline || (a.deadline == b.deadline && a.sequence < b.sequence);
  }
  void place(std::size_t index, const Node& node) noexcept;
  void sift_up(std::size_t index) noexcept;
  void sift_down(std::size_t index) noexcept;
  void erase_at(std::size_t index) noexcept;
  [[nodiscard]] const Slot* live_slot(TimerId id) const noexcept;

  std::vector<Node> heap_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::uint64_t next_sequence_ = 0;
};

}  // namespace polyecho
