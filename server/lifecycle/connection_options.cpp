#include "lifecycle/connection_options.hpp"

#include "polyecho/socket_ops.hpp"

namespace polyecho {

void prepare_connection(int fd, const ServerConfig& config, bool blocking) {
  set_nodelay(fd);
  if (config.keepalive_seconds > 0) set_keepalive(fd, config.keepalive_seconds);
  if (blocking && config.idle_timeout.count() > 0) set_io_timeout(fd, config.idle_timeout);
}

}  // namespace polyecho
