// The two renderings of a MetricsSnapshot: Prometheus text (through prometheus-cpp's model and
// serializer, so the format's escaping and layout are the library's) and JSON.
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <nlohmann/json.hpp>

#include "metrics/metrics_snapshot.hpp"

namespace polyecho {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr ErrorKind kErrorKindList[kErrorKinds] = {ErrorKind::protocol, ErrorKind::connection,
                                                   ErrorKind::process};

ClientMetric value_metric(MetricType type, double value,
                          std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric metric;
  metric.label = std::move(labels);
  if (type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return metric;
}

MetricFamily single(std::string name, std::string help, MetricType type, double value) {
  return {std::move(name), std::move(help), type, {value_metric(type, value)}};
}

// Per loop, labelled loop="0", "1"... in the order the loops started.
MetricFamily per_loop(std::string name, std::string help,
                      const std::vector<MetricsSnapshot::Loop>& loops,
                      std::uint64_t MetricsSnapshot::Loop::*field) {
  MetricFamily family{std::move(name), std::move(help), MetricType::Counter, {}};
  for (std::size_t i = 0; i < loops.size(); ++i) {
    family.metric.push_back(value_metric(MetricType::Counter, static_cast<double>(loops[i].*field),
                                         {{"loop", std::to_string(i)}}));
  }
  return family;
}

MetricFamily latency_histogram(const TrafficTotals& traffic) {
  ClientMetric metric;
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < kLatencyBoundsNs.size(); ++b) {
    cumulative += traffic.latency_buckets[b];
    metric.histogram.bucket.push_back({cumulative, static_cast<double>(kLatencyBoundsNs[b]) / 1e9});
  }
  cumulative += traffic.latency_buckets.back();
  metric.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = static_cast<double>(traffic.latency_sum_ns) / 1e9;
  return {"polyecho_message_latency_seconds",
          "Server-side latency per message, from the read that completed it to its reply "
          "queued for sending, work included",
          MetricType::Histogram,
          {metric}};
}

}  // namespace

std::string to_prometheus_text(const MetricsSnapshot& s, const ServerDescription& description) {
  const auto count = [](auto v) { return static_cast<double>(v); };
  std::vector<MetricFamily> families;
  families.push_back(
      {"polyecho_server_info",
       "The model serving and its flags; always 1",
       MetricType::Gauge,
       {value_metric(MetricType::Gauge, 1,
                     {{"model", description.model}, {"flags", description.flags}})}});
  families.push_back(single("polyecho_uptime_seconds", "Seconds since the server started",
                            MetricType::Gauge, s.uptime_seconds));
  families.push_back(single("polyecho_connections_active", "Connections open now",
                            MetricType::Gauge, count(s.active)));
  families.push_back(single("polyecho_connections_accepted_total",
                            "Connections admitted and served", MetricType::Counter,
                            count(s.accepted)));
  families.push_back(single("polyecho_connections_rejected_total",
                            "Connections closed at once (--max-connections, --max-per-ip, a full "
                            "queue)",
                            MetricType::Counter, count(s.rejected)));
  families.push_back(single("polyecho_received_bytes_total", "Bytes read from clients",
                            MetricType::Counter, count(s.traffic.bytes_in)));
  families.push_back(single("polyecho_sent_bytes_total", "Bytes written to clients",
                            MetricType::Counter, count(s.traffic.bytes_out)));
  families.push_back(single("polyecho_received_messages_total",
                            "Complete messages received (raw mode: reads)", MetricType::Counter,
                            count(s.traffic.messages_in)));
  families.push_back(single("polyecho_sent_messages_total",
                            "Replies queued for sending (raw mode: reads echoed)",
                            MetricType::Counter, count(s.traffic.messages_out)));
  MetricFamily errors{"polyecho_errors_total",
                      "Connections that ended in an error, by kind",
                      MetricType::Counter,
                      {}};
  for (const ErrorKind kind : kErrorKindList) {
    errors.metric.push_back(value_metric(MetricType::Counter,
                                         count(s.errors_by_kind[static_cast<std::size_t>(kind)]),
                                         {{"kind", to_string(kind)}}));
  }
  families.push_back(std::move(errors));
  families.push_back(single("polyecho_offload_queue_depth",
                            "--offload: jobs waiting for a pool thread now", MetricType::Gauge,
                            count(s.offload_queue_depth)));
  families.push_back(single("polyecho_offloaded_messages_total",
                            "--offload: messages whose work ran on the pool", MetricType::Counter,
                            count(s.offloaded)));
  families.push_back(per_loop("polyecho_loop_connections_total",
                              "Connections handed to each event loop", s.loops,
                              &MetricsSnapshot::Loop::connections));
  families.push_back(per_loop("polyecho_loop_wakeups_total",
                              "Returns from each event loop's wait (epoll_wait, poll, "
                              "io_uring_enter...)",
                              s.loops, &MetricsSnapshot::Loop::wakeups));
  families.push_back(per_loop("polyecho_loop_events_total",
                              "Events those waits brought; divided by wakeups: events per wait",
                              s.loops, &MetricsSnapshot::Loop::events));
  families.push_back(per_loop("polyecho_loop_moderated_waits_total",
                              "Waits put off by --wait-moderation (poll, select: a pause after "
                              "a batch that moved a stream, when nothing was ready)",
                              s.loops, &MetricsSnapshot::Loop::moderated));
  families.push_back(single("polyecho_process_resident_memory_bytes",
                            "Resident memory of the server and its child processes, summed",
                            MetricType::Gauge, count(s.process.rss_bytes)));
  families.push_back(single("polyecho_process_threads",
                            "Threads of the server and its child processes", MetricType::Gauge,
                            count(s.process.threads)));
  families.push_back(single("polyecho_worker_processes",
                            "Child processes (fork, prefork, --processes)", MetricType::Gauge,
                            count(s.process.workers)));
  families.push_back(single("polyecho_process_cpu_seconds_total",
                            "User and system CPU time of the server and its child processes",
                            MetricType::Counter, s.process.cpu_seconds));
  families.push_back(latency_histogram(s.traffic));
  return prometheus::TextSerializer().Serialize(families);
}

