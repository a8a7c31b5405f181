#include "client_options.hpp"

#include <fmt/format.h>

#include "polyecho/socket_ops.hpp"

namespace polyecho::client {

unique_fd connect_or_explain(const ConnectOptions& options) {
  Endpoint endpoint;
  try {
    endpoint = resolve_endpoint(options.host, options.port);
  } catch (const std::invalid_argument& e) {
    throw ClientError(e.what());
  }
  try {
    unique_fd fd = connect_to(endpoint);
    set_nodelay(fd.get());
    return fd;
  } catch (const std::system_error& e) {
    throw ClientError(fmt::format("cannot connect to {}: {}", endpoint.to_string(), e.what()));
  }
}

}  // namespace polyecho::client
