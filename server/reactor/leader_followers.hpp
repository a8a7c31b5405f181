#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "lifecycle/admission.hpp"
#include "lifecycle/backend.hpp"
#include "lifecycle/connection_source.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "poller/multiplexer.hpp"
#include "reactor/reactor_connection.hpp"
#include "reactor/timer_queue.hpp"

namespace polyecho {

// The POSA2 Leader/Followers topology over one shared epoll multiplexer. N threads take turns:
// exactly one, the leader, waits in the multiplexer for ONE event; it then promotes a follower
// to leader (mutex + condition variable) and handles the event itself, while the new leader
// waits for the next one. No queue sits between the thread that learns of an event and the
// thread that handles it: they are the same thread, so there is no hand-off and nothing to
// bound.
//
// Every fd is watched with kOneShot (EPOLLONESHOT): an event goes to one thread and the fd is
// not reported again until that thread re-arms it, so one connection's socket is handled by one
// thread at a time. A connection can have two event sources, its socket and its timerfd (a
// --work wait, the idle timeout), plus the drain's nudges; those meet in a per-connection claim
// word (Connection::state): whoever posts into a free connection owns it and runs it until no
// posted event is left, and a post into a busy one is left for the owner to run. So the Session
// and the ReactorConnection around it are only ever touched by their owner, without a lock.
//
// Shared state and its guard:
//  - the fd -> connection table (`table_mutex_`): inserted on accept (any thread), erased on
//    close (the owner), read to route every event. A connection is held by shared_ptr so a
//    thread routing a stale event can still post into it safely after it closed.
//  - the listener, the Acceptor, the drain timeline and the accept backoff (`control_mutex_`):
//    the listener is one-shot as well, so one thread drains the backlog and re-arms it.
//  - leadership (`leader_mutex_`, `followers_`).
// Time lives in timerfds in the same epoll (each connection's own, and one for the server's
// deadlines), so the leader waits without a timeout and no thread sleeps on a clock.
class LeaderFollowers {
 public:
  // Takes the context's listener. Setup failures (epoll, timerfd) throw here, before threads.
  LeaderFollowers(ServerContext& context, unsigned threads);
  ~LeaderFollowers();
  LeaderFollowers(const LeaderFollowers&) = delete;
  LeaderFollowers& operator=(const LeaderFollowers&) = delete;

  // Runs the threads (the calling one among them) until the stop has drained every
  // connection. Returns the exit code.
  int run();

 private:
  using Clock = std::chrono::steady_clock;
  struct Connection;
  struct Route {
    std::shared_ptr<Connection> connection;
    bool timer = false;  // the fd is the connection's timerfd, not its socket
  };

  void follow();
  bool become_leader();
  void promote();
  void dispatch(const ReadyEvent& event);
  void post(const std::shared_ptr<Connection>& connection, std::uint32_t bits);
  bool step(Connection& connection, std::uint32_t bits);
  void rearm_timer(Connection& connection, bool fired);
  void close(Connection& connection);
  void accept_ready();
  void open(AdmittedConnection admitted);
  void begin_stop();
  void on_control_timer();
  void program_control_timer();  // control_mutex_ held
  void nudge_all();
  void finish_if_done();

  const ServerConfig& config_;
  Stats& stats_;
  const unsigned threads_;
  std::unique_ptr<Multiplexer> multiplexer_;  // shared by every thread; see multiplexer.hpp

  std::mutex leader_mutex_;
  std::condition_variable followers_;
  bool has_leader_ = false;        // leader_mutex_
  std::atomic<bool> done_{false};  // stopped and drained: every thread leaves

  std::mutex control_mutex_;
  // The listener, which accepts and admits (lifecycle/connection_source.hpp). control_mutex_:
  // one accepting thread at a time; closed at the stop.
  std::unique_ptr<ConnectionSource> source_;
  const int listener_fd_;              // its number, to route its (possibly stale) events
  DrainTimeline drain_;                // control_mutex_
  bool accept_paused_ = false;         // control_mutex_: the listener is not re-armed until ...
  Clock::time_point accept_resume_{};  // ... this instant
  unique_fd control_timer_;            // the server's deadlines: accept backoff and drain phases
  std::atomic<bool> stopping_{false};
  // The drain phase every connection must honour; read by owners, written under control_mutex_.
  std::atomic<DrainTimeline::Phase> phase_{DrainTimeline::Phase::serving};

  std::mutex table_mutex_;
  std::vector<Route> by_fd_;          // table_mutex_; grows with the highest fd
  std::size_t open_connections_ = 0;  // table_mutex_
};

}  // namespace polyecho
