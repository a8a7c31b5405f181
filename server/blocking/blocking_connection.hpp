#pragma once

#include <atomic>

#include "lifecycle/server_config.hpp"
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

// Serves one connection with blocking IO on the calling thread, through the shared Session,
// until the peer or the protocol ends it, the idle timeout fires, or it is cut from outside.
// Does not close `fd` (the caller owns it). Adds its byte counts to `stats` when done.
void serve_blocking(int fd, const ServerConfig& config, Stats& stats,
                    const BlockingServeOptions& options = {});

}  // namespace polyecho
