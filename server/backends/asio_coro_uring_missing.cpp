// Built instead of the io_uring compilation of asio_coro_backend.cpp when CMake found no
// liburing: asio-coro still runs on epoll, and --io uring says why it cannot.
#include "backends/asio_coro_uring.hpp"

namespace polyecho {

std::unique_ptr<Backend> make_asio_coro_uring_backend(const ServerConfig& /*config*/) {
  throw BackendUnavailable(
      "asio-coro --io uring: not compiled in: liburing missing at build time; use --io epoll");
}

bool asio_coro_uring_built() {
  return false;
}

}  // namespace polyecho
