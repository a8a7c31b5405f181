#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <vector>

#include "lifecycle/admission.hpp"
#include "lifecycle/backend.hpp"
#include "lifecycle/connection_source.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/thread_affinity.hpp"
#include "poller/multiplexer.hpp"
#include "reactor/offload_link.hpp"
#include "reactor/reactor_connection.hpp"
#include "reactor/timer_queue.hpp"

namespace polyecho {

// The one readiness loop behind every model built on the Multiplexer seam: a multiplexer says
// which fds are ready, the reactor decides what that means. It never asks which multiplexer it
// has: how they differ reaches it only through add()'s refusal, edge_triggered() and
// after_dispatch().
//  - Accepting: new connections come from a ConnectionSource (lifecycle/connection_source.hpp:
//    its own listener, a shared one, a main acceptor's inbox or a master's channel; which one
//    is the topology's business, topology/). On its readiness, take until it is empty; the
//    source has admitted each one already. When descriptors run out (`exhausted`), stop
//    watching the source and look again after ConnectionSource::kBackoff, so EMFILE never spins.
//  - Connections: ReactorConnection does the IO; the reactor only moves interest in the
//    multiplexer and closes what is done. Admission is the shared, process-wide gate.
//  - Idle timeout: connections live in a list ordered by last activity, so the next deadline
//    is the front's; activity moves a connection to the back (O(1)). No wakeup scans them all.
//    A connection whose message is still being worked on is not idle: its peer awaits a reply.
//  - Other timers (--work wait): a TimerQueue. A connection arms its own wait timer, with its
//    fd as the payload, and cancels it when destroyed; when one is due the reactor hands it to
//    that connection. The wait for readiness never outsleeps the earliest timer.
//  - Offload (--offload N, cpu and block work): the reactor keeps all the IO and a shared
//    OffloadPool does the work. Its OffloadLink's wake fd sits in the multiplexer beside the
//    stop fd; when it is readable the reactor hands each completion to the connection it
//    names (if that connection still exists: a serial tells it from a newer one on the same
//    fd) and, when a pool thread has made room in the full queue, hands room to the
//    connections the queue refused, oldest first, until one is refused again.
//  - Stop: the sticky stop fd wakes every reactor; it stops accepting (lets go of its source,
//    after taking what an inbox or channel already holds)
//    and follows the shared DrainTimeline: connections run on until --drain-timeout, then
//    read no more and flush what they owe, then whatever is left is closed.
// Owns its source and its multiplexer. Not thread-safe: run() on one thread per reactor.
class Reactor {
 public:
  // `offload`: the pool for cpu and block work (--offload), or nullptr to do it inline. It
  // must be joined before this reactor is destroyed.
  Reactor(const ServerConfig& config, Stats& stats, std::unique_ptr<ConnectionSource> source,
          std::unique_ptr<Multiplexer> multiplexer, OffloadPool* offload = nullptr);
  void run();

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Entry(AdmittedConnection admitted, const ServerConfig& config, Stats& stats, TimerQueue& timers,
          OffloadLink* offload, Clock::time_point now)
        : connection(std::move(admitted.fd), config, stats, timers, offload),
          ticket(std::move(admitted.ticket)),
          last_active(now) {}
    ReactorConnection connection;
    AdmissionTicket ticket;  // after `connection`: given back before the socket closes
    std::uint32_t interest = ReactorConnection::kInitialInterest;  // 0: not in the multiplexer
    Clock::time_point last_active;
  };
  using EntryList = std::list<Entry>;

  void wait_for_events();
  [[nodiscard]] std::chrono::microseconds moderation() const;
  void dispatch(const ReadyEvent& event);
  void apply(EntryList::iterator entry, const ReactorConnection::Outcome& outcome);
  void touch(EntryList::iterator entry);
  void fire(const TimerQueue::Due& due);
  void offload_woken();
  [[nodiscard]] EntryList::iterator find(const ConnectionRef& connection);
  bool accept_ready();
  void open(AdmittedConnection admitted);
  void close(EntryList::iterator entry);
  void begin_stop();
  void expire_timers();
  [[nodiscard]] int next_timeout_ms() const;
  [[nodiscard]] std::uint32_t source_interest() const noexcept {
    return kReadable | (source_->shared() ? kExclusive : 0u);
  }

  const ServerConfig& config_;
  Stats& stats_;
  // Before the multiplexer, so it is destroyed after it: its wake fd is watched there.
  std::unique_ptr<OffloadLink> offload_;        // nullptr without --offload
  std::vector<ConnectionRef> offload_scratch_;  // completions or refusals being handed out
  std::unique_ptr<ConnectionSource> source_;    // null once stopping
  LoopStats* loop_stats_;                       // the source's, kept past it; may be null
  std::unique_ptr<Multiplexer> multiplexer_;
  TimerQueue timers_;      // before the connections: they cancel their timers when destroyed
  EntryList by_activity_;  // owns the connections; least recently active first
  std::vector<EntryList::iterator> by_fd_;  // fd -> entry or end(); grows with the highest fd
  std::vector<ReadyEvent> ready_;
  Clock::time_point now_;
  bool progressed_ = false;
  DrainTimeline drain_;
  ThreadAffinity loop_thread_;  // bound in run(): everything above is touched only there
  bool source_watched_ = true;  // in the multiplexer now
  bool streamed_ = false;       // a connection moved a stream in the last batch (apply())
  bool moderates_;  // --wait-moderation applies: the multiplexer scans every fd per wait
  bool accept_paused_ = false;  // out of it until accept_resume_ (descriptors ran out)
  Clock::time_point accept_resume_{};
};

// The acceptor mode of the reactor models when --acceptor is not given: a listener per reactor.
inline constexpr AcceptorMode kReactorAcceptor = AcceptorMode::reuseport;

// Runs `workers` independent reactors (at least one), each with its own multiplexer from
// `make_multiplexer`, fed as --acceptor says (topology/loop_topology.hpp; the backend's
// adjust_listener must call adjust_for_topology with kReactorAcceptor). The calling thread
// receives the signals; the reactor threads block them. Returns the exit code: 0, or 1 if a
// reactor failed (which also stops the others).
int run_reactors(ServerContext& context, unsigned workers,
                 const std::function<std::unique_ptr<Multiplexer>()>& make_multiplexer);

}  // namespace polyecho
