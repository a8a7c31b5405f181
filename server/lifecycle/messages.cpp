#include "lifecycle/messages.hpp"

#include <spdlog/spdlog.h>

namespace polyecho {

void work_pending_inline(Session& session, const WorkConfig& work) {
  if (!work.enabled()) return;
  while (const auto message = session.pending_message()) {
    work_inline(work, *message);
    session.release_message();
  }
}

void count_protocol_error(const Session& session, Stats& stats, int fd) {
  const auto error = session.protocol_error();
  if (error.empty()) return;
  stats.count_error(ErrorKind::protocol);
  spdlog::warn("connection fd {}: {}; closed", fd, error);
}

}  // namespace polyecho
