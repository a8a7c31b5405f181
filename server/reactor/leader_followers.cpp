#include "reactor/leader_followers.hpp"

#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "lifecycle/connection_options.hpp"
#include "lifecycle/threads.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::uint32_t kSocketEvents = kReadable | kWritable | kError;

// A timerfd on CLOCK_MONOTONIC, the clock libstdc++'s steady_clock reads, so a steady_clock
// deadline can be programmed as an absolute time.
unique_fd make_timer_fd() {
  unique_fd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd) throw_errno("timerfd_create");
  return fd;
}

// Fires once at `at` (at once if it has passed); nullopt disarms. Either way the expirations
// counted so far are reset, so the fd is readable again only when the new deadline comes.
void set_timer(int fd, std::optional<Clock::time_point> at) {
  itimerspec spec{};
  if (at) {
    // A zero it_value would disarm: a deadline at the clock's origin is simply "now".
    const auto ns = std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(at->time_since_epoch()).count(), 1);
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  }
  if (::timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) throw_errno("timerfd_settime");
}

// Consumes a fired timerfd's expiration count (EAGAIN if it was reprogrammed meanwhile).
void clear_timer(int fd) noexcept {
  std::uint64_t expirations = 0;
  [[maybe_unused]] const auto n = ::read(fd, &expirations, sizeof expirations);
}

bool cuts_input(std::optional<DrainTimeline::Phase> phase) {
  return phase == DrainTimeline::Phase::flushing || phase == DrainTimeline::Phase::closing;
}

}  // namespace

// One connection and its claim word. `state` is the only member a non-owner touches: posting
// an event sets its bit and kBusy; the thread that found kBusy clear is the owner until it
// clears kBusy again with no event left (see post()). Everything below `state` is the owner's.
struct LeaderFollowers::Connection {
  static constexpr std::uint32_t kTimerDue = 1u << 8;  // its timerfd fired
  static constexpr std::uint32_t kNudge = 1u << 9;     // look at the drain phase (and arm, at open)
  static constexpr std::uint32_t kBusy = 1u << 31;     // owned: a thread is running it

  Connection(AdmittedConnection admitted, unique_fd timer, const ServerConfig& config, Stats& stats,
             Clock::time_point now)
      : timer_fd(std::move(timer)),
        io(std::move(admitted.fd), config, stats, timers, /*offload=*/nullptr),
        ticket(std::move(admitted.ticket)),
        last_active(now) {}

  std::atomic<std::uint32_t> state{0};
  TimerQueue timers;   // this connection's --work wait (one timer at most); before `io`
  unique_fd timer_fd;  // fires for `timers` and the idle check; empty when nothing is timed
  ReactorConnection io;
  AdmissionTicket ticket;  // after `io`: given back before the socket closes
  std::uint32_t interest = ReactorConnection::kInitialInterest;
  Clock::time_point last_active;
  std::optional<Clock::time_point> idle_check;  // when to look at last_active next
  std::optional<Clock::time_point> timer_set;   // what timer_fd is programmed to
  bool input_cut = false;
};

LeaderFollowers::LeaderFollowers(ServerContext& context, unsigned threads)
    : config_(context.config),
      stats_(context.stats),
      threads_(std::max(threads, 1u)),
      // One event per wait: the leader takes one and hands the wait on at once.
      multiplexer_(make_epoll_poller(/*edge_triggered=*/false, /*max_events_per_wait=*/1)),
      // Non-blocking (the source makes it so): the backlog is drained until EAGAIN.
      source_(std::make_unique<ListenerSource>(std::move(context.listener), false,
                                               context.admission, nullptr)),
      listener_fd_(source_->fd()),
      drain_(context.config.drain_timeout),
      control_timer_(make_timer_fd()) {
  [[maybe_unused]] const bool added =
      multiplexer_->add(stop_signal::stop_fd(), kReadable | kOneShot) &&
      multiplexer_->add(control_timer_.get(), kOneShot) &&
      multiplexer_->add(listener_fd_, kReadable | kOneShot);
}

LeaderFollowers::~LeaderFollowers() = default;

