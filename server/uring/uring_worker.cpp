// The loop of one uring worker: accept (multishot when the kernel has it), a periodic tick for
// idle timeouts, accept backoff and the drain deadline, and a poll on the stop fd.
#include "uring/uring_worker.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "lifecycle/connection_options.hpp"
#include "lifecycle/threads.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho::uring {

namespace {
// Two pools per ring, in size classes, 3 MiB of address space in all (resident once used):
// many small buffers so thousands of chatty connections each find one in a batch, and a few
// large ones so a line or frame stream moves 64 KiB per recv (a raw stream reads straight into
// its Session: see uring_connection.cpp). Every buffer goes back within the batch that filled
// it. Measured against one pool of 256 x 16 KiB: see docs/URING.md. Not more large ones: the
// ring hands them out in turn, so all of them become resident under a stream (128 made a worker
// 8 MiB larger and broke the flow-control memory bound).
constexpr unsigned kSmallBuffers = 256;
constexpr std::size_t kSmallBufferSize = std::size_t{4} * 1024;
constexpr unsigned kBulkBuffers = 32;
constexpr std::size_t kBulkBufferSize = std::size_t{64} * 1024;
// Out of descriptors: stop accepting this long, then try again (never spin on -EMFILE).
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);
// How often a busy loop looks for a stop signal its waits did not let in (see run()).
constexpr auto kSignalCheck = std::chrono::milliseconds(20);
}  // namespace

UringWorker::UringWorker(ServerContext& context, std::unique_ptr<ConnectionSource> source)
    : context_(context),
      config_(context.config),
      source_(std::move(source)),
      loop_stats_(source_->loop_stats()),
      kernel_accepts_(source_->listener() >= 0),
      relay_streams_(context.config.splice && !context.config.work.enabled()),
      ring_(RingOptions{.sqpoll = context.config.sqpoll}),
      drain_(context.config.drain_timeout) {
  const auto wait = context.config.work.duration;
  work_wait_.tv_sec = wait.count() / 1'000'000;
  work_wait_.tv_nsec = (wait.count() % 1'000'000) * 1'000;
  if (ring_.features().buffer_ring) {
    try {
      small_pool_.emplace(*ring_.get(), 0, kSmallBuffers, kSmallBufferSize);
      bulk_pool_.emplace(*ring_.get(), 1, kBulkBuffers, kBulkBufferSize);
    } catch (const std::system_error& e) {
      small_pool_.reset();
      spdlog::info("uring: no provided-buffer ring ({}); receiving into connection buffers",
                   e.what());
    }
  }
}

UringWorker::~UringWorker() = default;

void UringWorker::run() {
  loop_thread_.bind_here();
  // Stop signals reach this thread only inside io_uring_enter, which unblocks them for the wait
  // and ends it with EINTR (as pselect does). Under ThreadSanitizer a signal landing anywhere
  // else would only be noted, its handler left for the next intercepted call, and the raw
  // io_uring_enter after it could sleep through the stop. Loops on started threads block them
  // anyway; the old mask is back before run_loop_threads joins.
  const StopSignalsBlocked between_waits;
  now_ = Clock::now();
  io_uring_sqe* stop = ring_.sqe();
  io_uring_prep_poll_add(stop, stop_signal::stop_fd(), POLLIN);
  io_uring_sqe_set_data64(stop, kStop);
  ++loop_ops_;
  arm_accept();
  if (config_.idle_timeout.count() > 0) arm_timer();
  auto signals_checked = now_;
  while (!finished()) {
    ring_.submit_and_wait(between_waits.previous());
    now_ = Clock::now();
    if (loop_stats_ != nullptr) loop_stats_->record_wait(ring_.ready().size());
    // Under load the wait may never sleep, and then never lets a stop signal in.
    if (now_ - signals_checked >= kSignalCheck) {
      signals_checked = now_;
      between_waits.let_pending_in();
    }
    auto& ready = ring_.ready();
    for (std::size_t i = 0; i < ready.size(); ++i) handle(Completion(ready[i]));  // copy: may grow
    ready.clear();
    if (!starved_.empty()) rearm_starved();
    if (drain_.stopping() && open_.empty() && closing_.empty() && timer_armed_ &&
        !timer_cancelled_) {
      cancel(kTimer);  // nothing left to time: do not wait for the next tick to exit
      timer_cancelled_ = true;
    }
  }
}

