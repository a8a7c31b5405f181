#include "blocking/blocking_connection.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "lifecycle/connection_options.hpp"
#include "lifecycle/messages.hpp"
#include "polyecho/session.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

namespace {

using Clock = std::chrono::steady_clock;

// Plain recv/send rather than read_some/send_some: EINTR must reach us so that a
// single-threaded model notices a stop request while blocked on a quiet client.
class BlockingServer {
 public:
  BlockingServer(int fd, const ServerConfig& config, const BlockingServeOptions& options)
      : fd_(fd), config_(config), options_(options), session_(config.protocol) {}

  // Returns the errno that ended the connection, or 0 for an orderly end.
  int serve() {
    for (;;) {
      // A signal that lands while recv/send are moving data interrupts nothing, so a busy
      // stream would never see EINTR: look at the (lock-free) flag on every pass too.
      if (options_.on_interrupt != OnStop::ignore && stop_signal::requested()) note_interrupt();
      // --work: this thread is the connection's, so it does each message's work itself (a
      // wait is a plain sleep here: blocking is the model).
      work_pending_inline(session_, config_.work);
      while (session_.has_output()) {
        const auto out = session_.output();
        const ssize_t n = ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) {
            note_interrupt();
            continue;
          }
          return errno;
        }
        session_.on_sent(static_cast<std::size_t>(n));
      }
      if (session_.finished()) return 0;
      if (must_stop_reading()) {
        // Stopping: what was received is echoed (the loop flushes it), nothing more is read.
        session_.on_peer_eof();
        continue;
      }
      const auto space = session_.input_space();
      if (space.empty()) return 0;  // cannot happen after a full flush; never spin on it
      if (int waited = wait_unless_stopping(); waited != 0) return waited;
      if (must_stop_reading()) continue;  // the wait may have seen the stop
      const ssize_t n = ::recv(fd_, space.data(), space.size(), 0);
      if (n > 0) {
        session_.on_received(static_cast<std::size_t>(n));
      } else if (n == 0) {
        session_.on_peer_eof();
      } else if (errno == EINTR) {
        note_interrupt();
      } else if (draining_ && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        cut_ = true;  // the drain timeout ran out on a quiet peer
      } else {
        return errno;  // EAGAIN here is the idle timeout (SO_RCVTIMEO)
      }
    }
  }

  [[nodiscard]] const Session& session() const { return session_; }

 private:
  using OnStop = BlockingServeOptions::OnStop;

  bool must_stop_reading() const {
    if (cut_) return true;
    if (options_.input_cut != nullptr && options_.input_cut->load(std::memory_order_relaxed))
      return true;
    return draining_ && Clock::now() >= deadline_;
  }

  // Threads that receive the stop signal themselves (iterative, fork children) must not block
  // in recv() after a signal that landed just before it: EINTR only reaches a call already
  // blocked. So, until a stop is noticed, they wait in poll() on the socket *and* the sticky
  // stop fd: one extra syscall per read, the price of a race-free stop in a single-threaded
  // blocking model. Returns an errno that ends the connection, or 0.
  int wait_unless_stopping() {
    if (options_.on_interrupt == OnStop::ignore || draining_ || cut_) return 0;
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_signal::stop_fd(), POLLIN, 0}};
    const int timeout_ms =
        config_.idle_timeout.count() > 0 ? static_cast<int>(config_.idle_timeout.count()) : -1;
    const int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0 && errno != EINTR) return errno;
    if (ready == 0) return EAGAIN;  // the idle timeout, as SO_RCVTIMEO would report it
    if (stop_signal::requested()) note_interrupt();
    return 0;
  }

  void note_interrupt() {
    if (!stop_signal::requested()) return;
    if (options_.on_interrupt == OnStop::cut) cut_ = true;
    if (options_.on_interrupt != OnStop::drain || draining_) return;
    draining_ = true;
    deadline_ = Clock::now() + config_.drain_timeout;
    // The socket timeout bounds the wait for a quiet peer; the deadline check bounds a chatty one.
    set_io_timeout(fd_, std::max(config_.drain_timeout, std::chrono::milliseconds(1)));
  }

  int fd_;
  const ServerConfig& config_;
  const BlockingServeOptions& options_;
  Session session_;
  bool draining_ = false;
  bool cut_ = false;
  Clock::time_point deadline_{};
};

}  // namespace

void serve_blocking(int fd, const ServerConfig& config, Stats& stats,
                    const BlockingServeOptions& options) {
  BlockingServer server(fd, config, options);
  int error = 0;
  try {
    prepare_connection(fd, config, true);
    error = server.serve();
  } catch (const std::system_error& e) {
    error = e.code().value();  // setsockopt on a peer that already reset
  }
  count_protocol_error(server.session(), stats, fd);
  // EAGAIN here is SO_RCVTIMEO firing: an idle (or drain-expired) client, closed on purpose.
  if (error != 0 && error != EAGAIN && error != EINTR) {
    stats.count_error(ErrorKind::connection);
    spdlog::debug("connection fd {} ended: {}", fd, std::strerror(error));
  }
}

}  // namespace polyecho
