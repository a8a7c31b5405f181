#include "relay/relay_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <vector>

namespace polyecho {

namespace {

// Every pipe in existence counts here, from pipe2 to close: the cap on descriptors spent.
std::atomic<std::size_t> live_pipes{0};

// This thread's empty pipes, reused before a new one is made. A thread that exits closes its
// spares (their destructors give their count back).
struct Spares {
  std::vector<RelayPipe> pipes;
};
thread_local Spares spares;

}  // namespace

RelayPipe& RelayPipe::operator=(RelayPipe&& other) noexcept {
  if (this != &other) {
    close();
    read_end_ = std::move(other.read_end_);
    write_end_ = std::move(other.write_end_);
  }
  return *this;
}

RelayPipe::~RelayPipe() {
  close();
}

void RelayPipe::close() noexcept {
  if (!read_end_) return;
  read_end_.reset();
  write_end_.reset();
  live_pipes.fetch_sub(1, std::memory_order_relaxed);
}

RelayPipe RelayPipe::take() noexcept {
  auto& pool = spares.pipes;
  if (!pool.empty()) {
    RelayPipe pipe = std::move(pool.back());
    pool.pop_back();
    return pipe;
  }
  if (live_pipes.fetch_add(1, std::memory_order_relaxed) >= kMaxPipes) {
    live_pipes.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  int ends[2];
  // Non-blocking ends: a full or empty pipe answers EAGAIN instead of stalling the loop.
  if (::pipe2(ends, O_NONBLOCK | O_CLOEXEC) != 0) {
    live_pipes.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  return {unique_fd(ends[0]), unique_fd(ends[1])};
}

void RelayPipe::give_back() noexcept {
  if (!read_end_) return;
  auto& pool = spares.pipes;
  if (pool.size() >= kSpares) return close();
  try {
    pool.reserve(kSpares);  // once per thread; push_back below then cannot throw
  } catch (...) {
    return close();  // no memory for the list: closing the pipe loses nothing
  }
  pool.push_back(std::move(*this));
}

std::size_t RelayPipe::live() noexcept {
  return live_pipes.load(std::memory_order_relaxed);
}

}  // namespace polyecho
