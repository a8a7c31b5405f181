#include "reactor/reactor_connection.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {

static_assert(ReactorConnection::kInitialInterest == kReadable);

ReactorConnection::ReactorConnection(unique_fd fd, const ServerConfig& config, Stats& stats)
    : fd_(std::move(fd)), stats_(stats), session_(config.protocol) {}

ReactorConnection::~ReactorConnection() {
  counters_.flush_to(stats_);
  if (error_ != 0) {
    stats_.errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("connection fd {} ended: {}", fd_.get(), std::strerror(error_));
  }
}

ReactorConnection::Outcome ReactorConnection::on_ready(std::uint32_t events, bool edge_triggered) {
  // An error or hang-up is "readable": the next recv reports it (or the last bytes and EOF).
  if (events & (kReadable | kError)) may_read_ = true;
  bool progressed = false;
  for (;;) {
    bool moved = false;
    if (may_read_ && session_.wants_input() && !peer_eof_) moved |= read_phase(edge_triggered);
    if (error_ == 0 && session_.has_output()) moved |= write_phase();
    if (error_ != 0) return {0, progressed || moved};
    progressed |= moved;
    // Level-triggered: the notifier repeats itself, one round per wakeup is fairer. Edge-
    // triggered: a write may have made room for bytes the kernel still holds and will not
    // announce again, so go round until reading is blocked or there is nothing left to read.
    if (!edge_triggered || !moved || !may_read_ || !session_.wants_input()) break;
  }
  if (session_.finished()) return {0, progressed};
  return {interest(), progressed};
}

bool ReactorConnection::read_phase(bool edge_triggered) {
  bool moved = false;
  for (;;) {
    const auto space = session_.input_space();
    if (space.empty()) return moved;  // backpressure: the buffer is full until the peer drains
    const IoResult r = read_some(fd_.get(), space);  // EINTR retried inside
    if (r.ok()) {
      counters_.bytes_in += static_cast<std::uint64_t>(r.bytes);
      session_.on_received(static_cast<std::size_t>(r.bytes));
      moved = true;
      // A short read does NOT prove the socket is empty: an EOF that arrived with these bytes
      // raises no new edge. Only EAGAIN or EOF ends an edge-triggered drain.
      if (!edge_triggered) {
        may_read_ = false;
        return moved;
      }
      if (!session_.wants_input()) return moved;  // closing, or full: resume later
      continue;
    }
    may_read_ = false;
    if (r.eof()) {
      peer_eof_ = true;  // half-close: flush what is owed, then close
      session_.on_peer_eof();
      return true;
    }
    if (!r.would_block()) error_ = r.error;  // reset or worse: this connection only
    return moved;
  }
}

bool ReactorConnection::write_phase() {
  bool moved = false;
  while (session_.has_output()) {
    const IoResult r = send_some(fd_.get(), session_.output());  // MSG_NOSIGNAL, EINTR retried
    if (r.bytes < 0) {
      if (!r.would_block()) error_ = r.error;
      return moved;  // EAGAIN: the kernel buffer is full; watch for writability
    }
    counters_.bytes_out += static_cast<std::uint64_t>(r.bytes);
    session_.on_sent(static_cast<std::size_t>(r.bytes));
    moved = true;
  }
  return moved;
}

std::uint32_t ReactorConnection::stop_reading() {
  if (!peer_eof_) {
    peer_eof_ = true;
    session_.on_peer_eof();  // everything received so far is released for sending
  }
  return session_.finished() || error_ != 0 ? 0 : interest();
}

std::uint32_t ReactorConnection::interest() const noexcept {
  std::uint32_t want = 0;
  if (session_.wants_input() && !peer_eof_) want |= kReadable;  // not while full: backpressure
  if (session_.has_output()) want |= kWritable;
  return want;  // 0 only if nothing can ever happen again: the caller closes
}

}  // namespace polyecho
