#pragma once

#include "lifecycle/admission.hpp"
#include "lifecycle/server_config.hpp"

namespace polyecho {

// Applies the per-connection socket options every model wants: TCP_NODELAY (an echo must not
// wait for Nagle), keepalive, and, for blocking IO only, the idle timeout as
// SO_RCVTIMEO/SO_SNDTIMEO. Throws std::system_error (a peer that already reset).
void prepare_connection(int fd, const ServerConfig& config, bool blocking);

// The same for a connection an event loop just took from its source: false when the peer is
// already gone, and then the connection has been refused (closed, counted as rejected).
[[nodiscard]] bool prepare_or_refuse(AdmittedConnection& admitted, const ServerConfig& config);

}  // namespace polyecho