int LeaderFollowers::run() {
  return run_loop_threads(threads_, [this](std::size_t) { follow(); });
}

// One thread's life: follow until it is its turn to lead, wait for one event, promote a
// follower, handle the event, and follow again.
void LeaderFollowers::follow() {
  std::vector<ReadyEvent> ready;
  try {
    while (become_leader()) {
      try {
        multiplexer_->wait(ready, -1);  // every deadline is a timerfd: no timeout to compute
      } catch (...) {
        promote();
        throw;
      }
      promote();
      for (const ReadyEvent& event : ready) dispatch(event);
    }
  } catch (...) {
    // A connection this thread owned would stay claimed forever and the drain would never
    // end: give up on all of them, let every thread leave (run_loop_threads reports the error).
    done_.store(true);
    { const std::lock_guard lock(leader_mutex_); }
    followers_.notify_all();
    multiplexer_->modify(stop_signal::stop_fd(), kReadable | kOneShot);
    throw;
  }
}

bool LeaderFollowers::become_leader() {
  std::unique_lock lock(leader_mutex_);
  followers_.wait(lock, [this] { return !has_leader_ || done_.load(); });
  if (done_.load()) return false;
  has_leader_ = true;
  return true;
}

void LeaderFollowers::promote() {
  {
    const std::lock_guard lock(leader_mutex_);
    has_leader_ = false;
  }
  followers_.notify_one();
}

void LeaderFollowers::dispatch(const ReadyEvent& event) {
  if (event.fd == stop_signal::stop_fd()) {
    if (!done_.load()) begin_stop();  // once done, it is only the bell that ends the last wait
    return;
  }
  if (event.fd == control_timer_.get()) {
    on_control_timer();
    return;
  }
  // After the stop this number may name nothing any more (no fd is opened after the stop, so
  // it names nothing else either): accept_ready() sees the listener is gone.
  if (event.fd == listener_fd_) {
    accept_ready();
    return;
  }
  Route route;
  {
    const std::lock_guard lock(table_mutex_);
    const auto slot = static_cast<std::size_t>(event.fd);
    if (slot < by_fd_.size()) route = by_fd_[slot];
  }
  // An event routed after its connection closed finds nothing, or the connection that reused
  // the fd: spurious readiness, which the IO answers with EAGAIN.
  if (!route.connection) return;
  post(route.connection, route.timer ? Connection::kTimerDue : (event.events & kSocketEvents));
}

