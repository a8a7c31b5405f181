// `polyecho-client bench`: parses the flags, fixes the plan, runs one BenchWorker per thread,
// merges what they measured and reports it.
#include "bench_command.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include "bench_report.hpp"
#include "bench_worker.hpp"
#include "polyecho/protocol.hpp"

namespace polyecho::bench {

namespace {

constexpr std::int64_t kNanosPerSecond = 1'000'000'000;

// 10,000 connections need 10,000 descriptors; the soft limit is often 1024 while the hard one
// is far higher, and raising soft up to hard needs no privilege.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

double seconds_of(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

std::int64_t to_nanos(double seconds) {
  return static_cast<std::int64_t>(seconds * kNanosPerSecond);
}

BenchPlan make_plan(const BenchOptions& o, const client::ConnectOptions& connect) {
  BenchPlan plan;
  try {
    plan.endpoint = resolve_endpoint(connect.host, connect.port);
  } catch (const std::invalid_argument& e) {
    throw client::ClientError(e.what());
  }
  plan.mode = o.reconnect  ? BenchMode::reconnect
              : o.idle     ? BenchMode::idle
              : o.stream   ? BenchMode::stream
              : o.rate > 0 ? BenchMode::open_loop
                           : BenchMode::closed_loop;
  plan.connections = o.connections;
  plan.size = o.size;
  plan.frame = o.frame;
  plan.pipeline = o.pipeline;
  if (o.stream) {
    // The window in whole messages, at least one: a connection never has more unechoed.
    const std::size_t wire = o.size + (o.frame ? kFrameHeaderSize : 0);
    plan.pipeline = static_cast<std::uint32_t>(
        std::clamp<std::size_t>(o.window / wire, 1, std::numeric_limits<std::uint32_t>::max()));
  }
  plan.messages = o.messages;
  plan.rate = o.rate;
  plan.connect_rate = o.connect_rate;
  if (o.sources > 0) {
    const auto* ipv4 = reinterpret_cast<const sockaddr_in*>(plan.endpoint.addr());
    if (plan.endpoint.family() != AF_INET || (ntohl(ipv4->sin_addr.s_addr) >> 24) != 127)
      throw client::ClientError("--sources needs an IPv4 loopback server (127.0.0.0/8)");
    plan.sources = o.sources;
  }
  plan.timeout = to_nanos(connect.timeout_seconds);
  // Half the cores by default: the bench usually shares the host with the server it measures,
  // and a client thread per core takes the cores the server needs (measured on 2 cores, 50
  // connections, ping-pong against epoll: 127k msg/s with two threads, 151k with one). A
  // stream is the other way round: checking every byte costs the client more than echoing it
  // costs the server, so it gets every core (50 streaming connections against epoll: 15-17M
  // msg/s with one thread, the client at 100% of a core and the server at 45%; 23-25M with two).
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = o.threads ? o.threads : o.stream ? cores : cores / 2;
  plan.threads = std::clamp(threads, 1u, o.connections);
  // Start a little in the future so every thread is spawned before t0 and the open-loop
  // schedule does not begin with a backlog.
  plan.start = now_ns() + 5'000'000;
  const double warmup = plan.mode == BenchMode::idle ? 0 : o.warmup;
  plan.measure_from = plan.start + to_nanos(warmup);
  plan.deadline = o.messages ? std::numeric_limits<std::int64_t>::max()
                             : plan.measure_from + to_nanos(o.duration);
  return plan;
}

// Finished-worker count, so the progress line can wait with a timeout instead of polling.
struct Completion {
  std::mutex mutex;
  std::condition_variable changed;
  unsigned finished = 0;
};

void print_progress(const std::vector<std::unique_ptr<BenchWorker>>& workers, std::int64_t start) {
  std::uint64_t messages = 0, errors = 0;
  std::int64_t open = 0;
  for (const auto& w : workers) {
    messages += w->progress_messages.load(std::memory_order_relaxed);
    errors += w->progress_errors.load(std::memory_order_relaxed);
    open += w->progress_open.load(std::memory_order_relaxed);
  }
  static std::uint64_t last_messages = 0;
  static std::int64_t last_time = start;
  const std::int64_t now = now_ns();
  const double rate = now > last_time ? static_cast<double>(messages - last_messages) * 1e9 /
                                            static_cast<double>(now - last_time)
                                      : 0;
  last_messages = messages;
  last_time = now;
  fmt::print(stderr, "\r{:6.1f} s  {:>10.0f} msg/s  {:>6} connections  {} errors   ",
             static_cast<double>(now - start) / 1e9, rate, open, errors);
}

}  // namespace

BenchCommand::BenchCommand(CLI::App& app, const client::ConnectOptions& connect)
    : command_(
          app.add_subcommand("bench", "Load-test an echo server and verify every echoed byte")),
      connect_(connect) {
  auto& o = options_;
  auto* c = command_;
  c->add_option("--connections,-c", o.connections, "Concurrent connections")
      ->check(CLI::Range(1u, 1'000'000u))
      ->capture_default_str();
  auto* duration = c->add_option("--duration,-d", o.duration, "Seconds to measure (after --warmup)")
                       ->check(CLI::Range(0.01, 86400.0))
                       ->capture_default_str();
  auto* messages =
      c->add_option("--messages,-m", o.messages, "Messages per connection instead of a duration")
          ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
  messages->excludes(duration);
  c->add_option("--size,-s", o.size,
                "Bytes per message (at least 16: connection id, sequence, size)")
      ->check(CLI::Range(std::size_t{16}, std::size_t{64} << 20))
      ->capture_default_str();
  c->add_flag("--frame", o.frame,
              "Send each message as one frame (4-byte big-endian length, then --size bytes) and "
              "verify the echoed frames byte for byte: for a frame-mode server (or a raw one)");
  auto* pipeline = c->add_option("--pipeline,-k", o.pipeline, "Messages in flight per connection")
                       ->check(CLI::Range(1u, 65536u))
                       ->capture_default_str();
  auto* rate =
      c->add_option("--rate,-r", o.rate, "Open loop: total messages per second on a fixed schedule")
          ->check(CLI::Range(1.0, 1e9));
  c->add_option("--connect-rate", o.connect_rate,
                "New connections per second while ramping (0 = unpaced)")
      ->check(CLI::Range(0.0, 1e9));
  auto* reconnect = c->add_flag("--reconnect", o.reconnect,
                                "A new connection per message: connect, send, receive, close");
  auto* idle =
      c->add_flag("--idle", o.idle, "One round trip per connection, then hold them for --duration");
  auto* stream = c->add_flag("--stream", o.stream,
                             "Streaming: send without waiting for echoes, up to --window bytes "
                             "in flight per connection; every byte is still verified, latency "
                             "is not measured");
  c->add_option("--window", o.window, "--stream: unechoed bytes per connection at most")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1} << 30))
      ->capture_default_str()
      ->needs(stream);
  c->add_option("--threads,-t", o.threads,
                "Event-loop threads (default: half the cores, at least one; --stream: every core)")
      ->check(CLI::Range(1u, 1024u));
  c->add_option("--warmup", o.warmup, "Seconds run before measuring")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  c->add_option("--sources", o.sources,
                "Connect from N loopback addresses, 127.0.1.1 and up, in turn (IPv4 loopback "
                "servers only): more ephemeral ports for a fast --reconnect run")
      ->check(CLI::Range(1u, 254u));
  c->add_flag("--json", o.json, "Print every figure as one JSON object");
  reconnect->excludes(idle)->excludes(rate)->excludes(pipeline)->excludes(stream);
  idle->excludes(rate)->excludes(pipeline)->excludes(stream);
  stream->excludes(rate)->excludes(pipeline);
}

