#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "bench_plan.hpp"
#include "payload.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho::bench {

// One event loop thread of the load generator: owns an epoll instance and a share of the
// connections, and never blocks on any single one of them. Everything per connection is
// allocated before the loop starts; the hot path (fill, send, recv, verify, record) allocates
// nothing, because the payload is regenerated from its position instead of buffered.
//
// run() is called once, on the worker's own thread. The progress counters may be read from
// any thread (relaxed: they feed a human progress line only).
class BenchWorker {
 public:
  // `ids`: the connection ids this worker owns (distinct across workers).
  BenchWorker(const BenchPlan& plan, std::vector<std::uint32_t> ids);
  ~BenchWorker();
  BenchWorker(const BenchWorker&) = delete;
  BenchWorker& operator=(const BenchWorker&) = delete;

  void run();
  [[nodiscard]] const BenchTotals& totals() const noexcept { return totals_; }

  // Read by the progress line on the main thread; written only by this worker's thread.
  std::atomic<std::uint64_t> progress_messages{0};
  std::atomic<std::uint64_t> progress_errors{0};
  std::atomic<std::int64_t> progress_open{0};

 private:
  enum class State : std::uint8_t { pending, connecting, running, holding, done, failed };
  struct Connection {
    unique_fd fd;
    std::uint32_t id = 0;
    std::uint32_t index = 0;  // position in this worker's connections_
    State state = State::pending;
    std::uint32_t interest = 0;  // what epoll watches now; 0 = not registered
    StreamCursor sent;
    StreamCursor received;
    std::uint64_t allowed = 0;   // messages that may have been sent so far
    std::uint64_t rounds = 0;    // reconnect: connections this slot completed
    std::uint64_t measured = 0;  // messages this connection completed inside the window
    std::int64_t connect_started = 0;
    std::int64_t last_progress = 0;
    std::unique_ptr<std::int64_t[]>
        sent_at;  // closed loop: send time, one slot per message in flight

    [[nodiscard]] std::uint64_t position(const StreamCursor& at, std::size_t size) const noexcept {
      return at.seq * size + at.offset;
    }
  };

  void open_due(std::int64_t now);
  void start_connect(Connection& c, std::int64_t now);
  void on_event(Connection& c, std::uint32_t events);
  void on_connected(Connection& c, std::int64_t now);
  void on_readable(Connection& c);
  // `now` stamps the messages it sends: the caller's clock reading, one per read or event.
  void try_send(Connection& c, std::int64_t now);
  void on_message(Connection& c, std::uint64_t seq, std::int64_t now);
  void release_scheduled(std::int64_t now);
  void begin_drain(std::int64_t now);
  void maybe_finish(Connection& c, std::int64_t now);
  void finish(Connection& c, std::int64_t now);
  void fail(Connection& c, std::uint64_t ErrorCounts::*category, const char* what, int error);
  void sweep_timeouts(std::int64_t now);
  void set_interest(Connection& c, std::uint32_t events);
  [[nodiscard]] std::int64_t next_wakeup(std::int64_t now) const;
  [[nodiscard]] bool finished() const noexcept {
    return open_ == 0 && next_to_open_ == connections_.size();
  }
  [[nodiscard]] std::int64_t intended_send(const Connection& c, std::uint64_t seq) const noexcept;

  const BenchPlan& plan_;
  Payload payload_;
  unique_fd epoll_;
  std::vector<Connection> connections_;
  std::vector<char> send_scratch_;
  std::vector<char> recv_scratch_;
  std::vector<char> expect_scratch_;  // what recv_scratch_ should hold, regenerated to compare
  BenchTotals totals_;
  std::size_t next_to_open_ = 0;  // ramp position
  std::size_t open_ = 0;          // connections connecting, running or holding
  std::size_t connecting_ = 0;
  std::uint64_t opened_ = 0;          // connect attempts so far (paces --connect-rate)
  std::uint64_t next_scheduled_ = 0;  // open loop: this thread's next message on the schedule
  double schedule_interval_ = 0;      // open loop: ns between this thread's messages
  double connect_interval_ = 0;       // ns between this thread's connects
  bool draining_ = false;
  std::int64_t next_sweep_ = 0;
};

}  // namespace polyecho::bench
