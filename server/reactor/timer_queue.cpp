#include "reactor/timer_queue.hpp"

namespace polyecho {

TimerQueue::TimerId TimerQueue::arm(Clock::time_point deadline, std::uint64_t payload) {
  std::uint32_t slot;
  if (free_slots_.empty()) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.push_back({kFree, 1, 0});
    // Room for every slot to be freed, so that cancel() and pop_due() never allocate.
    free_slots_.reserve(slots_.size());
  } else {
    slot = free_slots_.back();
    free_slots_.pop_back();
  }
  slots_[slot].payload = payload;
  heap_.push_back({deadline, next_sequence_++, slot});
  sift_up(heap_.size() - 1);
  return {slot, slots_[slot].generation};
}

bool TimerQueue::cancel(TimerId id) noexcept {
  const Slot* slot = live_slot(id);
  if (slot == nullptr) return false;
  erase_at(slot->heap_index);
  return true;
}

bool TimerQueue::armed(TimerId id) const noexcept {
  return live_slot(id) != nullptr;
}

std::optional<TimerQueue::Clock::time_point> TimerQueue::next_deadline() const noexcept {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().deadline;
}

std::optional<TimerQueue::Due> TimerQueue::pop_due(Clock::time_point now) noexcept {
  if (heap_.empty() || heap_.front().deadline > now) return std::nullopt;
  const std::uint32_t slot = heap_.front().slot;
  const Due due{{slot, slots_[slot].generation}, slots_[slot].payload};
  erase_at(0);
  return due;
}

void TimerQueue::place(std::size_t index, const Node& node) noexcept {
  heap_[index] = node;
  slots_[node.slot].heap_index = static_cast<std::uint32_t>(index);
}

void TimerQueue::sift_up(std::size_t index) noexcept {
  const Node node = heap_[index];
  while (index > 0) {
    const std::size_t parent = (index - 1) / 2;
    if (!earlier(node, heap_[parent])) break;
    place(index, heap_[parent]);
    index = parent;
  }
  place(index, node);
}

void TimerQueue::sift_down(std::size_t index) noexcept {
  const Node node = heap_[index];
  const std::size_t size = heap_.size();
  for (;;) {
    std::size_t child = 2 * index + 1;
    if (child >= size) break;
    if (child + 1 < size && earlier(heap_[child + 1], heap_[child])) ++child;
    if (!earlier(heap_[child], node)) break;
    place(index, heap_[child]);
    index = child;
  }
  place(index, node);
}

// The last node fills the hole and moves up or down to where it belongs; the slot is freed
// with a new generation, so every id naming the removed timer is stale from now on.
void TimerQueue::erase_at(std::size_t index) noexcept {
  Slot& freed = slots_[heap_[index].slot];
  freed.heap_index = kFree;
  if (++freed.generation == 0) freed.generation = 1;  // 0 means "no timer"
  free_slots_.push_back(static_cast<std::uint32_t>(&freed - slots_.data()));
  const Node last = heap_.back();
  heap_.pop_back();
  if (index == heap_.size()) return;  // the removed node was the last one
  place(index, last);
  if (index > 0 && earlier(last, heap_[(index - 1) / 2]))
    sift_up(index);
  else
    sift_down(index);
}

const TimerQueue::Slot* TimerQueue::live_slot(TimerId id) const noexcept {
  if (!id || id.slot_ >= slots_.size()) return nullptr;
  const Slot& slot = slots_[id.slot_];
  return slot.generation == id.generation_ && slot.heap_index != kFree ? &slot : nullptr;
}

}  // namespace polyecho