bool UringWorker::finished() const {
  return drain_.stopping() && open_.empty() && closing_.empty() && loop_ops_ == 0;
}

void UringWorker::handle(const Completion& completion) {
  const std::uint64_t op = completion.user_data & kOpMask;
  // user_data is tag()'s Connection address with the operation in its low bits; only a cast
  // gets the address back. NOLINTNEXTLINE(performance-no-int-to-ptr)
  auto* c = reinterpret_cast<Connection*>(completion.user_data & ~kOpMask);
  if (c != nullptr) {
    if (op == kRecv)
      on_recv(*c, completion.res, completion.flags);
    else if (op == kSend)
      on_send(*c, completion.res);
    else if (op == kWork)
      on_work_done(*c);
    else if (op == kPoll)
      on_poll(*c, completion.res);
    else
      on_cancelled(*c);
    return;
  }
  if (op == kAccept) return on_accept(completion.res, completion.flags);
  --loop_ops_;
  if (op == kTimer) {
    timer_armed_ = false;
    on_tick();
  } else if (op == kStop) {
    begin_stop();
  }
}

void UringWorker::arm_accept() {
  io_uring_sqe* sqe = ring_.sqe();
  if (!kernel_accepts_) {
    io_uring_prep_poll_add(sqe, source_->fd(), POLLIN);  // one-shot: re-armed once taken dry
  } else if (ring_.features().multishot_accept) {
    io_uring_prep_multishot_accept(sqe, source_->listener(), nullptr, nullptr, SOCK_CLOEXEC);
  } else {
    io_uring_prep_accept(sqe, source_->listener(), nullptr, nullptr, SOCK_CLOEXEC);
  }
  io_uring_sqe_set_data64(sqe, kAccept);
  accept_armed_ = true;
  ++loop_ops_;
}

void UringWorker::on_accept(int result, std::uint32_t flags) {
  const bool ended = !kernel_accepts_ || (flags & IORING_CQE_F_MORE) == 0;
  if (ended) {
    accept_armed_ = false;
    --loop_ops_;
  }
  if (!kernel_accepts_ && result >= 0 && !drain_.stopping()) {
    take_from_source(/*rearm=*/true);  // re-arms the poll, or pauses
    return;
  }
  if (result >= 0 && !kernel_accepts_) {
    // A poll on the source while stopping: begin_stop() took what it held.
  } else if (result >= 0) {
    if (accept_backoffs_ > 0) {
      spdlog::warn("accept: descriptors available again after {} backoff(s)", accept_backoffs_);
      accept_backoffs_ = 0;
    }
    unique_fd accepted(result);
    if (!drain_.stopping()) start(source_->admit(std::move(accepted)));
    // else: closing it here refuses the client
  } else if (!drain_.stopping() && result != -ECANCELED && result != -ECONNABORTED &&
             result != -EINTR && result != -EINVAL) {
    // Out of descriptors or memory, or trouble we do not know: re-arming now would fail again
    // at once. Pause, and let the tick resume accepting. (Stopping, nothing is re-armed: the
    // branch below lets the listener go as soon as no accept is left in the kernel.)
    if (result != -EMFILE && result != -ENFILE && result != -ENOBUFS && result != -ENOMEM) {
      spdlog::error("accept: {}", std::strerror(-result));
    }
    if (accept_backoffs_++ == 0) {
      spdlog::warn("accept: {}; pausing accept for {} ms at a time until descriptors free up",
                   std::strerror(-result), kAcceptBackoff.count());
    }
    accept_paused_until_ = now_ + kAcceptBackoff;
    if (!ended) cancel(kAccept);
    if (!timer_armed_) arm_timer();
    return;
  } else if (result == -EINVAL) {
    // The listener no longer listens: a master shut the shared socket down to stop. Nothing
    // more will come, and re-arming would fail again at once, so accept no more.
    accept_ended_ = true;
  }
  if (drain_.stopping()) {
    if (ended) source_.reset();  // no accept left in the kernel: the port can close
    return;
  }
  if (ended && !accept_paused_until_ && !accept_ended_) arm_accept();
}

