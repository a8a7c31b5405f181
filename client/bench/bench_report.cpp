#include "bench_report.hpp"

#include <fmt/format.h>

namespace polyecho::bench {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

double per_second(double count, double seconds) {
  return seconds > 0 ? count / seconds : 0;
}
double micros(std::uint64_t nanoseconds) {
  return static_cast<double>(nanoseconds) / 1000.0;
}

// "850 µs" or "12.3 ms": the unit a reader expects at that magnitude.
std::string human_time(std::uint64_t nanoseconds) {
  const double us = micros(nanoseconds);
  if (us < 1000) return fmt::format("{:.0f} µs", us);
  if (us < 1'000'000) return fmt::format("{:.2f} ms", us / 1000);
  return fmt::format("{:.2f} s", us / 1'000'000);
}

std::string describe_mode(const BenchPlan& plan) {
  switch (plan.mode) {
    case BenchMode::closed_loop:
      return plan.pipeline == 1 ? "ping-pong"
                                : fmt::format("pipelined ({} in flight)", plan.pipeline);
    case BenchMode::open_loop:
      return fmt::format("open loop at {:.0f} msg/s", plan.rate);
    case BenchMode::reconnect:
      return "a new connection per message";
    case BenchMode::idle:
      return "idle (one round trip, then hold)";
    case BenchMode::stream:
      return fmt::format("streaming ({} messages in flight)", plan.pipeline);
  }
  return "?";
}

}  // namespace

nlohmann::json BenchReport::to_json() const {
  const auto& h = totals.latency;
  const double messages = static_cast<double>(totals.messages);
  auto counts = totals.per_connection;
  const Fairness f = fairness_of(counts);
  return {
      {"mode", to_string(plan.mode)},
      {"host", connect.host},
      {"port", connect.port},
      {"connections", plan.connections},
      {"threads", plan.threads},
      {"size", plan.size},
      {"frame", plan.frame},
      {"pipeline", plan.pipeline},
      {"rate", plan.rate},
      {"connect_rate", plan.connect_rate},
      {"warmup_s", options.warmup},
      {"duration_s", seconds},
      {"connections_ok", totals.connections_ok},
      {"connections_failed", totals.connections_failed},
      {"connections_not_opened", totals.not_opened},
      {"connections_starved", totals.starved},
      {"messages", totals.messages},
      {"msg_per_s", per_second(messages, seconds)},
      {"mib_per_s", per_second(messages * static_cast<double>(plan.size) / kMiB, seconds)},
      {"connections_per_s",
       plan.mode == BenchMode::reconnect ? per_second(messages, seconds) : 0.0},
      {"behind_schedule", totals.behind_schedule},
      {"latency_us",
       {{"count", h.count()},
        {"min", micros(h.min())},
        {"mean", h.mean() / 1000.0},
        {"p50", micros(h.percentile(50))},
        {"p90", micros(h.percentile(90))},
        {"p99", micros(h.percentile(99))},
        {"p999", micros(h.percentile(99.9))},
        {"max", micros(h.max())}}},
      {"per_connection_messages",
       {{"count", counts.size()},
        {"min", f.min},
        {"p1", f.p1},
        {"median", f.median},
        {"max", f.max},
        {"jain", f.jain}}},
      {"errors",
       {{"total", totals.errors.total()},
        {"connect", totals.errors.connect},
        {"reset", totals.errors.reset},
        {"eof", totals.errors.eof},
        {"mismatch", totals.errors.mismatch},
        {"timeout", totals.errors.timeout}}},
      {"first_error", failure.empty() ? totals.first_error : failure},
      {"client_cpu_s",
       {{"user", cpu_user}, {"system", cpu_system}, {"total", cpu_user + cpu_system}}},
      {"ok", ok()},
  };
}

void BenchReport::print_human() const {
  const auto& h = totals.latency;
  const double messages = static_cast<double>(totals.messages);
  fmt::print("polyecho bench: {}, {} connection{} x {} B{}, {} thread{}, against {}:{}\n",
             describe_mode(plan), plan.connections, plan.connections == 1 ? "" : "s", plan.size,
             plan.frame ? " frames" : "", plan.threads, plan.threads == 1 ? "" : "s", connect.host,
             connect.port);
  fmt::print("  window       {:.2f} s measured (after {:.2f} s warmup)\n", seconds, options.warmup);
  fmt::print(
      "  connections  {} ok, {} failed{}\n", totals.connections_ok, totals.connections_failed,
      totals.not_opened ? fmt::format(", {} not opened before the deadline", totals.not_opened)
                        : "");
  if (totals.starved) {
    fmt::print("  starved      {} connections completed no message inside the window\n",
               totals.starved);
  }
  fmt::print("  messages     {} ({:.0f} msg/s, {:.2f} MiB/s each way)\n", totals.messages,
             per_second(messages, seconds),
             per_second(messages * static_cast<double>(plan.size) / kMiB, seconds));
  if (plan.mode == BenchMode::reconnect)
    fmt::print("  connects     {:.0f} connections/s\n", per_second(messages, seconds));
  if (totals.behind_schedule)
    fmt::print("  behind       {} messages were due but unsent at the end\n",
               totals.behind_schedule);
  if (plan.mode == BenchMode::stream) {
    fmt::print("  latency      not measured while streaming (it is the window's queueing)\n");
  } else {
    fmt::print("  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
               human_time(h.percentile(50)), human_time(h.percentile(90)),
               human_time(h.percentile(99)), human_time(h.percentile(99.9)), human_time(h.max()));
  }
  if (auto counts = totals.per_connection; counts.size() > 1) {
    const Fairness f = fairness_of(counts);
    fmt::print(
        "  fairness     per connection: min {} p1 {} median {} max {} messages, Jain {:.3f}\n",
        f.min, f.p1, f.median, f.max, f.jain);
  }
  const auto& e = totals.errors;
  fmt::print("  errors       {} (connect {}, reset {}, short echo {}, mismatch {}, timeout {})\n",
             e.total(), e.connect, e.reset, e.eof, e.mismatch, e.timeout);
  if (!totals.first_error.empty()) fmt::print("  first error  {}\n", totals.first_error);
  if (!failure.empty()) fmt::print("  failure      {}\n", failure);
  fmt::print("  client CPU   {:.2f} s user + {:.2f} s system\n", cpu_user, cpu_system);
  if (totals.messages == 0 && failure.empty())
    fmt::print("  no message completed inside the measured window\n");
}

}  // namespace polyecho::bench
