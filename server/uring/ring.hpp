#pragma once

#include <liburing.h>
#include <signal.h>

#include <cstdint>
#include <vector>

namespace polyecho::uring {

// One completion, copied out of the CQ so the CQ slot is free before any handler runs.
struct Completion {
  std::uint64_t user_data;
  std::int32_t res;
  std::uint32_t flags;
};

struct RingOptions {
  unsigned sq_entries = 1024;
  // Generous: every connection can have a recv, a send and a cancel outstanding, and the
  // multishot accept may post many CQEs per wait. The kernel (IORING_FEAT_NODROP) keeps overflow
  // aside, but then refuses submissions with -EBUSY until we reap; see sqe().
  unsigned cq_entries = 16384;
  bool sqpoll = false;
};

// What this kernel offers beyond plain single-shot operations.
struct RingFeatures {
  bool multishot_accept = false;  // 5.19
  bool buffer_ring = false;       // provided-buffer rings (probed as 6.0)
};

// Sole owner of one io_uring instance. Used by one thread only (its worker).
// Construction throws BackendUnavailable when io_uring cannot be set up at all (ENOSYS,
// EPERM from seccomp or kernel.io_uring_disabled), or when POLYECHO_URING_FORCE_UNAVAILABLE=1
// simulates that. POLYECHO_URING_SINGLESHOT=1 hides both features (an older kernel).
class Ring {
 public:
  explicit Ring(const RingOptions& options);
  ~Ring() { io_uring_queue_exit(&ring_); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  [[nodiscard]] io_uring* get() noexcept { return &ring_; }
  [[nodiscard]] const RingFeatures& features() const noexcept { return features_; }

  // Never null. When the SQ is full it submits; when the kernel answers -EBUSY (CQ overflow)
  // it first moves ready completions into ready() so the overflow can be flushed.
  [[nodiscard]] io_uring_sqe* sqe();
  // Submits what is queued, waits for at least one completion, appends all ready ones. The
  // thread's signal mask is `wait_mask` while it waits (and only then); a signal that ends the
  // wait has had its handler run when this returns.
  void submit_and_wait(sigset_t wait_mask);
  // Completions to handle, in order. Handlers may append (through sqe()) while the caller
  // walks it by index; the caller clears it after the walk.
  [[nodiscard]] std::vector<Completion>& ready() noexcept { return ready_; }

 private:
  void collect();

  io_uring ring_{};
  RingFeatures features_;
  std::vector<Completion> ready_;
};

}  // namespace polyecho::uring
