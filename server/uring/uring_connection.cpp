// The data path of a uring worker: recv completions feed the Session, at most one send per
// connection is in flight, and a connection is freed only after its last completion.
//
// Received bytes with a provided-buffer ring: each recv is single-shot and asks for no more
// than the Session can take right now; the kernel picks a pool buffer only when data arrives
// (an idle connection pins none), its bytes are copied into the Session and the buffer goes
// straight back to the pool in the same batch. So no connection ever holds pool memory while
// it waits for its peer, and a client that sends without reading is bounded by --max-buffer
// exactly as in the reactor. A multishot recv cannot be bounded like that: the kernel keeps
// filling buffers until the socket is empty, so a few backpressured connections could pin the
// whole pool and starve every other client of the ring.
// While a send is in flight its bytes must not move, so a recv completing meanwhile is copied
// into the Session's tail in place (Session::input_space_in_place) and reported only when the
// send completes; otherwise input_space() may slide or grow the buffer first.
// A raw stream skips the pool (reads_in_place()): once a recv has filled a small pool buffer,
// and in raw mode (the Session then never writes into its own buffer), the next recv reads
// straight into the Session, a whole 64 KiB block when no send is in flight, or in place
// behind the send when at least 16 KiB of tail is left. That saves the copy, and at hundreds of
// streaming connections it saves falling back to 4 KiB pool buffers once the few large ones
// are taken in a batch: uring streamed at about half of epoll's rate before (docs/PERFORMANCE.md).
// Nothing slides the received bytes to the front to make room for the next recv: that was a
// memmove of every byte, and 32 KiB recvs instead of 64 KiB ones (measured, 50 connections:
// 26-28M msg/s that way, 30-32M this way). Such a recv pins the buffer: a send completing under
// it consumes in place (no rewind, no release), and nothing slides or grows the buffer until the
// recv completes. A stream that stops with such a recv armed keeps its buffer until the peer
// sends again or leaves, as the reactor's loops would; a recv that brings less than a small
// pool buffer goes back to the pool.
// Without buffer rings (older kernel, POLYECHO_URING_SINGLESHOT=1) every recv reads straight
// into the Session, alternating with sends.
// With --splice (the default) a raw stream is relayed instead, as the readiness models do it
// (StreamRelay): once a recv straight into the Session has brought 16 KiB or more and the echo
// has left, the socket turns non-blocking and its bytes go socket -> pipe -> socket with
// splice(2), never reaching user space. io_uring has a splice operation, but the kernel runs it
// in its io-wq worker threads (it cannot poll a pipe), a thread hand-off per splice; so the
// ring only polls the socket (IORING_OP_POLL_ADD), and the worker splices itself when the poll
// completes. A splice in that brings under a small pool buffer's worth ends the relay: the
// socket turns blocking again and recvs take over.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <system_error>
#include <utility>

#include "lifecycle/messages.hpp"
#include "uring/uring_worker.hpp"