// Posts `bits` to the connection; if nobody owns it, this thread does and runs it until it has
// taken every posted bit. The exchange takes what was posted so far; the compare-exchange
// hands the claim back only if nothing was posted meanwhile, otherwise it goes round again.
void LeaderFollowers::post(const std::shared_ptr<Connection>& connection, std::uint32_t bits) {
  Connection& c = *connection;
  if ((c.state.fetch_or(bits | Connection::kBusy, std::memory_order_acq_rel) & Connection::kBusy) !=
      0) {
    return;  // its owner will see the bits before it lets go
  }
  for (;;) {
    const std::uint32_t taken =
        c.state.exchange(Connection::kBusy, std::memory_order_acq_rel) & ~Connection::kBusy;
    if (!step(c, taken)) return;  // closed: it stays claimed, so nobody runs it again
    std::uint32_t expected = Connection::kBusy;
    if (c.state.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
  }
}

// The owner's turn: do what the posted events allow, then re-arm the socket (and the timer)
// one-shot. False when the connection is closed.
bool LeaderFollowers::step(Connection& c, std::uint32_t bits) {
  const auto now = Clock::now();
  const auto phase = phase_.load(std::memory_order_acquire);
  if (phase == DrainTimeline::Phase::closing) {
    close(c);  // whoever still owes bytes at the end of the flush grace
    return false;
  }
  std::uint32_t interest = c.interest;
  bool progressed = false;
  bool done = false;
  const auto take = [&](const ReactorConnection::Outcome& outcome) {
    interest = outcome.interest;
    progressed |= outcome.progressed;
    done = outcome.done;
  };
  if ((bits & Connection::kTimerDue) != 0) {
    clear_timer(c.timer_fd.get());
    while (!done) {
      const auto due = c.timers.pop_due(now);
      if (!due) break;
      if (c.io.waits_on(due->id)) take(c.io.on_wait_done(/*edge_triggered=*/false));
    }
  }
  // One read per event, as level-triggered readiness allows: re-arming reports the rest.
  if (!done && (bits & kSocketEvents) != 0) take(c.io.on_ready(bits & kSocketEvents, false));
  if (!done && phase == DrainTimeline::Phase::flushing && !c.input_cut) {
    c.input_cut = true;
    take(c.io.stop_reading());
  }
  if (!done && config_.idle_timeout.count() > 0) {
    if (progressed) c.last_active = now;
    if (!c.idle_check) c.idle_check = c.last_active + config_.idle_timeout;  // a new connection
    if (now >= *c.idle_check) {
      if (c.io.has_pending_work()) c.last_active = now;  // its peer awaits a reply: not idle
      if (now - c.last_active >= config_.idle_timeout) {
        spdlog::debug("closing idle connection fd {}", c.io.fd());
        done = true;
      }
      c.idle_check = c.last_active + config_.idle_timeout;
    }
  }
  if (done) {
    close(c);
    return false;
  }
  // Interest 0: only its wait timer can move it on. Its socket then stays disarmed: the kernel
  // reports errors and hang-ups whatever the interest, so re-arming it would hand a reset (or
  // hung-up) peer's socket from thread to thread until the timer. The timer's write finds it.
  c.interest = interest;
  if (interest != 0) multiplexer_->modify(c.io.fd(), interest | kOneShot);
  rearm_timer(c, (bits & Connection::kTimerDue) != 0);
  return true;
}

// Programs the timerfd for the earlier of the wait timer and the idle check. While the
// deadline stays the same and the timer has not fired, its registration is still armed.
void LeaderFollowers::rearm_timer(Connection& c, bool fired) {
  if (!c.timer_fd) return;
  std::optional<Clock::time_point> want = c.timers.next_deadline();
  if (c.idle_check && (!want || *c.idle_check < *want)) want = c.idle_check;
  if (want == c.timer_set && !fired) return;
  set_timer(c.timer_fd.get(), want);
  c.timer_set = want;
  if (want) multiplexer_->modify(c.timer_fd.get(), kReadable | kOneShot);
}

// By the owner. Out of the multiplexer before the fds close; out of the table so no new event
// finds it. The object itself goes when the last thread holding it lets go.
void LeaderFollowers::close(Connection& c) {
  multiplexer_->remove(c.io.fd());
  if (c.timer_fd) multiplexer_->remove(c.timer_fd.get());
  {
    const std::lock_guard lock(table_mutex_);
    by_fd_[static_cast<std::size_t>(c.io.fd())] = {};
    if (c.timer_fd) by_fd_[static_cast<std::size_t>(c.timer_fd.get())] = {};
    --open_connections_;
  }
  finish_if_done();
}

// Drains the backlog, then re-arms the listener: one thread accepts at a time.
void LeaderFollowers::accept_ready() {
  const std::lock_guard lock(control_mutex_);
  if (!source_) return;  // an event that raced with the stop
  for (;;) {
    auto taken = source_->take();
    switch (taken.status) {
      case ConnectionSource::Status::admitted:
        open(std::move(taken.connection));
        continue;
      case ConnectionSource::Status::skipped:
        continue;
      case ConnectionSource::Status::would_block:
        multiplexer_->modify(listener_fd_, kReadable | kOneShot);
        return;
      case ConnectionSource::Status::ended:
        return;  // the stop fd brings the stop
      case ConnectionSource::Status::exhausted:
        // One-shot: the listener is already disarmed; the control timer re-arms it.
        accept_paused_ = true;
        accept_resume_ = Clock::now() + ConnectionSource::kBackoff;
        program_control_timer();
        return;
    }
  }
}

// Under control_mutex_. The sockets are registered without interest first, so no event can
// come before the table routes them; the first step, run here, arms them.
void LeaderFollowers::open(AdmittedConnection admitted) {
  const int raw = admitted.fd.get();
  if (!prepare_or_refuse(admitted, config_)) return;
  unique_fd timer;
  if (config_.work.kind == WorkKind::wait || config_.idle_timeout.count() > 0) {
    timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timer) {
      spdlog::debug("timerfd_create: {}", std::strerror(errno));  // out of descriptors
      admitted.ticket.refuse(std::move(admitted.fd));
      return;
    }
  }
  // epoll refuses no fd; a failing epoll_ctl throws.
  [[maybe_unused]] bool added = multiplexer_->add(raw, kOneShot);
  if (timer) added = multiplexer_->add(timer.get(), kOneShot);
  const int timer_raw = timer ? timer.get() : -1;
  auto connection = std::make_shared<Connection>(std::move(admitted), std::move(timer), config_,
                                                 stats_, Clock::now());
  {
    const std::lock_guard lock(table_mutex_);
    const auto highest = static_cast<std::size_t>(std::max(raw, timer_raw));
    if (highest >= by_fd_.size()) by_fd_.resize(std::max(highest + 1, by_fd_.size() * 2));
    by_fd_[static_cast<std::size_t>(raw)] = {connection, false};
    if (timer_raw >= 0) by_fd_[static_cast<std::size_t>(timer_raw)] = {connection, true};
    ++open_connections_;
  }
  post(connection, Connection::kNudge);
}