std::string to_json(const MetricsSnapshot& s, const ServerDescription& description) {
  nlohmann::json errors = nlohmann::json::object();
  for (const ErrorKind kind : kErrorKindList)
    errors[to_string(kind)] = s.errors_by_kind[static_cast<std::size_t>(kind)];
  nlohmann::json loops = nlohmann::json::array();
  for (const auto& loop : s.loops) {
    loops.push_back({{"connections", loop.connections},
                     {"wakeups", loop.wakeups},
                     {"events", loop.events},
                     {"moderated", loop.moderated}});
  }
  nlohmann::json bounds = nlohmann::json::array();
  for (const auto bound : kLatencyBoundsNs) bounds.push_back(static_cast<double>(bound) / 1e9);
  const nlohmann::json document = {
      {"model", description.model},
      {"flags", description.flags},
      {"uptime_seconds", s.uptime_seconds},
      {"connections", {{"active", s.active}, {"accepted", s.accepted}, {"rejected", s.rejected}}},
      {"bytes", {{"in", s.traffic.bytes_in}, {"out", s.traffic.bytes_out}}},
      {"messages", {{"in", s.traffic.messages_in}, {"out", s.traffic.messages_out}}},
      {"errors", errors},
      {"offload", {{"queue_depth", s.offload_queue_depth}, {"offloaded", s.offloaded}}},
      {"loops", loops},
      {"process",
       {{"rss_bytes", s.process.rss_bytes},
        {"threads", s.process.threads},
        {"workers", s.process.workers},
        {"cpu_seconds", s.process.cpu_seconds}}},
      // Buckets are not cumulative here: counts[i] messages took at most bounds[i] seconds and
      // more than bounds[i-1]; the last count has no bound (+Inf).
      {"latency",
       {{"bounds_seconds", bounds},
        {"counts", s.traffic.latency_buckets},
        {"sum_seconds", static_cast<double>(s.traffic.latency_sum_ns) / 1e9}}},
  };
  // The flags are argv as given, which need not be UTF-8: replace what is not, never throw.
  return document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace polyecho
