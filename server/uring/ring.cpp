#include "uring/ring.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string_view>

#include "lifecycle/backend.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho::uring {

namespace {

bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

[[noreturn]] void throw_unavailable(int error) {
  std::string why = fmt::format("io_uring_setup: {}", std::strerror(error));
  std::ifstream sysctl("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  if (sysctl >> disabled && disabled != 0)
    why += fmt::format("; kernel.io_uring_disabled={}", disabled);
  throw BackendUnavailable(fmt::format(
      "uring: io_uring is unavailable on this system ({}); use another model, e.g. --backend epoll "
      "or --backend thread",
      why));
}

// No opcode announces multishot accept or buffer rings; opcodes from the same kernel release
// do. Buffer rings date from 5.19; they are only used from 6.0 on, where recv with them is
// mature.
void probe(io_uring& ring, RingFeatures& features) {
  std::unique_ptr<io_uring_probe, void (*)(io_uring_probe*)> p(io_uring_get_probe_ring(&ring),
                                                               io_uring_free_probe);
  if (!p || env_flag("POLYECHO_URING_SINGLESHOT")) return;
  features.multishot_accept = io_uring_opcode_supported(p.get(), IORING_OP_SOCKET) != 0;  // 5.19
  features.buffer_ring = io_uring_opcode_supported(p.get(), IORING_OP_SEND_ZC) != 0;      // 6.0
}

}  // namespace

Ring::Ring(const RingOptions& options) {
  if (env_flag("POLYECHO_URING_FORCE_UNAVAILABLE")) throw_unavailable(ENOSYS);
  io_uring_params params{};
  params.cq_entries = options.cq_entries;
  params.flags =
      IORING_SETUP_CQSIZE | (options.sqpoll ? IORING_SETUP_SQPOLL : IORING_SETUP_COOP_TASKRUN);
  int rc = io_uring_queue_init_params(options.sq_entries, &ring_, &params);
  if (rc == -EINVAL && !options.sqpoll) {  // COOP_TASKRUN is 5.19; retry without it
    params = io_uring_params{};
    params.cq_entries = options.cq_entries;
    params.flags = IORING_SETUP_CQSIZE;
    rc = io_uring_queue_init_params(options.sq_entries, &ring_, &params);
  }
  if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES) throw_unavailable(-rc);
  if (rc < 0) throw_errno("io_uring_setup", -rc);
  probe(ring_, features_);
  ready_.reserve(options.cq_entries);
}

io_uring_sqe* Ring::sqe() {
  for (;;) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
    const int rc = io_uring_submit(&ring_);
    if (rc == -EBUSY) {
      collect();
    } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      throw_errno("io_uring_submit", -rc);
    }
  }
}

void Ring::submit_and_wait(sigset_t wait_mask) {
  // With a timeout liburing enters the kernel once per call; without one, after a call that
  // submitted but saw no completion it enters again, even when a signal ended that wait. An
  // hour never matters. Before 5.11 (no IORING_FEAT_EXT_ARG) a timeout would cost an SQE: none.
  __kernel_timespec an_hour{.tv_sec = 3600, .tv_nsec = 0};
  __kernel_timespec* once = (ring_.features & IORING_FEAT_EXT_ARG) != 0 ? &an_hour : nullptr;
  io_uring_cqe* first = nullptr;  // left in the CQ: collect() takes it with the others
  const int rc = io_uring_submit_and_wait_timeout(&ring_, &first, 1, once, &wait_mask);
  // No completion: the wait ended early, perhaps by a signal (EINTR, or the count of SQEs
  // submitted in the same call: liburing then drops the EINTR). liburing enters the kernel by a
  // raw syscall ThreadSanitizer does not intercept, so there the handler is still pending: let
  // it run now (the stop fd's poll completes on the next wait). ETIME: the hour passed. EBUSY:
  // overflowed completions are waiting; reaping them below is what the kernel asks for.
  if (first == nullptr) stop_signal::run_deferred_handlers();
  if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY && rc != -EAGAIN)
    throw_errno("io_uring_enter", -rc);
  collect();
}

void Ring::collect() {
  io_uring_cqe* batch[256];
  // io_uring_peek_batch_cqe also flushes the kernel's overflow list once the CQ has room.
  while (const unsigned n = io_uring_peek_batch_cqe(&ring_, batch, 256)) {
    for (unsigned i = 0; i < n; ++i)
      ready_.push_back({batch[i]->user_data, batch[i]->res, batch[i]->flags});
    io_uring_cq_advance(&ring_, n);
  }
}

}  // namespace polyecho::uring