void LeaderFollowers::begin_stop() {
  std::optional<DrainTimeline::Phase> entered;
  {
    const std::lock_guard lock(control_mutex_);
    if (drain_.stopping()) return;
    const auto now = Clock::now();
    drain_.stop(now);
    stopping_.store(true);
    if (!accept_paused_) multiplexer_->remove(listener_fd_);
    accept_paused_ = false;
    source_.reset();  // the kernel now refuses new connections on this socket
    entered = drain_.advance(now);
    if (entered) phase_.store(*entered, std::memory_order_release);
    program_control_timer();
  }
  if (cuts_input(entered)) nudge_all();  // --drain-timeout 0
  finish_if_done();
}

void LeaderFollowers::on_control_timer() {
  std::optional<DrainTimeline::Phase> entered;
  {
    const std::lock_guard lock(control_mutex_);
    clear_timer(control_timer_.get());
    const auto now = Clock::now();
    if (accept_paused_ && now >= accept_resume_) {
      accept_paused_ = false;
      multiplexer_->modify(listener_fd_, kReadable | kOneShot);
    }
    if (drain_.stopping()) entered = drain_.advance(now);
    if (entered) phase_.store(*entered, std::memory_order_release);
    program_control_timer();
  }
  if (cuts_input(entered)) nudge_all();
}

void LeaderFollowers::program_control_timer() {
  std::optional<Clock::time_point> next;
  if (accept_paused_) next = accept_resume_;
  if (const auto deadline = drain_.next_deadline(Clock::now())) {
    next = next ? std::min(*next, *deadline) : *deadline;
  }
  set_timer(control_timer_.get(), next);
  if (next) multiplexer_->modify(control_timer_.get(), kReadable | kOneShot);
}

// The drain moved on (input cut, or close): every connection must look at the phase. The ones
// nobody owns run here; an owner sees the nudge before it lets go of its connection.
void LeaderFollowers::nudge_all() {
  std::vector<std::shared_ptr<Connection>> all;
  {
    const std::lock_guard lock(table_mutex_);
    for (const Route& route : by_fd_) {
      if (route.connection && !route.timer) all.push_back(route.connection);
    }
  }
  for (const auto& connection : all) post(connection, Connection::kNudge);
}

// Stopped, and the last connection is gone: every thread leaves. Followers wake on the
// condition variable; the leader, parked in epoll_wait, wakes on the stop fd re-armed as a bell.
void LeaderFollowers::finish_if_done() {
  if (!stopping_.load()) return;
  {
    const std::lock_guard lock(table_mutex_);
    if (open_connections_ != 0) return;
  }
  if (done_.exchange(true)) return;
  { const std::lock_guard lock(leader_mutex_); }  // no follower between its check and its wait
  followers_.notify_all();
  multiplexer_->modify(stop_signal::stop_fd(), kReadable | kOneShot);
}

}  // namespace polyecho