// A source this worker takes from itself (an inbox, a channel) said it is readable.
// With `rearm`, the poll is armed again once the source is dry.
void UringWorker::take_from_source(bool rearm) {
  for (;;) {
    auto taken = source_->take();
    switch (taken.status) {
      case ConnectionSource::Status::admitted:
        // From an event loop's source, so non-blocking; io_uring would then answer EAGAIN
        // instead of waiting for the socket. Its operations wait in the kernel instead.
        set_nonblocking(taken.connection.fd.get(), false);
        start(std::move(taken));
        continue;
      case ConnectionSource::Status::skipped:
        continue;
      case ConnectionSource::Status::would_block:
        if (rearm) arm_accept();
        return;
      case ConnectionSource::Status::exhausted:
        accept_paused_until_ = now_ + ConnectionSource::kBackoff;
        if (!timer_armed_) arm_timer();
        return;
      case ConnectionSource::Status::ended:
        return;
    }
  }
}

void UringWorker::start(ConnectionSource::Taken taken) {
  loop_thread_.check("UringWorker::start");
  if (taken.status != ConnectionSource::Status::admitted) return;
  AdmittedConnection& admitted = taken.connection;
  if (!prepare_or_refuse(admitted, config_)) return;
  Connection& c = open_.emplace_back(std::move(admitted), config_.protocol);
  c.self = std::prev(open_.end());
  c.last_active = now_;
  progress(c);
}

// One tick for everything time-based, so no connection carries its own timer: idle
// connections are found from the front of open_ (least recently active first) and the walk
// stops at the first one still in time.
void UringWorker::arm_timer() {
  auto interval = std::chrono::milliseconds(50);
  if (config_.idle_timeout.count() > 0) {
    interval = std::clamp(config_.idle_timeout / 4, std::chrono::milliseconds(10),
                          std::chrono::milliseconds(250));
  }
  tick_.tv_sec = interval.count() / 1000;
  tick_.tv_nsec = (interval.count() % 1000) * 1'000'000;
  io_uring_sqe* sqe = ring_.sqe();
  io_uring_prep_timeout(sqe, &tick_, 0, 0);
  io_uring_sqe_set_data64(sqe, kTimer);
  timer_armed_ = true;
  ++loop_ops_;
}

void UringWorker::on_tick() {
  if (accept_paused_until_ && now_ >= *accept_paused_until_) {
    accept_paused_until_.reset();
    if (!drain_.stopping() && !accept_armed_) arm_accept();
  }
  if (config_.idle_timeout.count() > 0) {
    while (!open_.empty() && now_ - open_.front().last_active >= config_.idle_timeout) {
      // A connection whose work is in flight is not idle: we owe it an answer.
      if (open_.front().work_armed) {
        touch(open_.front());
      } else {
        close_connection(open_.front(), 0);
      }
    }
  }
  const auto phase = drain_.advance(now_);
  if (phase == DrainTimeline::Phase::flushing) {
    // Stop reading everywhere, but echo everything already received, for the flush grace.
    for (auto it = open_.begin(); it != open_.end();) stop_reading(*it++);  // may close it
  } else if (phase == DrainTimeline::Phase::closing) {
    while (!open_.empty()) close_connection(open_.front(), 0);  // whoever still owes bytes
  }
  const bool needed = config_.idle_timeout.count() > 0 || accept_paused_until_ || drain_.stopping();
  if (needed && !(drain_.stopping() && open_.empty() && closing_.empty())) arm_timer();
}

void UringWorker::begin_stop() {
  // Connections already accepted and waiting in an inbox or channel are ours: serve them too.
  if (source_ && source_->holds_accepted()) take_from_source(/*rearm=*/false);
  drain_.stop(now_);
  accept_paused_until_.reset();
  if (accept_armed_) {
    cancel(kAccept);  // the source closes when the accept's last CQE arrives
  } else {
    source_.reset();
  }
  if (!timer_armed_) arm_timer();
}

void UringWorker::cancel(std::uint64_t user_data) {
  io_uring_sqe* sqe = ring_.sqe();
  io_uring_prep_cancel64(sqe, user_data, 0);
  const std::uint64_t owner = user_data & ~kOpMask;
  io_uring_sqe_set_data64(sqe, owner == 0 ? kLoopCancel : owner | kCancel);
  if (owner == 0) ++loop_ops_;
}

}  // namespace polyecho::uring
