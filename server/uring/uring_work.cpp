// Per-message work (--work) in a uring worker. The Session holds each complete message as
// pending until its work is done, and releases them one by one, so echoes keep their order.
//
// cpu and block run inline, on the ring's thread, inside the completion handler that found the
// message: every other connection of this ring waits meanwhile (the lesson of the model).
// A wait is the ring's own: one IORING_OP_TIMEOUT per connection, for its first pending
// message only. Reading goes on meanwhile (recv stays armed), into the bounded Session, so
// later messages queue up behind it as pending and nothing grows past --max-buffer. The
// timeout counts in `inflight`, so the Connection outlives it; closing cancels it.
#include "lifecycle/messages.hpp"
#include "uring/uring_worker.hpp"

namespace polyecho::uring {

void UringWorker::start_work(Connection& c) {
  if (c.work_armed || c.session.pending_count() == 0) return;
  if (config_.work.kind != WorkKind::wait) {
    work_pending_inline(c.session, config_.work);
    // The loop stood still meanwhile. Time spent working for this peer is not its idle time.
    now_ = Clock::now();
    return touch(c);
  }
  io_uring_sqe* sqe = ring_.sqe();
  // Relative, and no completion count: it ends with -ETIME when the time is up, or
  // -ECANCELED when close_connection() cancels it.
  io_uring_prep_timeout(sqe, &work_wait_, 0, 0);
  io_uring_sqe_set_data64(sqe, tag(&c, kWork));
  c.work_armed = true;
  ++c.inflight;
}

// The first pending message's wait is over: its echo joins output(), and progress() sends it
// and arms the next message's wait if one is pending. The drain's input cut does not get here
// early: it only stops reading, so a wait in flight still ends on time and is echoed.
void UringWorker::on_work_done(Connection& c) {
  c.work_armed = false;
  --c.inflight;
  if (c.closing) return free_if_done(c);
  touch(c);
  c.session.release_message();
  progress(c);
}

}  // namespace polyecho::uring
