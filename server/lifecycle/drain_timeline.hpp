#pragma once

#include <chrono>
#include <optional>

namespace polyecho {

// The stop sequence every model follows, as one value. Before stop() it is `serving`. Then:
//  - draining: no new connections; the open ones run on as usual, until --drain-timeout;
//  - flushing: input is cut (read no more, as after the peer's EOF) but everything already
//    received is still echoed, for kFlushGrace;
//  - closing: whatever is left (a peer that does not read) is closed.
// A model asks which phase it is in at a time it chooses and sleeps until next_deadline();
// advance() reports each phase once, for loops that act on entering it.
// A plain value: not thread-safe; each loop keeps its own (all of them start from the same
// stop signal, so their phases line up).
class DrainTimeline {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Phase { serving, draining, flushing, closing };

  // How long connections whose input was cut get to flush what they owe.
  static constexpr std::chrono::milliseconds kFlushGrace{1000};

  explicit DrainTimeline(std::chrono::milliseconds drain_timeout,
                         std::chrono::milliseconds flush_grace = kFlushGrace) noexcept
      : drain_timeout_(drain_timeout), flush_grace_(flush_grace) {}

  // The stop was requested at `now`. Later calls change nothing.
  void stop(Clock::time_point now) noexcept {
    if (stopped_) return;
    stopped_ = true;
    cut_at_ = now + drain_timeout_;
    close_at_ = cut_at_ + flush_grace_;
  }
  [[nodiscard]] bool stopping() const noexcept { return stopped_; }

  [[nodiscard]] Phase phase(Clock::time_point now) const noexcept {
    if (!stopped_) return Phase::serving;
    if (now < cut_at_) return Phase::draining;
    if (now < close_at_) return Phase::flushing;
    return Phase::closing;
  }

  // The phase at `now` if it differs from the one the previous call reported, else nullopt.
  // A loop that wakes late skips nothing it must do: from draining straight to closing it
  // still learns `closing`, and closing everything also covers the cut.
  [[nodiscard]] std::optional<Phase> advance(Clock::time_point now) noexcept {
    const Phase now_phase = phase(now);
    if (now_phase == reported_) return std::nullopt;
    reported_ = now_phase;
    return now_phase;
  }

  // When the phase at `now` ends: the input cut while draining, the close while flushing;
  // nullopt while serving (no deadline yet) and once closing (none left).
  [[nodiscard]] std::optional<Clock::time_point> next_deadline(
      Clock::time_point now) const noexcept {
    switch (phase(now)) {
      case Phase::draining:
        return cut_at_;
      case Phase::flushing:
        return close_at_;
      case Phase::serving:
      case Phase::closing:
        break;
    }
    return std::nullopt;
  }

  // The two instants, for models that wait on them directly (a blocking drain).
  [[nodiscard]] Clock::time_point input_cut_at() const noexcept { return cut_at_; }
  [[nodiscard]] Clock::time_point close_at() const noexcept { return close_at_; }

 private:
  std::chrono::milliseconds drain_timeout_;
  std::chrono::milliseconds flush_grace_;
  bool stopped_ = false;
  Phase reported_ = Phase::serving;
  Clock::time_point cut_at_{};
  Clock::time_point close_at_{};
};

}  // namespace polyecho
