#pragma once
// Force-included (-include) before any Asio header by the io_uring compilation of
// asio_coro_backend.cpp (server/CMakeLists.txt), and by nothing else.
//
// Asio 1.22's io_uring_service submits its cancels (IORING_OP_ASYNC_CANCEL) and one
// IORING_OP_TIMEOUT_REMOVE without setting the SQE's user_data, and io_uring_get_sqe() does not
// clear it: such an SQE carries whatever the slot's previous submission left there, often a
// pointer to another socket's operation queue. Its completion (res 0 for a successful cancel) is
// then taken for that socket's pending read: a busy connection reads a false EOF, or its real
// completion later lands on an empty queue and the connection stalls. polyecho met this when
// one connection's idle timeout cancelled its read (coroutine_test's IdleTimeout scenario).
// Asio fixed it in 1.27 (chriskohlhoff/asio commit 0080ec1c9, PR #1215) the same way as here:
// every SQE starts with user_data 0, which Asio's completion loop ignores; every operation that
// needs a completion sets its own user_data after taking the SQE.
#include <liburing.h>

inline io_uring_sqe* polyecho_io_uring_get_cleared_sqe(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe != nullptr) io_uring_sqe_set_data(sqe, nullptr);
  return sqe;
}

// liburing.h is included above, so only Asio's later calls are redirected.
#define io_uring_get_sqe polyecho_io_uring_get_cleared_sqe
