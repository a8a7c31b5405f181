#include "lifecycle/connection_options.hpp"

#include <spdlog/spdlog.h>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

void prepare_connection(int fd, const ServerConfig& config, bool blocking) {
  set_nodelay(fd);
  if (config.keepalive_seconds > 0) set_keepalive(fd, config.keepalive_seconds);
  if (blocking && config.idle_timeout.count() > 0) set_io_timeout(fd, config.idle_timeout);
}

bool prepare_or_refuse(AdmittedConnection& admitted, const ServerConfig& config) {
  try {
    prepare_connection(admitted.fd.get(), config, /*blocking=*/false);
    return true;
  } catch (const std::system_error& e) {
    spdlog::debug("connection setup failed: {}", e.what());  // the peer is already gone
    admitted.ticket.refuse(std::move(admitted.fd));
    return false;
  }
}

}  // namespace polyecho
