#include "process/fd_dispatcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "blocking/worker_pool.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"
#include "process/fd_passing.hpp"

namespace polyecho {

namespace {
struct DoneRecord {
  std::uint32_t slot;
  std::int32_t pid;
};
static_assert(sizeof(DoneRecord) <= PIPE_BUF, "done records must be written atomically");
}  // namespace

FdDispatcher::FdDispatcher(unsigned workers, unsigned threads_per_worker,
                           const ServerConfig& config, Admission& admission)
    : config_(config),
      admission_(admission),
      threads_per_worker_(threads_per_worker),
      workers_(workers) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
  done_read_.reset(fds[0]);
  done_write_.reset(fds[1]);  // blocking: a record is never dropped, the master always drains
  set_nonblocking(done_read_.get());
}

void FdDispatcher::before_fork(unsigned slot) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) throw_errno("socketpair");
  workers_[slot].channel.reset(pair[0]);
  workers_[slot].worker_end.reset(pair[1]);
}

void FdDispatcher::after_fork(unsigned slot, pid_t pid) {
  Worker& worker = workers_[slot];
  worker.worker_end.reset();
  worker.pid = pid;
  worker.free_threads = threads_per_worker_;
  while (!waiting_.empty() && hand_over(waiting_.front())) waiting_.pop_front();
}

void FdDispatcher::on_worker_exit(unsigned slot) {
  Worker& worker = workers_[slot];
  serving_ -= threads_per_worker_ - worker.free_threads;
  worker = Worker{};
}

void FdDispatcher::on_done() {
  DoneRecord records[512];
  ssize_t n;
  while ((n = ::read(done_read_.get(), records, sizeof records)) > 0) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(DoneRecord); ++i) {
      const DoneRecord& record = records[i];
      // A record from a worker that has since died (and been replaced) is stale: its slots
      // were already taken back in on_worker_exit.
      if (record.slot >= workers_.size() || workers_[record.slot].pid != record.pid) continue;
      ++workers_[record.slot].free_threads;
      --serving_;
    }
  }
  while (!waiting_.empty() && hand_over(waiting_.front())) waiting_.pop_front();
}

void FdDispatcher::dispatch(unique_fd connection) {
  // The master holds no tickets (the worker that serves a connection admits it), so it bounds
  // what it has in flight itself: handed over and not reported done, plus waiting.
  // A connection no worker can take now waits, within --queue-limit; anything else is refused.
  const bool room = serving_ + waiting_.size() < config_.max_connections;
  if (room && hand_over(connection)) return;
  if (room && waiting_.size() < config_.queue_limit) {
    waiting_.push_back(std::move(connection));
    return;
  }
  admission_.reject(std::move(connection));
}

void FdDispatcher::reject_queued() {
  while (!waiting_.empty()) {
    admission_.reject(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool FdDispatcher::hand_over(unique_fd& connection) {
  for (;;) {
    // The worker with the most idle threads: spreads connections across processes.
    Worker* best = nullptr;
    for (Worker& worker : workers_) {
      if (worker.pid > 0 && worker.free_threads > 0 &&
          (best == nullptr || worker.free_threads > best->free_threads)) {
        best = &worker;
      }
    }
    if (best == nullptr) return false;
    if (const int error = send_fd(best->channel.get(), connection.get()); error != 0) {
      // The worker is going away (its SIGCHLD is on the way); use another one meanwhile.
      spdlog::warn("passing a connection to worker {}: {}", best->pid, std::strerror(error));
      best->free_threads = 0;
      continue;
    }
    --best->free_threads;
    ++serving_;
    connection.reset();  // the worker holds its own descriptor for the socket now
    return true;
  }
}

void FdDispatcher::enter_worker(unsigned slot) {
  for (Worker& worker : workers_) worker.channel.reset();
  waiting_.clear();  // our copies only: the master still holds its own
  done_read_.reset();
  worker_channel_ = std::move(workers_[slot].worker_end);
  worker_slot_ = slot;
}

void FdDispatcher::receive_and_serve(const PoolContext& pool) {
  const DoneRecord done{worker_slot_, static_cast<std::int32_t>(::getpid())};
  const auto report_done = [&] {
    [[maybe_unused]] auto ignored = ::write(done_write_.get(), &done, sizeof done);
  };
  for (;;) {
    pollfd fds[2] = {{stop_signal::stop_fd(), POLLIN, 0}, {worker_channel_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) throw_errno("poll");
    // Receive before looking at the stop: a connection already passed is served (drained).
    ReceivedFd received = receive_fd(worker_channel_.get());
    if (received.fd) {
      // Admitted in the worker, so that its --max-per-ip places belong to this worker's slot
      // and the master drops them if the worker dies (the master only learns "done", not
      // which peer), and its slot counts in this worker's `held`.
      if (auto admitted = pool.admission.admit(std::move(received.fd)))
        serve_pooled(std::move(*admitted), pool);
      report_done();
      continue;
    }
    if (received.closed || stop_signal::requested()) return;
    // EAGAIN: a sibling thread took it. Anything else lost the descriptor in transit (e.g.
    // MSG_CTRUNC at EMFILE): the master still counts this thread busy, so report it free.
    if (received.error != EAGAIN) {
      spdlog::warn("receiving a connection: {}", std::strerror(received.error));
      report_done();
    }
  }
}

}  // namespace polyecho
