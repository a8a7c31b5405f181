// The kernel-less "poller" behind nbpoll: it never asks the kernel which fd is ready. Every
// watched fd is reported ready for whatever it asked for, and the non-blocking recv/send/accept
// answer EAGAIN when that was a guess. That makes each pass cost one syscall per watched fd.
//
// The CPU/latency trade-off: a pass that moved nothing (the loop says so through
// after_dispatch()) means the clients are quiet, so the next pass is delayed by a back-off that
// doubles from kMinBackoff to kMaxBackoff; any progress resets it. Idle, the loop wakes every
// kMaxBackoff (a few hundred wakeups a second, far below a core); under load it never sleeps;
// a client that speaks after a quiet spell waits up to kMaxBackoff for its first byte to be
// noticed.
#include <time.h>

#include <algorithm>
#include <chrono>

#include "poller/dense_fd_table.hpp"
#include "poller/multiplexer.hpp"

namespace polyecho {
namespace {

using std::chrono::microseconds;

constexpr microseconds kMinBackoff{50};
constexpr microseconds kMaxBackoff{4000};

class SpinPoller final : public Multiplexer {
 public:
  bool add(int fd, std::uint32_t interest) override {
    watched_.insert({fd, interest});
    return true;
  }
  void modify(int fd, std::uint32_t interest) override { watched_.at(fd).events = interest; }
  void remove(int fd) override { watched_.erase(fd); }

  void wait(std::vector<ReadyEvent>& ready, int timeout_ms) override {
    if (backoff_.count() > 0) {
      microseconds nap = backoff_;
      if (timeout_ms >= 0) nap = std::min<microseconds>(nap, std::chrono::milliseconds(timeout_ms));
      // nanosleep, not sleep_for: a stop signal interrupts it (EINTR) instead of being retried.
      const timespec ts{0, static_cast<long>(nap.count()) * 1000};
      ::nanosleep(&ts, nullptr);
    }
    ready.clear();
    for (const ReadyEvent& w : watched_.records()) {
      if (w.events != 0) ready.push_back(w);
    }
  }

  void after_dispatch(bool progressed) override {
    backoff_ = progressed ? microseconds{0} : std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
  }

  std::string_view name() const noexcept override { return "nbpoll"; }

 private:
  DenseFdTable<ReadyEvent> watched_;  // {fd, interest}
  microseconds backoff_{0};
};

}  // namespace

std::unique_ptr<Multiplexer> make_spin_poller() {
  return std::make_unique<SpinPoller>();
}

}  // namespace polyecho
