#include "reactor/reactor_connection.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "lifecycle/messages.hpp"
#include "poller/multiplexer.hpp"
#include "polyecho/socket_ops.hpp"

namespace polyecho {

static_assert(ReactorConnection::kInitialInterest == kReadable);

ReactorConnection::ReactorConnection(unique_fd fd, const ServerConfig& config, Stats& stats,
                                     TimerQueue& timers, OffloadLink* offload)
    : fd_(std::move(fd)),
      stats_(stats),
      work_(config.work),
      timers_(timers),
      offload_(offload),
      serial_(offload != nullptr ? offload->next_serial() : 0),
      session_(config.protocol),
      splice_(config.splice && !config.work.enabled() && session_.tail_is_transports()) {}

ReactorConnection::~ReactorConnection() {
  if (wait_timer_) timers_.cancel(wait_timer_);  // its fd may be reused by the next connection
  // A job still in the pool needs nothing from us: it holds its own copy of what it reads, and
  // its completion, carrying our serial, will find nobody and be dropped.
  count_protocol_error(session_, stats_, fd_.get());
  if (error_ != 0) {
    stats_.count_error(ErrorKind::connection);
    spdlog::debug("connection fd {} ended: {}", fd_.get(), std::strerror(error_));
  }
}

ReactorConnection::Outcome ReactorConnection::on_ready(std::uint32_t events, bool edge_triggered) {
  // An error or hang-up is "readable": the next recv reports it (or the last bytes and EOF).
  if (events & (kReadable | kError)) may_read_ = true;
  bool progressed = false;
  for (;;) {
    bool moved = false;
    if (may_read_ && session_.wants_input() && relay_.held() == 0 && !peer_eof_ &&
        !awaiting_room_) {
      const bool relay = splice_ && session_.streaming() && session_.buffered() == 0;
      moved |= relay ? relay_in(edge_triggered) : read_phase(edge_triggered);
      if (work_.enabled()) start_work();  // all that --work adds to the path without it
    }
    if (error_ == 0 && relay_.held() > 0) moved |= relay_out();
    if (error_ == 0 && session_.has_output()) moved |= write_phase();
    if (error_ != 0) return {0, progressed || moved, true};
    progressed |= moved;
    // Level-triggered: the notifier repeats itself, one round per wakeup is fairer. Edge-
    // triggered: a write may have made room for bytes the kernel still holds and will not
    // announce again, so go round until reading is blocked or there is nothing left to read.
    if (!edge_triggered || !moved || !may_read_ || !session_.wants_input()) break;
  }
  if (finished()) return {0, progressed, true};
  return {interest(), progressed, false, progressed && session_.streaming()};
}

ReactorConnection::Outcome ReactorConnection::on_wait_done(bool edge_triggered) {
  wait_timer_ = {};
  session_.release_message();  // its echo joins the output, behind everything before it
  start_work();                // the next message's wait starts now: one at a time, in order
  Outcome outcome = on_ready(0, edge_triggered);
  outcome.progressed = true;  // a reply is on its way: the connection is not idle
  return outcome;
}

ReactorConnection::Outcome ReactorConnection::on_offload_done(bool edge_triggered) {
  in_flight_ = false;
  session_.release_message();  // its echo joins the output, behind everything before it
  start_work();                // the next message goes to the pool: one at a time, in order
  Outcome outcome = on_ready(0, edge_triggered);
  outcome.progressed = true;  // a reply is on its way: the connection is not idle
  return outcome;
}

ReactorConnection::Outcome ReactorConnection::on_room(bool edge_triggered) {
  awaiting_room_ = false;
  start_work();  // refused again: awaiting_room_ is set again and reading stays off
  return on_ready(0, edge_triggered);
}

// After bytes arrived (or the input ended): the work of the messages now pending.
void ReactorConnection::start_work() {
  if (error_ != 0) return;  // closing on an error: nobody is left to answer
  if (work_.kind != WorkKind::wait) {
    if (offload_ != nullptr) {
      offload_next();
      return;
    }
    // cpu and block, on the loop thread: every connection of this loop waits meanwhile.
    work_pending_inline(session_, work_);
    return;
  }
  if (wait_timer_ || session_.pending_count() == 0) return;
  wait_timer_ =
      timers_.arm(TimerQueue::Clock::now() + work_.duration, static_cast<std::uint64_t>(fd_.get()));
}

// Hands the first pending message's work to the pool, unless a job of ours is already there
// (order) or the full queue refused us and the loop has not handed us room yet (no retry
// before then: a refused connection costs nothing until a pool thread frees a slot).
void ReactorConnection::offload_next() {
  if (in_flight_ || awaiting_room_) return;
  const auto message = session_.pending_message();
  if (!message) return;
  if (offload_->submit({fd_.get(), serial_}, *message)) {
    in_flight_ = true;
  } else {
    awaiting_room_ = true;  // interest() drops kReadable: the peer's bytes wait in the kernel
  }
}

// One read. Edge-triggered, on_ready() comes back for more after writing what this one made,
// until EAGAIN: reading everything first would grow the buffer to --max-buffer under a stream
// and hold the echo back until the socket was empty.
bool ReactorConnection::read_phase(bool edge_triggered) {
  const auto space = session_.input_space();
  if (space.empty()) return false;  // backpressure: the buffer is full until the peer drains
  const IoResult r = read_some(fd_.get(), space);  // EINTR retried inside
  if (r.ok()) {
    session_.on_received(static_cast<std::size_t>(r.bytes));
    // A short read does NOT prove the socket is empty: an EOF that arrived with these bytes
    // raises no new edge. Only EAGAIN or EOF ends an edge-triggered drain.
    if (!edge_triggered) may_read_ = false;
    return true;
  }
  return read_ended(r);
}

// A read or a splice in that brought no byte. Returns whether it moved the connection on.
bool ReactorConnection::read_ended(const IoResult& r) {
  may_read_ = false;
  if (r.would_block()) {
    session_.park();  // nothing owed and nothing to read: no buffer while the peer is quiet
    return false;
  }
  if (r.eof()) {
    peer_eof_ = true;  // half-close: flush what is owed, then close
    session_.on_peer_eof();
    return true;
  }
  error_ = r.error;  // reset or worse: this connection only
  return false;
}

// read_phase() for a relayed stream: one splice from the socket into the pipe.
bool ReactorConnection::relay_in(bool edge_triggered) {
  const auto r = relay_.in(fd_.get(), session_);
  if (!r) return read_phase(edge_triggered);  // no pipe to spare: copy this read
  if (r->ok()) {
    if (!edge_triggered) may_read_ = false;  // as read_phase(): one read per round
    return true;
  }
  return read_ended(*r);
}

// write_phase() for the relayed bytes. EAGAIN: the socket is full (the pipe holds bytes), so
// the connection keeps its pipe and watches for writability.
bool ReactorConnection::relay_out() {
  const auto out = relay_.out(fd_.get(), session_);
  if (!out.ended.ok() && !out.ended.would_block()) error_ = out.ended.error;
  return out.sent > 0;
}

bool ReactorConnection::write_phase() {
  bool moved = false;
  while (session_.has_output()) {
    const IoResult r = send_some(fd_.get(), session_.output());  // MSG_NOSIGNAL, EINTR retried
    if (r.bytes < 0) {
      if (!r.would_block()) error_ = r.error;
      return moved;  // EAGAIN: the kernel buffer is full; watch for writability
    }
    session_.on_sent(static_cast<std::size_t>(r.bytes));
    moved = true;
  }
  return moved;
}

ReactorConnection::Outcome ReactorConnection::stop_reading() {
  if (!peer_eof_) {
    peer_eof_ = true;
    session_.on_peer_eof();             // everything received so far is released for sending ...
    if (work_.enabled()) start_work();  // ... once its work is done (an unterminated line too)
  }
  const bool done = error_ != 0 || finished();
  return {done ? 0 : interest(), false, done};
}

std::uint32_t ReactorConnection::interest() const noexcept {
  std::uint32_t want = 0;
  // Not while full, nor while the offload queue is: backpressure.
  if (session_.wants_input() && relay_.held() == 0 && !peer_eof_ && !awaiting_room_)
    want |= kReadable;
  if (session_.has_output() || relay_.held() > 0) want |= kWritable;
  // 0 with pending work: only the wait timer, or the offload pool, can move this connection on.
  // Otherwise 0 does not happen without being done (finished() or an error).
  return want;
}

}  // namespace polyecho
