// The bench's histogram against the exact answer: a sorted copy of the same values.
#include "bench/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace polyecho::bench {
namespace {

std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

void expect_within_one_percent(std::uint64_t got, std::uint64_t want, double p) {
  const double error = std::abs(static_cast<double>(got) - static_cast<double>(want));
  EXPECT_LE(error, 0.01 * static_cast<double>(want))
      << "p" << p << ": got " << got << ", exact " << want;
}

const double kPercentiles[] = {1, 10, 50, 90, 99, 99.9, 99.99, 100};

TEST(LatencyHistogram, PercentilesOfLogUniformValuesAreWithinOnePercent) {
  std::mt19937_64 engine(7);
  std::uniform_real_distribution<double> exponent(0, 36);  // 1 ns .. about 70 s
  LatencyHistogram histogram;
  std::vector<std::uint64_t> values;
  for (int i = 0; i < 200'000; ++i) {
    const auto v = static_cast<std::uint64_t>(std::exp2(exponent(engine)));
    values.push_back(v);
    histogram.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : kPercentiles)
    expect_within_one_percent(histogram.percentile(p), exact_percentile(values, p), p);
  EXPECT_EQ(histogram.max(), values.back());
  EXPECT_EQ(histogram.min(), values.front());
  EXPECT_EQ(histogram.count(), values.size());
}

TEST(LatencyHistogram, EveryBucketIsNarrowerThanOnePercentOfItsValues) {
  for (std::size_t i = LatencyHistogram::kSubBuckets; i + 1 < LatencyHistogram::kBucketCount; ++i) {
    const auto low = LatencyHistogram::lower_bound_of(i);
    const auto next = LatencyHistogram::lower_bound_of(i + 1);
    ASSERT_GT(next, low);
    EXPECT_EQ(LatencyHistogram::index_of(low), i);
    EXPECT_EQ(LatencyHistogram::index_of(next - 1), i);
    EXPECT_LE(static_cast<double>(next - 1 - low), 0.01 * static_cast<double>(low))
        << "bucket " << i;
  }
}

TEST(LatencyHistogram, MergingPerThreadHistogramsEqualsOneHistogram) {
  std::mt19937_64 engine(11);
  std::lognormal_distribution<double> latency(11, 1.5);  // around 60 µs with a long tail
  LatencyHistogram all, parts[3];
  std::vector<std::uint64_t> values;
  for (int i = 0; i < 90'000; ++i) {
    const auto v = static_cast<std::uint64_t>(latency(engine));
    values.push_back(v);
    all.record(v);
    parts[i % 3].record(v);
  }
  LatencyHistogram merged;
  for (const auto& part : parts) merged.merge(part);
  std::sort(values.begin(), values.end());
  for (double p : kPercentiles) {
    EXPECT_EQ(merged.percentile(p), all.percentile(p)) << "p" << p;
    expect_within_one_percent(merged.percentile(p), exact_percentile(values, p), p);
  }
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
}

TEST(LatencyHistogram, SmallValuesAreExactAndEmptyIsZero) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.percentile(50), 0u);
  EXPECT_EQ(histogram.max(), 0u);
  for (std::uint64_t v = 1; v <= 100; ++v) histogram.record(v);
  EXPECT_EQ(histogram.percentile(50), 50u);
  EXPECT_EQ(histogram.percentile(99), 99u);
  EXPECT_EQ(histogram.percentile(100), 100u);
}

TEST(LatencyHistogram, HugeValuesAreClampedNotLost) {
  LatencyHistogram histogram;
  histogram.record(~std::uint64_t{0});
  EXPECT_EQ(histogram.count(), 1u);
  EXPECT_EQ(histogram.max(), LatencyHistogram::kMaxTrackable);
}

}  // namespace
}  // namespace polyecho::bench
