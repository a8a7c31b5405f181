// The data path of a uring worker: recv completions feed the Session, at most one send per
// connection is in flight, and a connection is freed only after its last completion.
//
// Received bytes with a provided-buffer ring: the kernel picks a buffer per CQE; its bytes are
// copied into Session::input_space() and the buffer goes straight back to the ring. The copy
// happens only while no send is in flight, because input_space() may slide or grow the
// Session's buffer, and an in-flight send still points into it. Meanwhile, arriving buffers
// are held in order (Connection::held) and the multishot recv is cancelled once a connection
// holds kHoldLimit bytes, so one slow reader cannot drain the shared pool.
// Without multishot recv (older kernel, POLYECHO_URING_SINGLESHOT=1) a single-shot recv reads
// straight into input_space(), alternating with sends for the same reason.
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "uring/uring_worker.hpp"

namespace polyecho::uring {

namespace {
constexpr std::size_t kHoldLimit = 64 * 1024;
}  // namespace

void UringWorker::on_recv(Connection& c, int result, std::uint32_t flags) {
  if ((flags & IORING_CQE_F_MORE) == 0) {
    c.recv_armed = false;
    --c.inflight;
  }
  if (flags & IORING_CQE_F_BUFFER) {
    const auto id = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    if (result > 0 && !c.closing) {
      c.held.push_back({id, 0, static_cast<std::uint32_t>(result)});
      c.held_bytes += static_cast<std::size_t>(result);
    } else {
      buffers_->recycle(id);
      recycled_ = true;
    }
  }
  if (c.closing) return free_if_done(c);
  if (result > 0) {
    touch(c);
    c.counters.bytes_in += static_cast<std::uint64_t>(result);
    if ((flags & IORING_CQE_F_BUFFER) == 0) c.session.on_received(static_cast<std::size_t>(result));
  } else if (result == 0) {
    c.peer_eof = true;
  } else if (result == -ENOBUFS) {
    c.starved = true;  // the pool is empty; rearm_starved() resumes it
    starved_.push_back(&c);
  } else if (result != -ECANCELED) {
    return close_connection(c, -result);
  }
  progress(c);
}

void UringWorker::on_send(Connection& c, int result) {
  c.send_armed = false;
  --c.inflight;
  if (c.closing) return free_if_done(c);
  if (result <= 0) return close_connection(c, result == 0 ? EPIPE : -result);
  touch(c);
  c.counters.bytes_out += static_cast<std::uint64_t>(result);
  c.session.on_sent(static_cast<std::size_t>(result));  // a short send leaves the rest in output()
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
  if (!c.send_armed) {
    absorb_held(c);
    // Only once no recv is in flight: its completion may still carry bytes (a multishot recv
    // until its final CQE, a single-shot one into input_space()), and they are echoed too.
    if (c.peer_eof && c.held.empty() && !c.recv_armed && !c.session.closing())
      c.session.on_peer_eof();
    if (c.session.has_output()) arm_send(c);
  }
  if (c.session.finished() && !c.send_armed) return close_connection(c, 0);

  const bool want_input = c.session.wants_input() && !c.peer_eof && c.held_bytes < kHoldLimit;
  if (buffers_) {
    if (want_input && !c.recv_armed && !c.starved && !c.cancel_pending) arm_recv(c);
    if (!want_input && c.recv_armed && !c.cancel_pending) {
      cancel(tag(&c, kRecv));  // backpressure: stop the multishot recv until the echo drains
      c.cancel_pending = true;
      ++c.inflight;
    }
  } else if (want_input && !c.recv_armed && !c.send_armed) {
    arm_recv(c);
  }
}

void UringWorker::absorb_held(Connection& c) {
  while (!c.held.empty()) {
    const auto space = c.session.input_space();
    if (space.empty()) return;
    Connection::Held& h = c.held.front();
    const std::size_t n = std::min<std::size_t>(space.size(), h.length - h.offset);
    std::memcpy(space.data(), buffers_->data(h.id) + h.offset, n);
    c.session.on_received(n);
    h.offset += static_cast<std::uint32_t>(n);
    c.held_bytes -= n;
    if (h.offset < h.length) continue;
    buffers_->recycle(h.id);
    recycled_ = true;
    c.held.erase(c.held.begin());  // usually the only element
  }
}

void UringWorker::arm_recv(Connection& c) {
  io_uring_sqe* sqe = ring_.sqe();
  if (buffers_) {
    io_uring_prep_recv_multishot(sqe, c.fd.get(), nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffers_->group();
  } else {
    const auto space = c.session.input_space();
    io_uring_prep_recv(sqe, c.fd.get(), space.data(), space.size(), 0);
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

// The LRU order of open_ is what makes the idle tick cheap: splice is O(1), no allocation.
void UringWorker::touch(Connection& c) {
  c.last_active = now_;
  open_.splice(open_.end(), open_, c.self);
}

// The drain deadline: treat it like the peer's EOF. SHUT_RD ends a pending recv (a single-shot
// one may wait on an idle peer) and progress() cancels a multishot one; whatever their last
// completions carry is still counted, echoed, and only then released with on_peer_eof().
void UringWorker::stop_reading(Connection& c) {
  if (c.peer_eof) return;
  c.peer_eof = true;
  ::shutdown(c.fd.get(), SHUT_RD);
  progress(c);
}

void UringWorker::close_connection(Connection& c, int error) {
  if (c.closing) return;
  c.closing = true;
  if (error != 0) context_.stats.errors.fetch_add(1, std::memory_order_relaxed);
  closing_.splice(closing_.end(), open_, c.self);
  if (c.inflight > 0) {
    // shutdown ends a pending recv (EOF) and send (EPIPE) at once; the cancel covers a
    // multishot recv the kernel has not yet noticed. The fd stays open until the last CQE, so
    // its number cannot be reused under an operation still in flight.
    ::shutdown(c.fd.get(), SHUT_RDWR);
    if (c.recv_armed && !c.cancel_pending) {
      cancel(tag(&c, kRecv));
      c.cancel_pending = true;
      ++c.inflight;
    }
  }
  free_if_done(c);
}

void UringWorker::free_if_done(Connection& c) {
  if (c.inflight > 0) return;
  for (const auto& h : c.held) buffers_->recycle(h.id);
  if (!c.held.empty()) recycled_ = true;
  if (c.starved) std::erase(starved_, &c);
  c.counters.flush_to(context_.stats);
  closing_.erase(c.self);  // closes the socket, ends ActiveGuard
}

void UringWorker::rearm_starved() {
  recycled_ = false;
  auto waiting = std::move(starved_);
  starved_.clear();
  for (Connection* c : waiting) {
    c->starved = false;
    progress(*c);
  }
}

}  // namespace polyecho::uring
