#pragma once

#include <memory>

#include "lifecycle/backend.hpp"

namespace polyecho {

// asio-coro on Asio's io_uring backend (--io uring): the same coroutine code, compiled a second
// time with Asio's namespace renamed (server/CMakeLists.txt says how and why). Defined by that
// second compilation of asio_coro_backend.cpp when liburing was found, otherwise by
// asio_coro_uring_missing.cpp. Throws BackendUnavailable when io_uring cannot be used here, so
// the registered asio-coro calls it from its factory, before the listener is bound.
std::unique_ptr<Backend> make_asio_coro_uring_backend(const ServerConfig& config);
// Whether this build has that second compilation, i.e. whether --io uring can work at all (the
// io_uring variants are only worth testing then).
bool asio_coro_uring_built();

}  // namespace polyecho
