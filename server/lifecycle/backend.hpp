#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lifecycle/admission.hpp"
#include "lifecycle/peer_limit.hpp"
#include "lifecycle/server_config.hpp"
#include "polyecho/endpoint.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// What the core hands a model once the listener is bound and announced. Lives in the main
// thread's frame for the whole run; forked children get their own copy.
struct ServerContext {
  const ServerConfig& config;
  unique_fd listener;    // the model owns it from here on (close it to stop accepting)
  Endpoint bound;        // the real address, port resolved (for SO_REUSEPORT siblings)
  Stats& stats;          // shared across processes (see SharedStats)
  PeerLimit& peers;      // --max-per-ip, shared across processes (prefork drops a dead worker's)
  Admission& admission;  // every model admits and refuses connections through it
  // In a worker process of --processes under --acceptor main: the channel the master passes
  // connections on, instead of a listener (which is then empty). See topology/.
  unique_fd channel{};
};

// One concurrency model. The core calls adjust_listener() before binding and run() after
// printing the "listening on" line. run() returns when stop_signal::requested() and the drain
// is over, and its result is the process exit code.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual void adjust_listener(ListenerOptions& options) const { (void)options; }
  virtual int run(ServerContext& context) = 0;
};

// Thrown by a factory when the model cannot run here (e.g. io_uring disabled); the message is
// printed as is and the server exits 1.
struct BackendUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace polyecho