int BenchCommand::run() const {
  raise_fd_limit();
  const BenchPlan plan = make_plan(options_, connect_);

  std::vector<std::vector<std::uint32_t>> ids(plan.threads);
  for (std::uint32_t i = 0; i < plan.connections; ++i) ids[i % plan.threads].push_back(i);
  std::vector<std::unique_ptr<BenchWorker>> workers;
  workers.reserve(ids.size());
  for (auto& share : ids) workers.push_back(std::make_unique<BenchWorker>(plan, std::move(share)));

  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  Completion completion;
  std::vector<std::exception_ptr> failures(workers.size());
  {
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < workers.size(); ++i) {
      threads.emplace_back([&, i] {
        try {
          workers[i]->run();
        } catch (...) {
          failures[i] = std::current_exception();
        }
        std::lock_guard lock(completion.mutex);
        ++completion.finished;
        completion.changed.notify_all();
      });
    }
    const bool live = ::isatty(STDERR_FILENO) != 0;
    std::unique_lock lock(completion.mutex);
    while (completion.finished < workers.size()) {
      completion.changed.wait_for(lock, std::chrono::seconds(1));
      if (live) print_progress(workers, plan.start);
    }
    if (live) fmt::print(stderr, "\n");
  }  // joins
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);

  BenchTotals totals;
  for (const auto& w : workers) totals.merge(w->totals());
  std::string failure;
  for (const auto& f : failures) {
    if (!f || !failure.empty()) continue;
    try {
      std::rethrow_exception(f);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  const std::int64_t end = options_.messages ? totals.last_completion : plan.deadline;
  BenchReport report{plan, options_, connect_, totals, 0, 0, 0, {}};
  report.seconds = std::max<double>(0, static_cast<double>(end - plan.measure_from) / 1e9);
  report.cpu_user = seconds_of(after.ru_utime) - seconds_of(before.ru_utime);
  report.cpu_system = seconds_of(after.ru_stime) - seconds_of(before.ru_stime);
  report.failure = failure;
  if (options_.json) {
    fmt::print("{}\n", report.to_json().dump());
  } else {
    report.print_human();
  }
  return report.ok() ? 0 : 1;
}

}  // namespace polyecho::bench
