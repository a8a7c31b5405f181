#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace polyecho::bench {

// A log-linear histogram of non-negative integer values (the bench records nanoseconds).
//
// Values below kSubBuckets are counted exactly. Above that, every power-of-two range
// [2^e, 2^(e+1)) is split into kSubBuckets equal buckets, so a bucket is never wider than
// 1/kSubBuckets of its lower bound. Reporting a bucket's midpoint therefore errs by at most
// 1/(2*kSubBuckets) = 0.4%, well inside the 1% the bench promises, at any magnitude.
//
// Fixed size (about 36 KiB), no allocation after construction, so record() is safe on the hot
// path. One histogram per thread; merge() adds them up at the end. Not thread-safe.
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBucketBits = 7;
  static constexpr std::uint64_t kSubBuckets = 1u << kSubBucketBits;  // 128
  // Largest exponent kept: 2^41 ns is about 36 minutes; anything above is clamped to it.
  static constexpr unsigned kMaxExponent = 41;
  static constexpr std::size_t kBucketCount =
      kSubBuckets + (kMaxExponent - kSubBucketBits + 1) * kSubBuckets;
  static constexpr std::uint64_t kMaxTrackable = (std::uint64_t{1} << (kMaxExponent + 1)) - 1;

  void record(std::uint64_t value) noexcept {
    value = std::min(value, kMaxTrackable);
    ++counts_[index_of(value)];
    ++count_;
    sum_ += static_cast<double>(value);
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  void reset() noexcept { *this = LatencyHistogram{}; }

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return count_ ? max_ : 0; }
  [[nodiscard]] std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  [[nodiscard]] double mean() const noexcept {
    return count_ ? sum_ / static_cast<double>(count_) : 0;
  }

  // The value at `percentile` (0..100]: the smallest recorded value v such that at least
  // percentile% of the values are <= v, reported as its bucket's midpoint (clamped to the
  // exact min and max, so p100 is the true maximum). 0 when empty.
  [[nodiscard]] std::uint64_t percentile(double percentile) const noexcept {
    if (count_ == 0) return 0;
    const double wanted = std::ceil(percentile / 100.0 * static_cast<double>(count_));
    const std::uint64_t rank =
        std::clamp<std::uint64_t>(static_cast<std::uint64_t>(wanted), 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBucketCount; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(midpoint_of(i), min_, max_);
    }
    return max_;
  }

  // Exposed for the unit test: the bucket a value lands in and that bucket's bounds.
  [[nodiscard]] static std::size_t index_of(std::uint64_t value) noexcept {
    if (value < kSubBuckets) return static_cast<std::size_t>(value);
    const unsigned exponent =
        static_cast<unsigned>(std::bit_width(value)) - 1;  // >= kSubBucketBits
    const unsigned shift = exponent - kSubBucketBits;
    const std::uint64_t sub = (value >> shift) - kSubBuckets;  // 0 .. kSubBuckets-1
    return static_cast<std::size_t>(kSubBuckets + shift * kSubBuckets + sub);
  }
  [[nodiscard]] static std::uint64_t lower_bound_of(std::size_t index) noexcept {
    if (index < kSubBuckets) return index;
    const std::uint64_t shift = (index - kSubBuckets) / kSubBuckets;
    const std::uint64_t sub = (index - kSubBuckets) % kSubBuckets;
    return (kSubBuckets + sub) << shift;
  }
  [[nodiscard]] static std::uint64_t midpoint_of(std::size_t index) noexcept {
    if (index < kSubBuckets) return index;
    const std::uint64_t shift = (index - kSubBuckets) / kSubBuckets;
    return lower_bound_of(index) + ((std::uint64_t{1} << shift) - 1) / 2;
  }

 private:
  std::array<std::uint64_t, kBucketCount> counts_{};
  std::uint64_t count_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace polyecho::bench
