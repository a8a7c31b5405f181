#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "latency_histogram.hpp"
#include "polyecho/endpoint.hpp"

namespace polyecho::bench {

enum class BenchMode {
  closed_loop,  // ping-pong (pipeline 1) or pipelined: send the next message when one returns
  open_loop,    // --rate: messages leave on a fixed schedule whatever the server does
  reconnect,    // a new connection per message: connect, send, receive, close
  idle,         // one round trip per connection, then hold it open until the deadline
  stream,       // --stream: keep `pipeline` messages (the window) in flight, no latency taken
};

[[nodiscard]] const char* to_string(BenchMode mode) noexcept;

// Everything a worker thread needs, fixed before the threads start. Times are CLOCK_MONOTONIC
// nanoseconds (see now_ns()).
struct BenchPlan {
  Endpoint endpoint;
  BenchMode mode = BenchMode::closed_loop;
  std::uint32_t connections = 1;  // total, across threads (reconnect: concurrent slots)
  std::size_t size = 64;          // per message; framed, each travels with a 4-byte header too
  bool frame = false;             // each message is one length-prefixed frame (see Payload)
  std::uint32_t pipeline = 1;     // messages in flight (stream: the window, in whole messages)
  std::uint64_t messages = 0;     // per connection (reconnect: per slot); 0 = run for the duration
  double rate = 0;                // open loop: total messages per second
  double connect_rate = 0;  // new connections per second while ramping; 0 = as fast as possible
  // Connect from 127.0.1.1 ... 127.0.1.N in turn (IPv4 loopback targets only; 0 = no bind). A
  // reconnect run opens tens of thousands of connections a second, and one source address
  // has 28,000 ephemeral ports, each held about 1 s in TIME_WAIT before loopback may reuse it.
  unsigned sources = 0;
  std::int64_t start = 0;         // t0: ramp and open-loop schedule start here
  std::int64_t measure_from = 0;  // end of warmup: results count from here
  std::int64_t deadline = 0;      // duration mode: stop sending here (INT64_MAX with --messages)
  std::int64_t timeout = 0;       // a connection making no progress this long fails
  unsigned threads = 1;
};

[[nodiscard]] std::int64_t now_ns() noexcept;

// How evenly messages spread over connections: the slowest, the 1st percentile, the median and
// the fastest connection's count, and Jain's index (sum x)^2 / (n * sum x^2), which is 1 when
// every connection got the same and 1/n when one got everything.
struct Fairness {
  std::uint64_t min = 0;
  std::uint64_t p1 = 0;
  std::uint64_t median = 0;
  std::uint64_t max = 0;
  double jain = 0;
};
// `counts` is sorted in place. Empty input: all zero.
[[nodiscard]] Fairness fairness_of(std::vector<std::uint64_t>& counts);

// Error categories; each one fails the connection it happened on and the run's exit code.
struct ErrorCounts {
  std::uint64_t connect = 0;   // connect() failed (refused, EADDRNOTAVAIL, EMFILE, ...)
  std::uint64_t reset = 0;     // ECONNRESET/EPIPE or another socket error
  std::uint64_t eof = 0;       // the server closed before echoing everything (short echo)
  std::uint64_t mismatch = 0;  // an echoed byte differs from what was sent
  std::uint64_t timeout = 0;   // nothing moved for --timeout seconds
  [[nodiscard]] std::uint64_t total() const noexcept {
    return connect + reset + eof + mismatch + timeout;
  }
  void merge(const ErrorCounts& o) noexcept {
    connect += o.connect, reset += o.reset, eof += o.eof, mismatch += o.mismatch,
        timeout += o.timeout;
  }
};

// What one worker measured; merged across workers at the end.
struct BenchTotals {
  std::uint64_t messages = 0;        // verified round trips inside the measured window
  std::uint64_t connections_ok = 0;  // ended cleanly (reconnect: every completed connection)
  std::uint64_t connections_failed = 0;
  std::uint64_t starved = 0;          // connected fine but completed no message in the window
  std::uint64_t not_opened = 0;       // the deadline came before the ramp reached them
  std::uint64_t behind_schedule = 0;  // open loop: due but not yet sent at the deadline
  std::int64_t last_completion = 0;   // --messages: when the last echo arrived
  ErrorCounts errors;
  LatencyHistogram latency;  // nanoseconds
  // Messages each connection completed inside the window, one entry per connection that ended
  // cleanly (closed and open loop only): how evenly the server shared itself out. Filled once
  // per connection at its end, never per message.
  std::vector<std::uint64_t> per_connection;
  std::string first_error;  // the first failure, for the report

  void merge(const BenchTotals& o);
};

}  // namespace polyecho::bench
