#include "polyecho/work.hpp"

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>

namespace polyecho {

namespace {

constexpr std::uint64_t kMaxMicroseconds = 60'000'000;
constexpr std::uint64_t kCalibrationRounds = 1 << 20;
constexpr int kCalibrationRuns = 5;
// When the message is empty (a zero-length frame) the kernel still has bytes to chew on.
constexpr char kFiller[] = "polyecho cpu work over an empty message";

// Where each run's result goes: a relaxed store to an atomic the compiler cannot prove unread.
std::atomic<std::uint64_t> g_sink{0};
std::atomic<double> g_rounds_per_us{0.0};
std::once_flag g_calibrated;

std::string_view kind_name(WorkKind kind) {
  switch (kind) {
    case WorkKind::cpu:
      return "cpu";
    case WorkKind::block:
      return "block";
    case WorkKind::wait:
      return "wait";
    case WorkKind::none:
      break;
  }
  return "none";
}

}  // namespace

std::optional<WorkConfig> parse_work(std::string_view text, std::string& error) {
  const auto colon = text.find(':');
  const std::string_view kind = text.substr(0, colon);
  WorkConfig work;
  if (kind == "cpu") {
    work.kind = WorkKind::cpu;
  } else if (kind == "block") {
    work.kind = WorkKind::block;
  } else if (kind == "wait") {
    work.kind = WorkKind::wait;
  } else {
    error = fmt::format("'{}': the kind must be cpu, block or wait (KIND:MICROSECONDS)", text);
    return std::nullopt;
  }
  if (colon == std::string_view::npos) {
    error = fmt::format("'{}': missing :MICROSECONDS (e.g. {}:1000)", text, kind);
    return std::nullopt;
  }
  const std::string_view digits = text.substr(colon + 1);
  std::uint64_t us = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), us);
  if (ec != std::errc() || end != digits.data() + digits.size() || us == 0 ||
      us > kMaxMicroseconds) {
    error = fmt::format("'{}': MICROSECONDS must be a whole number from 1 to {}", text,
                        kMaxMicroseconds);
    return std::nullopt;
  }
  work.duration = std::chrono::microseconds(us);
  return work;
}

std::string to_string(const WorkConfig& work) {
  if (!work.enabled()) return "none";
  return fmt::format("{}:{}", kind_name(work.kind), work.duration.count());
}

std::uint64_t CpuWork::rounds(std::span<const char> message, std::uint64_t rounds) noexcept {
  const std::span<const char> bytes =
      message.empty() ? std::span<const char>(kFiller, sizeof kFiller - 1) : message;
  // FNV-1a: each round needs the previous round's product, a chain of dependent multiplies.
  std::uint64_t hash = 14695981039346656037ull;
  std::size_t at = 0;
  for (std::uint64_t i = 0; i < rounds; ++i) {
    hash = (hash ^ static_cast<unsigned char>(bytes[at])) * 1099511628211ull;
    if (++at == bytes.size()) at = 0;
  }
  g_sink.store(hash, std::memory_order_relaxed);
  return hash;
}

void CpuWork::calibrate() {
  std::call_once(g_calibrated, [] {
    const char sample[64] = {};
    double best = 0;
    for (int run = 0; run < kCalibrationRuns; ++run) {
      const auto start = std::chrono::steady_clock::now();
      rounds(std::span<const char>(sample, sizeof sample), kCalibrationRounds);
      const auto took =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count();
      if (took > 0) best = std::max(best, static_cast<double>(kCalibrationRounds) / took);
    }
    g_rounds_per_us.store(std::max(best, 1.0));
  });
}

double CpuWork::rounds_per_microsecond() noexcept {
  return g_rounds_per_us.load(std::memory_order_relaxed);
}

std::uint64_t CpuWork::run(std::span<const char> message, std::chrono::microseconds duration) {
  calibrate();
  const auto total = static_cast<double>(duration.count()) * rounds_per_microsecond();
  return rounds(message, static_cast<std::uint64_t>(total));
}

std::mutex& global_interpreter_lock() noexcept {
  static std::mutex lock;
  return lock;
}

void sleep_for_work(std::chrono::microseconds duration) noexcept {
  timespec left{static_cast<time_t>(duration.count() / 1'000'000),
                static_cast<long>(duration.count() % 1'000'000) * 1000};
  while (::nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

void work_inline(const WorkConfig& work, std::span<const char> message) {
  if (work.kind == WorkKind::wait) {  // blocking models: the thread is the connection's
    sleep_for_work(work.duration);
    return;
  }
  std::unique_lock<std::mutex> gil;
  if (work.gil) gil = std::unique_lock(global_interpreter_lock());
  if (work.kind == WorkKind::cpu) {
    CpuWork::run(message, work.duration);
  } else if (work.kind == WorkKind::block) {
    sleep_for_work(work.duration);
  }
}

}  // namespace polyecho
