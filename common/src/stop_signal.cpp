#include "polyecho/stop_signal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "polyecho/socket_ops.hpp"

namespace polyecho::stop_signal {

namespace {

// Only async-signal-safe state is touched from the handlers: lock-free atomics and write().
std::atomic<int> g_stop_count{0};
std::atomic<int> g_stop_write{-1};
std::atomic<int> g_stop_read{-1};
std::atomic<int> g_child_write{-1};
std::atomic<int> g_child_read{-1};

void make_pipe(std::atomic<int>& read_end, std::atomic<int>& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2");
  read_end = fds[0];
  write_end = fds[1];
}

void poke(int fd) noexcept {
  const int saved = errno;
  const char byte = 1;
  // A full pipe is fine: it is already readable, which is all the watchers need.
  [[maybe_unused]] auto ignored = ::write(fd, &byte, 1);
  errno = saved;
}

void on_stop_signal(int) {
  if (g_stop_count.fetch_add(1) > 0) {
    constexpr char kMessage[] = "polyecho: second stop signal, exiting immediately\n";
    [[maybe_unused]] auto ignored = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    ::_exit(1);
  }
  poke(g_stop_write.load());
}

void on_child_signal(int) {
  poke(g_child_write.load());
}

void set_handler(int signal_number, void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  ::sigemptyset(&action.sa_mask);
  action.sa_flags = signal_number == SIGCHLD ? SA_NOCLDSTOP : 0;  // no SA_RESTART, see header
  if (::sigaction(signal_number, &action, nullptr) != 0) throw_errno("sigaction");
}

void close_if_open(std::atomic<int>& fd) {
  if (int old = fd.exchange(-1); old >= 0) ::close(old);
}

}  // namespace

void install() {
  if (g_stop_read.load() < 0) make_pipe(g_stop_read, g_stop_write);
  // ThreadSanitizer keeps a signal that lands outside an intercepted blocking call in
  // per-thread state, which GCC 12's runtime allocates on the thread's first such call, and not
  // reentrantly: a signal landing during that allocation is noted in a second copy that the
  // interrupted allocation then overwrites, and is lost. Seen as a server that ignored SIGTERM
  // and SIGINT sent while a sibling loop served the first client and loop 0 was still entering
  // its first epoll_wait. So the receiving thread makes that first call here, before any
  // handler is armed (a signal now takes its default action, and is not lost).
  run_deferred_handlers();
  set_handler(SIGINT, on_stop_signal);
  set_handler(SIGTERM, on_stop_signal);
  // A server started with them blocked (a mask inherited from whoever started it) would never
  // see them, on any model: every thread it starts copies this one's mask.
  sigset_t stop;
  ::sigemptyset(&stop);
  ::sigaddset(&stop, SIGINT);
  ::sigaddset(&stop, SIGTERM);
  ::pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
}

bool requested() noexcept {
  return g_stop_count.load() > 0;
}
int stop_fd() noexcept {
  return g_stop_read.load();
}

// poll() on no fds with a zero timeout: an intercepted blocking call that returns at once.
void run_deferred_handlers() noexcept {
  [[maybe_unused]] const int ignored = ::poll(nullptr, 0, 0);
}

void request() noexcept {
  int expected = 0;
  if (g_stop_count.compare_exchange_strong(expected, 1)) poke(g_stop_write.load());
}

void watch_children() {
  if (g_child_read.load() < 0) make_pipe(g_child_read, g_child_write);
  set_handler(SIGCHLD, on_child_signal);
}

int child_fd() noexcept {
  return g_child_read.load();
}

void clear_child_fd() noexcept {
  char sink[64];
  while (::read(g_child_read.load(), sink, sizeof sink) > 0) {
  }
}

void reinstall_in_child() {
  ::signal(SIGCHLD, SIG_DFL);
  close_if_open(g_child_read);
  close_if_open(g_child_write);
  close_if_open(g_stop_read);
  close_if_open(g_stop_write);
  g_stop_count = 0;
  install();
  sigset_t set;
  ::sigemptyset(&set);
  ::pthread_sigmask(SIG_SETMASK, &set, nullptr);
}

void block_in_this_thread() {
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, SIGINT);
  ::sigaddset(&set, SIGTERM);
  ::sigaddset(&set, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace polyecho::stop_signal