namespace polyecho::uring {

void UringWorker::on_recv(Connection& c, int result, std::uint32_t flags) {
  c.recv_armed = false;
  c.recv_direct = false;
  --c.inflight;
  ProvidedBufferRing* pool = std::exchange(c.recv_pool, nullptr);
  if (flags & IORING_CQE_F_BUFFER) {
    const auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    if (result > 0 && !c.closing) deliver(c, pool->data(id), static_cast<std::size_t>(result));
    pool->recycle(id);
  }
  if (c.closing) return free_if_done(c);
  if (result > 0) {
    touch(c);
    c.last_recv = static_cast<std::size_t>(result);
    if ((flags & IORING_CQE_F_BUFFER) == 0) {
      // Read in place: right after the staged bytes while a send is in flight (see on_send).
      if (c.send_armed) {
        c.staged += static_cast<std::size_t>(result);
      } else {
        c.session.on_received(static_cast<std::size_t>(result));
      }
    }
  } else if (result == 0) {
    c.peer_eof = true;
  } else if (result == -ENOBUFS && pool != nullptr && pool == &*bulk_pool_) {
    c.last_recv = 0;  // every bulk buffer is busy: progress() asks the small pool at once
  } else if (result == -ENOBUFS) {
    c.starved = true;  // every pool buffer is in a CQE of this batch; rearm_starved() retries
    starved_.push_back(&c);
  } else if (result != -ECANCELED) {
    return close_connection(c, -result);
  }
  progress(c);
}

// The recv was sized by what the Session could take when it was armed, and nothing but this
// recv adds bytes meanwhile, so the room is still there (checked anyway: a miscount must
// never write past it).
void UringWorker::deliver(Connection& c, const char* bytes, std::size_t n) {
  // input_space(n): the send that completed meanwhile may have given the buffer back, and the
  // recv was sized by the room the old one had.
  const auto room =
      c.send_armed ? c.session.input_space_in_place(c.staged) : c.session.input_space(n);
  if (room.size() < n) {
    spdlog::error("uring: {} received bytes do not fit the {} bytes of room", n, room.size());
    return close_connection(c, EOVERFLOW);
  }
  std::memcpy(room.data(), bytes, n);
  if (c.send_armed) {
    c.staged += n;
  } else {
    c.session.on_received(n);
  }
}

void UringWorker::on_send(Connection& c, int result) {
  c.send_armed = false;
  --c.inflight;
  if (c.closing) return free_if_done(c);
  if (result <= 0) return close_connection(c, result == 0 ? EPIPE : -result);
  touch(c);
  // Staged bytes first: on_sent() rewinds an emptied buffer, which would orphan them.
  if (c.staged > 0) c.session.on_received(std::exchange(c.staged, 0));
  // A short send leaves the rest in output(). A recv into the tail still in flight lands
  // right after what is buffered now, so the buffer must stay where it is.
  if (c.recv_armed && c.recv_direct) {
    c.session.on_sent_in_place(static_cast<std::size_t>(result));
  } else {
    c.session.on_sent(static_cast<std::size_t>(result));
  }
  progress(c);
}

void UringWorker::on_cancelled(Connection& c) {
  c.cancel_pending = false;
  --c.inflight;
  if (c.closing) return free_if_done(c);
  progress(c);
}

// Decides the connection's next operations from its state; the only place that arms them.
void UringWorker::progress(Connection& c) {
  if (c.relaying) return relay(c);
  if (config_.work.enabled()) start_work(c);  // may release messages into output()
  if (!c.send_armed) {
    if (c.staged > 0) c.session.on_received(std::exchange(c.staged, 0));
    // Only once no recv is in flight: its completion may still carry bytes to echo.
    if (c.peer_eof && !c.recv_armed && !c.session.closing()) c.session.on_peer_eof();
    if (c.session.has_output()) {
      // Make room for the next recv now, while the buffer may still slide or grow: once the
      // send is in flight, received bytes can only go into the tail as it stands. Bulk
      // senders get a whole pool buffer's worth; a chatty or idle connection stays small.
      // The room asked for is what is left of a pooled block after the bytes already there:
      // asking for a whole block more grew every echo's 16 KiB block to an unpooled 32 KiB
      // one (a malloc, a copy and a free per message, once buffers went back after each flush).
      // A raw stream asks for nothing: sliding its bytes to the front cost a memmove of
      // every byte received (see reads_in_place()).
      if (small_pool_ && !reads_in_place(c) && !(c.recv_armed && c.recv_direct)) {
        const std::size_t block = 2 * c.last_recv > Buffer::kInitialCapacity
                                      ? Buffer::kBulkCapacity
                                      : Buffer::kInitialCapacity;
        (void)c.session.input_space(block - std::min(block - 1, c.session.buffered()));
      }
      arm_send(c);
    }
  }
  if (c.session.finished() && !c.send_armed) return close_connection(c, 0);
  if (c.recv_armed || c.starved || c.peer_eof || !c.session.wants_input()) return;
  if (relays(c)) return set_relaying(c, true);
  if (small_pool_ || !c.send_armed) arm_recv(c);
}

// A raw stream whose latest recv (straight into the Session) brought 16 KiB or more, with the
// echo gone and nothing in flight: from here its bytes are spliced (see the top of this file).
// Not sooner: a chatty connection's small messages are cheaper through the ring's recvs and
// sends, batched in one io_uring_enter, than through a poll and two splices each.
bool UringWorker::relays(const Connection& c) const {
  return relay_streams_ && reads_in_place(c) && c.last_recv >= Buffer::kInitialCapacity &&
         !c.send_armed && !c.recv_armed && c.staged == 0 && c.session.buffered() == 0;
}

// The socket's mode follows the relay: a splice into a blocking socket would wait for room,
// and the worker with it; a ring recv or send is meant to wait for its socket in the kernel.
void UringWorker::set_relaying(Connection& c, bool on) {
  try {
    set_nonblocking(c.fd.get(), on);
  } catch (const std::system_error& e) {
    return close_connection(c, e.code().value());
  }
  c.relaying = on;
  if (on) c.session.park();  // its buffer is empty: the pool may have it meanwhile
  progress(c);
}

// A relayed stream's round, run whenever no poll of its is in flight: the pipe's bytes go out
// first (the socket full: wait until it is writable), then one splice in and out again, then
// wait until it is readable. One splice in per wakeup, as the level-triggered loops read once
// per round: a poll armed on a socket that still holds bytes completes at once, in the next
// io_uring_enter, behind every other connection's completions.
void UringWorker::relay(Connection& c) {
  if (c.poll_armed) return;  // its completion comes back here
  const std::size_t stream_floor = small_pool_->buffer_size();
  for (bool spliced_in = false;;) {
    if (c.relay.held() > 0) {
      const auto out = c.relay.out(c.fd.get(), c.session);
      if (out.sent > 0) touch(c);
      if (out.ended.would_block()) return arm_poll(c, POLLOUT);
      if (!out.ended.ok()) return close_connection(c, out.ended.error);
    }
    if (spliced_in && c.last_recv >= stream_floor) return arm_poll(c, POLLIN);
    // The pipe is empty: the end of the input, or of the stream, goes back to recvs.
    if (c.peer_eof || c.last_recv < stream_floor) return set_relaying(c, false);
    const auto in = c.relay.in(c.fd.get(), c.session);
    if (!in) {
      // No pipe to spare (the process's cap, or out of descriptors): copy, in place, until a
      // recv brings 16 KiB again and tries for a pipe once more.
      c.last_recv = stream_floor;
      return set_relaying(c, false);
    }
    if (in->would_block()) return arm_poll(c, POLLIN);
    if (in->eof()) {
      c.peer_eof = true;
      return set_relaying(c, false);
    }
    if (!in->ok()) return close_connection(c, in->error);
    touch(c);
    c.last_recv = static_cast<std::size_t>(in->bytes);
    spliced_in = true;
  }
}

void UringWorker::arm_poll(Connection& c, unsigned mask) {
  io_uring_sqe* sqe = ring_.sqe();
  io_uring_prep_poll_add(sqe, c.fd.get(), mask);
  io_uring_sqe_set_data64(sqe, tag(&c, kPoll));
  c.poll_armed = true;
  ++c.inflight;
}

// An error or hang-up completes the poll too: the next splice reports it.
void UringWorker::on_poll(Connection& c, int result) {
  c.poll_armed = false;
  --c.inflight;
  if (c.closing) return free_if_done(c);
  if (result < 0 && result != -ECANCELED) return close_connection(c, -result);
  progress(c);
}

void UringWorker::arm_recv(Connection& c) {
  io_uring_sqe* sqe = nullptr;
  if (small_pool_ && !reads_in_place(c)) {
    // The latest recv filled a small buffer: bulk traffic.
    const bool bulk = c.last_recv >= small_pool_->buffer_size();
    const std::size_t room = c.send_armed ? c.session.input_space_in_place(c.staged).size()
                                          : c.session.input_space_floor();
    if (room == 0) return;  // the send's completion makes room and calls progress() again
    // Line and frame streams take a large pool buffer when there is room.
    c.recv_pool = bulk && room > small_pool_->buffer_size() ? &*bulk_pool_ : &*small_pool_;
    sqe = ring_.sqe();
    const auto length = static_cast<unsigned>(std::min(room, c.recv_pool->buffer_size()));
    io_uring_prep_recv(sqe, c.fd.get(), nullptr, length, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = c.recv_pool->group();
  } else {
    // Straight into the Session: in place behind a send in flight, else wherever
    // input_space() puts it (nothing points into the buffer now).
    const auto space =
        c.send_armed ? c.session.input_space_in_place(c.staged) : c.session.input_space();
    // A sliver of tail room would cost a recv for little: the send's completion empties the
    // buffer, and the recv armed then takes a whole block.
    if (space.empty() || (c.send_armed && small_pool_ && space.size() < Buffer::kInitialCapacity))
      return;  // the send's completion makes room and calls progress() again
    sqe = ring_.sqe();
    io_uring_prep_recv(sqe, c.fd.get(), space.data(), space.size(), 0);
    c.recv_direct = true;
  }
  io_uring_sqe_set_data64(sqe, tag(&c, kRecv));
  c.recv_armed = true;
  ++c.inflight;
}

void UringWorker::arm_send(Connection& c) {
  const auto out = c.session.output();
  io_uring_sqe* sqe = ring_.sqe();
  // MSG_NOSIGNAL: a reset peer is EPIPE for this connection, not a process-wide SIGPIPE.
  io_uring_prep_send(sqe, c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, tag(&c, kSend));
  c.send_armed = true;
  ++c.inflight;
}

bool UringWorker::reads_in_place(const Connection& c) const {
  return small_pool_ && c.last_recv >= small_pool_->buffer_size() && c.session.tail_is_transports();
}

// The LRU order of open_ is what makes the idle tick cheap: splice is O(1), no allocation.
void UringWorker::touch(Connection& c) {
  c.last_active = now_;
  open_.splice(open_.end(), open_, c.self);
}

// The drain deadline: treat it like the peer's EOF. SHUT_RD ends a pending recv (it may wait
// on an idle peer); whatever its completion carries is still counted and echoed, and only
// then is the Session released with on_peer_eof().
void UringWorker::stop_reading(Connection& c) {
  if (c.peer_eof) return;
  c.peer_eof = true;
  ::shutdown(c.fd.get(), SHUT_RD);
  progress(c);
}

void UringWorker::close_connection(Connection& c, int error) {
  if (c.closing) return;
  c.closing = true;
  if (error != 0) context_.stats.count_error(ErrorKind::connection);
  closing_.splice(closing_.end(), open_, c.self);
  if (c.inflight > 0) {
    // shutdown ends a pending recv (EOF) and send (EPIPE) at once; the cancel covers a recv
    // the kernel has not yet noticed. The fd stays open until the last CQE, so its number
    // cannot be reused under an operation still in flight.
    ::shutdown(c.fd.get(), SHUT_RDWR);
    if ((c.recv_armed || c.poll_armed) && !c.cancel_pending) {
      cancel(tag(&c, c.recv_armed ? kRecv : kPoll));
      c.cancel_pending = true;
      ++c.inflight;
    }
    if (c.work_armed) {
      cancel(tag(&c, kWork));  // a wait may be long (up to a minute): do not sit it out
      ++c.inflight;
    }
  }
  free_if_done(c);
}

void UringWorker::free_if_done(Connection& c) {
  if (c.inflight > 0) return;
  if (c.starved) std::erase(starved_, &c);
  count_protocol_error(c.session, context_.stats, c.fd.get());
  closing_.erase(c.self);  // gives the ticket back, closes the socket
}

// Called after each batch, when every pool buffer is back (each one goes back in the batch that
// filled it): re-arms as many starved connections as the small pool has buffers, oldest first,
// and leaves the rest queued in order. Their recvs are submitted before the next wait, so they
// take buffers ahead of recvs the kernel completes during it.
// Re-arming every starved connection at once was unfair as well as wasteful: at 10,000
// ping-pong connections thousands re-armed per batch, a few hundred found a buffer, and the
// rest failed again with -ENOBUFS, in an order that let the same ones lose batch after batch
// (p99.9 of 7.5 s; a fifth of the loop's time went to submitting recvs that could not succeed).
void UringWorker::rearm_starved() {
  const std::size_t budget = small_pool_ ? small_pool_->count() : starved_.size();
  const std::size_t n = std::min(budget, starved_.size());
  for (std::size_t i = 0; i < n; ++i) {
    Connection* c = starved_[i];
    c->starved = false;  // before progress(): a close there must not edit starved_ under us
    progress(*c);
  }
  starved_.erase(starved_.begin(), starved_.begin() + static_cast<std::ptrdiff_t>(n));
}

}  // namespace polyecho::uring
