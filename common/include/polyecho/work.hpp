#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace polyecho {

// Per-message work (--work KIND:MICROSECONDS, --gil): what makes the models differ. Done once
// per message, before that message's echo is released, so the client's latency includes it.
//  - cpu:   N µs of real computation over the message bytes (calibrated at start-up).
//  - block: a blocking call that sleeps N µs on the thread handling the message, the shape of
//           a synchronous database call.
//  - wait:  the same wait done each model's own non-blocking way (a timer in a reactor, an
//           io_uring timeout, an awaited timer, a fiber sleep); blocking models just sleep,
//           since blocking is their model.
// This file holds what every model shares: the parsed knob, the CPU kernel and the GIL. How a
// model waits is the model's business.
enum class WorkKind { none, cpu, block, wait };

struct WorkConfig {
  WorkKind kind = WorkKind::none;
  std::chrono::microseconds duration{0};
  // --gil: cpu and block work hold one process-wide lock, the shape of CPython's GIL, so
  // threads run such work one at a time. Waits do not hold it (CPython releases the GIL
  // around IO too).
  bool gil = false;

  [[nodiscard]] bool enabled() const noexcept { return kind != WorkKind::none; }
};

// "cpu:100", "block:2000", "wait:200000" (microseconds, 1 to 60 000 000). nullopt, with the
// reason in `error`, for anything else.
[[nodiscard]] std::optional<WorkConfig> parse_work(std::string_view text, std::string& error);
[[nodiscard]] std::string to_string(const WorkConfig& work);

// The CPU kernel: a serial hash over the message bytes (a fixed pattern when the message is
// empty), each round depending on the previous one so it can be neither vectorised nor folded
// away; the result is published to a global the compiler must assume is read. It only reads
// the message, so the echo is unchanged.
class CpuWork {
 public:
  // Measures how many rounds take a microsecond on this machine (best of a few short runs, a
  // few milliseconds in all). Idempotent and thread-safe; call once at start-up.
  static void calibrate();
  [[nodiscard]] static double rounds_per_microsecond() noexcept;
  // Runs the kernel for about `duration` over `message`. Calibrates first if nobody did.
  static std::uint64_t run(std::span<const char> message, std::chrono::microseconds duration);
  // The kernel itself, `rounds` rounds: exposed for calibration and tests.
  static std::uint64_t rounds(std::span<const char> message, std::uint64_t rounds) noexcept;
};

// The process-wide lock behind --gil.
[[nodiscard]] std::mutex& global_interpreter_lock() noexcept;

// Sleeps `duration` on the calling thread (nanosleep, resumed after EINTR until it has slept
// the whole time).
void sleep_for_work(std::chrono::microseconds duration) noexcept;

// Does cpu or block work on the calling thread, under the GIL when configured. A wait is done
// here too, as a plain sleep: for the blocking models, whose thread belongs to the connection.
void work_inline(const WorkConfig& work, std::span<const char> message);

}  // namespace polyecho
