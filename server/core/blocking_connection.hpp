#pragma once

#include <atomic>
#include <mutex>

#include "core/server_config.hpp"
#include "polyecho/stats.hpp"

namespace polyecho {

struct BlockingServeOptions {
  // What an interrupted read or write means when a stop was requested; only for threads that
  // receive SIGINT/SIGTERM themselves.
  enum class OnStop {
    ignore,  // multi-threaded models: the drain is run from another thread (input_cut)
    drain,   // iterative: keep serving for --drain-timeout, then stop reading, flush, close
    cut,     // fork children: the parent already ran the drain; stop reading, flush, close
  };
  OnStop on_interrupt = OnStop::ignore;
  // Set by the thread running the drain (ActiveConnections::end_drain): read no more, flush
  // what is owed, close.
  const std::atomic<bool>* input_cut = nullptr;
};

// Applies the per-connection socket options every model wants: TCP_NODELAY (an echo must not
// wait for Nagle), keepalive, and the idle timeout as SO_RCVTIMEO/SO_SNDTIMEO for blocking IO.
void prepare_connection(int fd, const ServerConfig& config, bool blocking);

// Serves one connection with blocking IO on the calling thread, through the shared Session,
// until the peer or the protocol ends it, the idle timeout fires, or it is cut from outside.
// Does not close `fd` (the caller owns it). Adds its byte counts to `stats` when done.
void serve_blocking(int fd, const ServerConfig& config, Stats& stats,
                    const BlockingServeOptions& options = {});

// RAII for a connection the model admitted: counts it as accepted and active.
class ActiveGuard {
 public:
  explicit ActiveGuard(Stats& stats) : stats_(stats) {
    stats_.accepted.fetch_add(1, std::memory_order_relaxed);
    stats_.active.fetch_add(1, std::memory_order_relaxed);
  }
  // Takes over a slot already claimed with claim_active_slot (process-wide admission).
  ActiveGuard(Stats& stats, std::adopt_lock_t) noexcept : stats_(stats) {}
  ~ActiveGuard() { stats_.active.fetch_sub(1, std::memory_order_relaxed); }
  ActiveGuard(const ActiveGuard&) = delete;
  ActiveGuard& operator=(const ActiveGuard&) = delete;

 private:
  Stats& stats_;
};

}  // namespace polyecho
