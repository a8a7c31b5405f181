#pragma once

#include "lifecycle/server_config.hpp"
#include "polyecho/session.hpp"
#include "polyecho/stats.hpp"

namespace polyecho {

// What every transport does with the messages a Session finds, whatever its IO mechanism.

// Does the work of every pending message on the calling thread, in order, releasing each
// one's echo once its work is done: cpu and block as configured, and a wait as a plain sleep.
// For the blocking models (the thread is the connection's) and for cpu/block work anywhere;
// an event loop does a wait its own way instead. Nothing to do without --work.
void work_pending_inline(Session& session, const WorkConfig& work);

// At the end of a connection: a peer that broke the protocol (a line or frame too long, a
// frame cut short) is logged and counted as an error, once.
void count_protocol_error(const Session& session, Stats& stats, int fd);

}  // namespace polyecho
