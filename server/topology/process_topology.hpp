#pragma once

#include "lifecycle/backend.hpp"

namespace polyecho {

// --processes N for the event-loop models: the nginx and Apache-event shape. A master process
// supervises N worker processes (process/WorkerProcesses: forked before any connection,
// replaced when one dies, told to drain on SIGTERM, none left a zombie); each worker runs the
// model, with its --workers loops, exactly as a single process would. How connections reach
// the workers follows --acceptor:
//  - reuseport: worker 0 uses the listener the core bound, the others bind SO_REUSEPORT
//    siblings (so connections hashed to a dead worker 0 wait in the backlog for its successor);
//  - shared: every worker inherits the one listener and its loops watch it exclusively;
//  - main: only the master accepts, and passes each connection to the next worker round-robin
//    over that worker's SOCK_SEQPACKET channel (SCM_RIGHTS); a worker whose channel is full
//    is skipped, and with every channel full the master waits up to a second for room (the
//    backlog holds the next connections meanwhile) before it refuses the connection.
// Stats and --max-per-ip live in shared memory, so the figures stay process-wide, and the
// connections of a worker that died are taken back out of them when it is reaped.
// Runs on the master's only thread; returns its exit code once every worker is gone.
int run_processes(ServerContext& context, Backend& backend, AcceptorMode model_default);

}  // namespace polyecho
