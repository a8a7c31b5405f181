#include "reactor/reactor.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <optional>

#include "lifecycle/connection_options.hpp"
#include "lifecycle/threads.hpp"
#include "polyecho/stop_signal.hpp"
#include "topology/loop_topology.hpp"

namespace polyecho {

namespace {
// --offload N: one pool for every reactor of the process, and only for work that occupies a
// thread. A wait stays on each loop's timers, which already overlap any number of waits
// without blocking anything: a pool thread would only sleep through it, and N of them would
// cap how many waits run at once.
std::unique_ptr<OffloadPool> make_offload_pool(const ServerConfig& config, Stats& stats) {
  const bool occupies_thread =
      config.work.kind == WorkKind::cpu || config.work.kind == WorkKind::block;
  if (config.offload_threads == 0 || !occupies_thread) return nullptr;
  return std::make_unique<OffloadPool>(config.offload_threads, config.offload_queue, config.work,
                                       stats);
}
}  // namespace

Reactor::Reactor(const ServerConfig& config, Stats& stats, std::unique_ptr<ConnectionSource> source,
                 std::unique_ptr<Multiplexer> multiplexer, OffloadPool* offload)
    : config_(config),
      stats_(stats),
      offload_(offload != nullptr ? std::make_unique<OffloadLink>(*offload) : nullptr),
      source_(std::move(source)),
      loop_stats_(source_->loop_stats()),
      multiplexer_(std::move(multiplexer)),
      drain_(config.drain_timeout),
      moderates_(multiplexer_->scans_every_fd()) {
  if (!multiplexer_->add(stop_signal::stop_fd(), kReadable) ||
      !multiplexer_->add(source_->fd(), source_interest())) {
    throw std::runtime_error("the multiplexer cannot watch the connection source");
  }
  if (offload_ && !multiplexer_->add(offload_->wake_fd(), kReadable)) {
    throw std::runtime_error("the multiplexer cannot watch the offload wake fd");
  }
}

void Reactor::run() {
  loop_thread_.bind_here();
  while (!drain_.stopping() || !by_activity_.empty()) {
    wait_for_events();
    if (loop_stats_ != nullptr) loop_stats_->record_wait(ready_.size());
    now_ = Clock::now();
    progressed_ = false;
    streamed_ = false;
    for (const ReadyEvent& event : ready_) dispatch(event);
    // A signal may land while we wait (EINTR, empty list) before the stop fd is reported.
    if (!drain_.stopping() && stop_signal::requested()) begin_stop();
    expire_timers();
    // A guessing multiplexer paces itself on it; an echo a timer released counts as progress.
    multiplexer_->after_dispatch(progressed_);
  }
}

// poll and select pay for every watched fd on each wait, however few are ready; a wait that
// blocks also registers on every socket's wait queue and leaves them all when it wakes. Under
// streams the loop outruns its clients: it wakes for the first socket that fills, relays it,
// and blocks again, so each 64 KiB moved costs a full scan and registration (perf, poll at 500
// streaming connections: about 30% of the loop's samples in the wait queues' locks).
// --wait-moderation batches the wakeups, as a network card's interrupt moderation does: after a
// batch that moved a stream, look without blocking (a zero timeout registers on no queue), and if
// nothing is ready yet, sleep for moderation() before waiting, so that the wait finds several
// sockets ready. A stream's bytes wait at most that (plus the kernel's timer slack) longer. A
// batch of small messages never streams, so a ping-pong alone never pauses; one that shares
// the loop with streams can wait up to the pause (docs/PERFORMANCE.md measures it).
void Reactor::wait_for_events() {
  const int timeout_ms = next_timeout_ms();
  auto pause =
      streamed_ && moderates_ && timeout_ms != 0 ? moderation() : std::chrono::microseconds{0};
  if (timeout_ms > 0)
    pause = std::min<std::chrono::microseconds>(pause, std::chrono::milliseconds(timeout_ms));
  if (pause.count() > 0) {
    multiplexer_->wait(ready_, 0);
    if (!ready_.empty()) return;
    if (loop_stats_ != nullptr) loop_stats_->moderated.fetch_add(1, std::memory_order_relaxed);
    const auto whole = std::chrono::duration_cast<std::chrono::seconds>(pause);
    const timespec interval{static_cast<time_t>(whole.count()),
                            static_cast<long>(std::chrono::nanoseconds(pause - whole).count())};
    // A signal cuts it short, and the wait below then sees the stop fd: nothing is lost.
    ::clock_nanosleep(CLOCK_MONOTONIC, 0, &interval, nullptr);
  }
  multiplexer_->wait(ready_, timeout_ms);
}

// --wait-moderation's pause. auto: in proportion to what the next wait costs, the fds it walks
// (about 2 us per connection, within [25 us, 1 ms]), so the scans stay a small share of the
// loop's time however many connections there are; a fixed figure otherwise.
std::chrono::microseconds Reactor::moderation() const {
  if (config_.wait_moderation) return *config_.wait_moderation;
  constexpr std::chrono::microseconds kPerConnection{2};
  constexpr std::chrono::microseconds kLeast{25};
  constexpr std::chrono::microseconds kMost{1000};
  return std::clamp<std::chrono::microseconds>(
      kPerConnection * static_cast<std::int64_t>(by_activity_.size()), kLeast, kMost);
}

void Reactor::dispatch(const ReadyEvent& event) {
  if (event.fd == stop_signal::stop_fd()) {
    if (stop_signal::requested()) begin_stop();  // a guessing poller may report it early
    return;
  }
  if (offload_ && event.fd == offload_->wake_fd()) {
    offload_woken();
    return;
  }
  if (source_ && event.fd == source_->fd()) {
    if (!drain_.stopping()) progressed_ |= accept_ready();
    return;
  }
  const auto slot = static_cast<std::size_t>(event.fd);
  // A connection closed earlier in this batch leaves a stale event; its fd may even have been
  // reused by a connection accepted since. Spurious readiness is harmless: IO says EAGAIN.
  if (slot >= by_fd_.size() || by_fd_[slot] == by_activity_.end()) return;
  const auto entry = by_fd_[slot];
  apply(entry, entry->connection.on_ready(event.events, multiplexer_->edge_triggered()));
}

// Closes the connection, or watches what it needs now. Interest 0 (it waits only for its work
// timer) takes it out of the multiplexer altogether: the kernel reports errors and hang-ups
// whatever the interest, so a level-triggered poller would report a reset peer on every wait
// until the timer fires. The timer's write then finds the reset.
void Reactor::apply(EntryList::iterator entry, const ReactorConnection::Outcome& outcome) {
  if (outcome.done) {
    close(entry);
    progressed_ = true;
    return;
  }
  streamed_ |= outcome.streamed;
  if (outcome.progressed) {
    progressed_ = true;
    touch(entry);
  }
  if (outcome.interest != entry->interest) {
    const int fd = entry->connection.fd();
    if (outcome.interest == 0) {
      multiplexer_->remove(fd);
    } else if (entry->interest == 0) {
      // Watched before, so no multiplexer can refuse it now.
      [[maybe_unused]] const bool added = multiplexer_->add(fd, outcome.interest);
    } else {
      multiplexer_->modify(fd, outcome.interest);
    }
    entry->interest = outcome.interest;
  }
}

void Reactor::touch(EntryList::iterator entry) {
  entry->last_active = now_;
  by_activity_.splice(by_activity_.end(), by_activity_, entry);
}

// A work timer is due. Connections cancel theirs when they close, so the fd in the payload
// names the connection that armed it even if fds were reused since; waits_on() checks that
// promise rather than trusting it.
void Reactor::fire(const TimerQueue::Due& due) {
  loop_thread_.check("Reactor::fire");
  const auto slot = static_cast<std::size_t>(due.payload);
  if (slot >= by_fd_.size() || by_fd_[slot] == by_activity_.end()) return;
  const auto entry = by_fd_[slot];
  if (!entry->connection.waits_on(due.id)) return;
  apply(entry, entry->connection.on_wait_done(multiplexer_->edge_triggered()));
}

// Connections are only ever found by their fd and checked by serial: an entry for a closed
// connection, or a newer one on the same fd, says no.
Reactor::EntryList::iterator Reactor::find(const ConnectionRef& connection) {
  const auto slot = static_cast<std::size_t>(connection.fd);
  if (slot >= by_fd_.size()) return by_activity_.end();
  return by_fd_[slot];
}

// The pool posted completions, room, or both. Completions first: they may submit the next
// messages of their connections, which then queue behind the connections refused earlier.
void Reactor::offload_woken() {
  loop_thread_.check("Reactor::offload_woken");
  const bool room = offload_->take(offload_scratch_);
  const bool edge = multiplexer_->edge_triggered();
  for (const ConnectionRef& done : offload_scratch_) {
    const auto entry = find(done);
    if (entry == by_activity_.end() || !entry->connection.awaits_offload(done)) continue;
    apply(entry, entry->connection.on_offload_done(edge));
  }
  if (!room) return;
  offload_->take_refused(offload_scratch_);
  for (std::size_t i = 0; i < offload_scratch_.size(); ++i) {
    const auto entry = find(offload_scratch_[i]);
    if (entry == by_activity_.end() || !entry->connection.awaits_room(offload_scratch_[i])) {
      continue;  // closed while it waited
    }
    const auto outcome = entry->connection.on_room(edge);
    const bool refused_again = entry->connection.awaits_room(offload_scratch_[i]);
    apply(entry, outcome);
    if (refused_again) {
      // Full again: it went back on the list, and the rest follow it there in their order,
      // untried (each would be refused too). The pool posts room again at its next pop.
      offload_->refuse_again(std::span(offload_scratch_).subspan(i + 1));
      return;
    }
  }
}

// Takes what the source holds (edge-triggered readiness requires that anyway).
bool Reactor::accept_ready() {
  bool progressed = false;
  for (;;) {
    auto taken = source_->take();
    switch (taken.status) {
      case ConnectionSource::Status::admitted:
        open(std::move(taken.connection));
        progressed = true;
        continue;
      case ConnectionSource::Status::skipped:
        progressed = true;
        continue;
      case ConnectionSource::Status::would_block:
        return progressed;
      case ConnectionSource::Status::ended:
      case ConnectionSource::Status::exhausted:
        // Ended: nothing more will come (stop watching, or a level-triggered loop spins).
        // Exhausted: look again after the backoff.
        multiplexer_->remove(source_->fd());
        accept_paused_ = taken.status == ConnectionSource::Status::exhausted;
        source_watched_ = false;
        accept_resume_ = now_ + ConnectionSource::kBackoff;
        return progressed;
    }
  }
}

void Reactor::open(AdmittedConnection admitted) {
  loop_thread_.check("Reactor::open");
  const int raw = admitted.fd.get();
  if (!prepare_or_refuse(admitted, config_)) return;
  if (!multiplexer_->add(raw, ReactorConnection::kInitialInterest)) {
    // The poller cannot watch this fd at all (and has said why): refuse this one only.
    admitted.ticket.refuse(std::move(admitted.fd));
    return;
  }
  const auto slot = static_cast<std::size_t>(raw);
  if (slot >= by_fd_.size())
    by_fd_.resize(std::max(slot + 1, by_fd_.size() * 2), by_activity_.end());
  by_activity_.emplace_back(std::move(admitted), config_, stats_, timers_, offload_.get(), now_);
  by_fd_[slot] = std::prev(by_activity_.end());
}

void Reactor::close(EntryList::iterator entry) {
  loop_thread_.check("Reactor::close");
  const int fd = entry->connection.fd();
  // Before close(): the multiplexer must never see a dead fd (interest 0: not watched now).
  if (entry->interest != 0) multiplexer_->remove(fd);
  by_fd_[static_cast<std::size_t>(fd)] = by_activity_.end();
  by_activity_.erase(entry);  // closes the socket, returns its slot, adds its counters
}

void Reactor::begin_stop() {
  if (drain_.stopping()) return;
  // Connections already accepted and waiting in an inbox or channel are ours: serve them too.
  if (source_watched_ && source_->holds_accepted()) accept_ready();
  drain_.stop(Clock::now());
  // The stop fd stays readable forever: stop watching it or a level-triggered loop spins.
  multiplexer_->remove(stop_signal::stop_fd());
  if (source_watched_) multiplexer_->remove(source_->fd());
  source_watched_ = false;
  accept_paused_ = false;
  source_.reset();  // a listener closes: the kernel now refuses new connections on it
}

void Reactor::expire_timers() {
  if (accept_paused_ && now_ >= accept_resume_) {
    accept_paused_ = false;
    source_watched_ = true;
    [[maybe_unused]] const bool added = multiplexer_->add(source_->fd(), source_interest());
  }
  while (const auto due = timers_.pop_due(now_)) fire(*due);
  if (config_.idle_timeout.count() > 0) {
    while (!by_activity_.empty() &&
           now_ - by_activity_.front().last_active >= config_.idle_timeout) {
      const auto front = by_activity_.begin();
      if (front->connection.has_pending_work()) {
        touch(front);  // its peer awaits a reply; a fresh stamp ends this loop for it
        continue;
      }
      spdlog::debug("closing idle connection fd {}", front->connection.fd());
      close(front);
    }
  }
  const auto phase = drain_.advance(now_);
  if (phase == DrainTimeline::Phase::flushing) {
    // Stop reading everywhere, but echo what was received; peers get the flush grace to take it.
    // Pending messages stay pending: their work goes on and their echoes follow.
    for (auto it = by_activity_.begin(); it != by_activity_.end();) {
      const auto entry = it++;
      apply(entry, entry->connection.stop_reading());
    }
  } else if (phase == DrainTimeline::Phase::closing) {
    while (!by_activity_.empty()) close(by_activity_.begin());  // whoever still owes bytes
  }
}

int Reactor::next_timeout_ms() const {
  std::optional<Clock::time_point> next;
  const auto consider = [&](Clock::time_point t) { next = next ? std::min(*next, t) : t; };
  if (accept_paused_) consider(accept_resume_);
  if (const auto timer = timers_.next_deadline()) consider(*timer);
  if (config_.idle_timeout.count() > 0 && !by_activity_.empty()) {
    consider(by_activity_.front().last_active + config_.idle_timeout);
  }
  const auto now = Clock::now();
  if (const auto drain_deadline = drain_.next_deadline(now)) consider(*drain_deadline);
  if (!next) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}

int run_reactors(ServerContext& context, unsigned workers,
                 const std::function<std::unique_ptr<Multiplexer>()>& make_multiplexer) {
  workers = std::max(workers, 1u);
  // Everything that can fail at setup fails here, on the calling thread, before any thread.
  LoopTopology topology(context, workers, kReactorAcceptor);
  std::vector<std::unique_ptr<Reactor>> reactors;
  // After `reactors`, so it is destroyed first: its threads are joined before the reactors
  // (whose inboxes they post to) go away.
  const auto pool = make_offload_pool(context.config, context.stats);
  for (unsigned i = 0; i < workers; ++i) {
    reactors.push_back(std::make_unique<Reactor>(context.config, context.stats, topology.source(i),
                                                 make_multiplexer(), pool.get()));
  }
  return topology.run([&reactors](std::size_t i) { reactors[i]->run(); });
}

}  // namespace polyecho
