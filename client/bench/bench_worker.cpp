#include "bench_worker.hpp"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "polyecho/socket_ops.hpp"

namespace polyecho::bench {

namespace {

constexpr std::int64_t kSweepInterval = 100'000'000;  // timeouts are checked every 100 ms
// Connects in flight per thread. An unbounded burst of SYNs overflows the server's accept
// queue and the kernel then retries them only after a one-second SYN timeout, which would
// measure the retransmit timer rather than the server.
constexpr std::size_t kMaxConnecting = 256;
constexpr std::size_t kScratchBytes = std::size_t{64} * 1024;
constexpr int kMaxEvents = 1024;

}  // namespace

BenchWorker::BenchWorker(const BenchPlan& plan, std::vector<std::uint32_t> ids)
    : plan_(plan),
      payload_(plan.size, plan.frame),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      connections_(ids.size()),
      send_scratch_(kScratchBytes),
      recv_scratch_(kScratchBytes),
      expect_scratch_(kScratchBytes) {
  if (!epoll_) throw_errno("epoll_create1");
  totals_.per_connection.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    connections_[i].id = ids[i];
    connections_[i].index = static_cast<std::uint32_t>(i);
    if (plan.mode == BenchMode::closed_loop)
      connections_[i].sent_at = std::make_unique<std::int64_t[]>(plan.pipeline);
  }
  // Each worker's share of the global rates: the threads together meet the requested totals.
  const double share = static_cast<double>(ids.size()) / plan.connections;
  if (plan.rate > 0) schedule_interval_ = 1e9 / (plan.rate * share);
  if (plan.connect_rate > 0) connect_interval_ = 1e9 / (plan.connect_rate * share);
}

BenchWorker::~BenchWorker() = default;

std::int64_t BenchWorker::intended_send(const Connection& c, std::uint64_t seq) const noexcept {
  // The thread's k-th scheduled message goes to connection k % n as its message k / n.
  const double k = static_cast<double>(seq * connections_.size() + c.index);
  return plan_.start + static_cast<std::int64_t>(k * schedule_interval_);
}

void BenchWorker::run() {
  next_sweep_ = now_ns() + kSweepInterval;
  epoll_event events[kMaxEvents];
  for (;;) {
    std::int64_t now = now_ns();
    if (!draining_ && now >= plan_.deadline) begin_drain(now);
    if (!draining_) {
      open_due(now);
      release_scheduled(now);
    }
    if (now >= next_sweep_) {
      sweep_timeouts(now);
      next_sweep_ = now + kSweepInterval;
    }
    if (finished()) break;
    const std::int64_t wait = std::max<std::int64_t>(0, next_wakeup(now) - now);
    const timespec timeout{static_cast<time_t>(wait / 1'000'000'000),
                           static_cast<long>(wait % 1'000'000'000)};
    // epoll_pwait2 takes a timespec: the open-loop schedule needs better than epoll_wait's 1 ms.
    const int n = ::epoll_pwait2(epoll_.get(), events, kMaxEvents, &timeout, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("epoll_pwait2");
    }
    for (int i = 0; i < n; ++i) on_event(connections_[events[i].data.u64], events[i].events);
  }
}

std::int64_t BenchWorker::next_wakeup(std::int64_t now) const {
  std::int64_t at = next_sweep_;
  if (!draining_) {
    at = std::min(at, plan_.deadline);
    if (schedule_interval_ > 0) {
      at = std::min(at,
                    plan_.start + static_cast<std::int64_t>(static_cast<double>(next_scheduled_) *
                                                            schedule_interval_));
    }
    if (next_to_open_ < connections_.size() && connecting_ < kMaxConnecting) {
      at = std::min(at, plan_.start + static_cast<std::int64_t>(static_cast<double>(opened_) *
                                                                connect_interval_));
    }
  }
  return std::max(at, now);
}

void BenchWorker::open_due(std::int64_t now) {
  while (next_to_open_ < connections_.size() && connecting_ < kMaxConnecting &&
         now >= plan_.start +
                    static_cast<std::int64_t>(static_cast<double>(opened_) * connect_interval_)) {
    start_connect(connections_[next_to_open_++], now);
  }
}

void BenchWorker::start_connect(Connection& c, std::int64_t now) {
  ++opened_;
  ++open_;
  c.state = State::connecting;
  c.interest = 0;
  c.sent = c.received = StreamCursor{c.rounds, 0};
  if (plan_.mode != BenchMode::open_loop) c.allowed = c.rounds;  // the schedule owns it otherwise
  c.connect_started = c.last_progress = now;
  c.fd.reset(::socket(plan_.endpoint.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c.fd) return fail(c, &ErrorCounts::connect, "socket", errno);
  ++connecting_;
  const int one = 1;  // small messages must leave now, not wait for Nagle
  ::setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (plan_.sources > 0) {
    // The port is picked at connect() (IP_BIND_ADDRESS_NO_PORT), against the whole 4-tuple.
    ::setsockopt(c.fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_addr.s_addr = htonl((127U << 24) | (1U << 8) | (1 + opened_ % plan_.sources));
    if (::bind(c.fd.get(), reinterpret_cast<const sockaddr*>(&source), sizeof source) != 0)
      return fail(c, &ErrorCounts::connect, "bind", errno);
  }
  if (::connect(c.fd.get(), plan_.endpoint.addr(), plan_.endpoint.length) == 0) {
    --connecting_;
    return on_connected(c, now);
  }
  if (errno != EINPROGRESS) return fail(c, &ErrorCounts::connect, "connect", errno);
  set_interest(c, EPOLLOUT);
}

void BenchWorker::on_event(Connection& c, std::uint32_t events) {
  if (c.state == State::connecting) {
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return fail(c, &ErrorCounts::connect, "connect", error);
    --connecting_;
    return on_connected(c, now_ns());
  }
  if (c.state != State::running && c.state != State::holding)
    return;  // closed earlier in this batch
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
  if (c.state == State::running && (events & EPOLLOUT)) try_send(c, now_ns());
}

void BenchWorker::on_connected(Connection& c, std::int64_t now) {
  c.state = State::running;
  c.last_progress = now;
  progress_open.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t limit =
      plan_.messages ? plan_.messages : std::numeric_limits<std::uint64_t>::max();
  switch (plan_.mode) {
    case BenchMode::closed_loop:
    case BenchMode::stream:
      c.allowed = std::min<std::uint64_t>(plan_.pipeline, limit);
      break;
    case BenchMode::open_loop:
      break;  // release_scheduled() raises `allowed`
    case BenchMode::reconnect:
      c.allowed = c.rounds + 1;
      break;
    case BenchMode::idle:
      c.allowed = 1;
      break;
  }
  if (draining_) c.allowed = c.sent.seq;
  set_interest(c, EPOLLIN);
  try_send(c, now);
  maybe_finish(c, now);
}

void BenchWorker::try_send(Connection& c, std::int64_t now) {
  bool blocked = false;
  while (c.sent.seq < c.allowed) {
    const std::size_t n = fill_stream(payload_, c.id, c.sent, c.allowed, send_scratch_);
    const IoResult r = send_some(c.fd.get(), {send_scratch_.data(), n});
    if (r.bytes > 0) {
      // Stamped with the caller's reading, taken before the send: a latency includes the
      // verification and fill that preceded it (well under a microsecond), never less.
      advance(payload_, c.sent, static_cast<std::size_t>(r.bytes), [&](std::uint64_t seq) {
        if (c.sent_at) c.sent_at[seq % plan_.pipeline] = now;
      });
      c.last_progress = now;
      if (static_cast<std::size_t>(r.bytes) < n) {
        blocked = true;  // the socket buffer is full: wait for EPOLLOUT
        break;
      }
      continue;
    }
    if (r.would_block()) {
      blocked = true;
      break;
    }
    return fail(c, &ErrorCounts::reset, "send", r.error);
  }
  set_interest(c, EPOLLIN | (blocked ? EPOLLOUT : 0u));
}

void BenchWorker::on_readable(Connection& c) {
  const IoResult r = read_some(c.fd.get(), recv_scratch_);
  if (r.eof())
    return fail(c, &ErrorCounts::eof, "the server closed the connection before echoing everything",
                0);
  if (r.bytes < 0) {
    if (r.would_block()) return;
    return fail(c, &ErrorCounts::reset, "recv", r.error);
  }
  const auto got = static_cast<std::size_t>(r.bytes);
  if (got >
      c.position(c.sent, payload_.wire_size()) - c.position(c.received, payload_.wire_size())) {
    return fail(c, &ErrorCounts::mismatch, "received more bytes than were sent", 0);
  }
  const std::int64_t now = now_ns();
  const bool same =
      verify_stream(payload_, c.id, c.received, {recv_scratch_.data(), got}, expect_scratch_,
                    [&](std::uint64_t seq) { on_message(c, seq, now); });
  // Once per read, not per message, and a plain store: this thread is the only writer, so no
  // locked add is needed (one per 64-byte message cost a streaming run).
  progress_messages.store(totals_.messages, std::memory_order_relaxed);
  if (!same) return fail(c, &ErrorCounts::mismatch, "the echo differs from what was sent", 0);
  c.last_progress = now;
  if ((plan_.mode == BenchMode::closed_loop || plan_.mode == BenchMode::stream) && !draining_) {
    const std::uint64_t limit =
        plan_.messages ? plan_.messages : std::numeric_limits<std::uint64_t>::max();
    c.allowed = std::min(c.received.seq + plan_.pipeline, limit);
  }
  maybe_finish(c, now);
  if (c.state == State::running && c.sent.seq < c.allowed) try_send(c, now);
}

void BenchWorker::on_message(Connection& c, std::uint64_t seq, std::int64_t now) {
  totals_.last_completion = now;
  if (now < plan_.measure_from || now > plan_.deadline) return;  // warmup, or the drain
  ++totals_.messages;
  ++c.measured;
  if (plan_.mode == BenchMode::stream) return;  // a window's worth of queueing, not latency
  std::int64_t began = c.connect_started;       // reconnect and idle: connect plus round trip
  if (plan_.mode == BenchMode::closed_loop) began = c.sent_at[seq % plan_.pipeline];
  // Open loop: from when the message *should* have left, so a stalled server cannot hide
  // its stall by delaying our sends (coordinated omission).
  if (plan_.mode == BenchMode::open_loop) began = intended_send(c, seq);
  totals_.latency.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - began)));
}

void BenchWorker::release_scheduled(std::int64_t now) {
  if (schedule_interval_ <= 0) return;
  const std::uint64_t n = connections_.size();
  const std::uint64_t end =
      plan_.messages ? plan_.messages * n : std::numeric_limits<std::uint64_t>::max();
  while (next_scheduled_ < end &&
         plan_.start + static_cast<std::int64_t>(static_cast<double>(next_scheduled_) *
                                                 schedule_interval_) <=
             now) {
    Connection& c = connections_[next_scheduled_ % n];
    c.allowed = next_scheduled_ / n + 1;
    ++next_scheduled_;
    if (c.state == State::running) try_send(c, now);
  }
}

void BenchWorker::begin_drain(std::int64_t now) {
  draining_ = true;
  totals_.not_opened += connections_.size() - next_to_open_;
  next_to_open_ = connections_.size();
  for (Connection& c : connections_) {
    if (c.state == State::connecting) {
      // Still in the handshake at the deadline: neither a result nor a failure.
      --connecting_;
      ++totals_.not_opened;
      c.fd.reset();
      c.state = State::done;
      --open_;
      continue;
    }
    if (c.state != State::running && c.state != State::holding) continue;
    // Stop after the message being written; the echo of everything sent is still verified.
    const std::uint64_t last = c.sent.offset ? c.sent.seq + 1 : c.sent.seq;
    if (plan_.mode == BenchMode::open_loop && c.allowed > last)
      totals_.behind_schedule += c.allowed - last;
    c.allowed = last;
    maybe_finish(c, now);
  }
}

void BenchWorker::maybe_finish(Connection& c, std::int64_t now) {
  if (c.state != State::running && c.state != State::holding) return;
  const bool all_echoed = c.received.seq == c.allowed && c.sent.seq == c.allowed;
  switch (plan_.mode) {
    case BenchMode::reconnect:
      if (!all_echoed) return;
      ++c.rounds;
      finish(c, now);
      if (!draining_ && (plan_.messages == 0 || c.rounds < plan_.messages)) start_connect(c, now);
      return;
    case BenchMode::idle:
      if (all_echoed && draining_) return finish(c, now);
      if (all_echoed) c.state = State::holding;  // from now on any byte or EOF is an error
      return;
    case BenchMode::closed_loop:
    case BenchMode::open_loop:
    case BenchMode::stream:
      if ((draining_ && all_echoed) || (plan_.messages && c.received.seq == plan_.messages))
        finish(c, now);
      return;
  }
}

void BenchWorker::finish(Connection& c, std::int64_t /*now*/) {
  c.fd.reset();  // closing removes it from the epoll set
  c.interest = 0;
  c.state = State::done;
  --open_;
  ++totals_.connections_ok;
  // Served nothing while measured: e.g. waiting in the backlog or queue of a model that serves
  // a fixed number of connections at a time. (Reconnect slots are new connections each time.)
  if (plan_.mode != BenchMode::reconnect && c.measured == 0) ++totals_.starved;
  if (plan_.mode != BenchMode::reconnect && plan_.mode != BenchMode::idle)
    totals_.per_connection.push_back(c.measured);  // reserved up front: no reallocation
  progress_open.fetch_sub(1, std::memory_order_relaxed);
}

void BenchWorker::fail(Connection& c, std::uint64_t ErrorCounts::*category, const char* what,
                       int error) {
  if (c.state == State::connecting && c.fd) --connecting_;
  if (c.state == State::running || c.state == State::holding)
    progress_open.fetch_sub(1, std::memory_order_relaxed);
  ++(totals_.errors.*category);
  ++totals_.connections_failed;
  progress_errors.fetch_add(1, std::memory_order_relaxed);
  if (totals_.first_error.empty()) {
    totals_.first_error =
        error ? fmt::format("connection {}: {}: {}", c.id, what, std::strerror(error))
              : fmt::format("connection {}: {} (message {}, byte {})", c.id, what, c.received.seq,
                            c.received.offset);
  }
  c.fd.reset();
  c.interest = 0;
  c.state = State::failed;
  --open_;
}

void BenchWorker::sweep_timeouts(std::int64_t now) {
  for (Connection& c : connections_) {
    if (c.state != State::connecting && c.state != State::running) continue;
    const bool waiting =
        c.state == State::connecting || (c.interest & EPOLLOUT) ||
        c.position(c.sent, payload_.wire_size()) > c.position(c.received, payload_.wire_size());
    if (waiting && now - c.last_progress > plan_.timeout)
      fail(c, &ErrorCounts::timeout, "no progress before --timeout", 0);
  }
}

void BenchWorker::set_interest(Connection& c, std::uint32_t events) {
  if (c.interest == events) return;
  epoll_event event{};
  event.events = events;
  event.data.u64 = c.index;
  if (::epoll_ctl(epoll_.get(), c.interest ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd.get(), &event) !=
      0) {
    throw_errno("epoll_ctl");
  }
  c.interest = events;
}

}  // namespace polyecho::bench
