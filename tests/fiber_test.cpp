// The fiber model's own pieces: the guarded, pooled stack allocator (unit), and a scheduler
// property the shared suites do not pin down: a fiber blocked on a write to a peer that never
// reads stalls nobody else on its thread.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/context/fiber.hpp>
#include <cstdint>
#include <fstream>
#include <future>
#include <sstream>
#include <string>

#include "fiber/fiber_stack.hpp"
#include "polyecho/socket_ops.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

std::uintptr_t address(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

// The permissions /proc/self/maps shows for the mapping holding `at` ("rw-p", "---p"...).
std::string protection_at(std::uintptr_t at) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    std::string range;
    std::string perms;
    fields >> range >> perms;
    const auto dash = range.find('-');
    const auto begin = std::stoull(range.substr(0, dash), nullptr, 16);
    const auto end = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (at >= begin && at < end) return perms;
  }
  return "unmapped";
}

TEST(FiberStackPool, StackIsWritableAndTheGuardPageBelowIsProtNone) {
  FiberStackPool pool(10000, 4);
  auto stack = pool.allocate();
  const std::size_t page = FiberStackPool::guard_size();
  EXPECT_EQ(stack.size % page, 0u);
  EXPECT_GE(stack.size, 10000u);
  const auto top = address(stack.sp);
  const auto bottom = top - stack.size;
  EXPECT_EQ(protection_at(bottom).substr(0, 2), "rw");
  EXPECT_EQ(protection_at(top - 1).substr(0, 2), "rw");
  EXPECT_EQ(protection_at(bottom - 1).substr(0, 3), "---");
  EXPECT_EQ(protection_at(bottom - page).substr(0, 3), "---");
  // The kernel agrees: copying from the stack works, from the guard page it faults (EFAULT).
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  const unique_fd read_end(pipe_fds[0]);
  const unique_fd write_end(pipe_fds[1]);
  static_cast<char*>(stack.sp)[-1] = 'x';
  EXPECT_EQ(::write(write_end.get(), static_cast<char*>(stack.sp) - 1, 1), 1);
  errno = 0;
  EXPECT_EQ(::write(write_end.get(), static_cast<const char*>(stack.sp) - stack.size - 1, 1), -1);
  EXPECT_EQ(errno, EFAULT);
  pool.deallocate(stack);
}

TEST(FiberStackPool, WritingIntoTheGuardPageKillsWithSigsegv) {
  FiberStackPool pool(std::size_t{64} * 1024, 1);
  auto stack = pool.allocate();
  volatile char* guard = static_cast<char*>(stack.sp) - stack.size - 1;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGSEGV, SIG_DFL);  // not a sanitizer's report-and-exit: the plain fault
    *guard = 'x';                // an overflowing fiber's first write below its stack
    ::_exit(0);                  // reached only if the guard failed
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  pool.deallocate(stack);
}

TEST(FiberStackPool, FreedStacksAreReusedUpToTheBound) {
  FiberStackPool pool(std::size_t{16} * 1024, 2);
  auto a = pool.allocate();
  auto b = pool.allocate();
  auto c = pool.allocate();
  const void* a_top = a.sp;
  pool.deallocate(a);
  pool.deallocate(b);
  pool.deallocate(c);  // beyond the bound: unmapped
  EXPECT_EQ(pool.pooled(), 2u);
  EXPECT_EQ(protection_at(address(c.sp) - 1), "unmapped");
  auto again = pool.allocate();  // the most recently pooled first (still warm)
  auto again2 = pool.allocate();
  EXPECT_EQ(again2.sp, a_top);
  EXPECT_EQ(pool.pooled(), 0u);
  pool.deallocate(again);
  pool.deallocate(again2);
}

// The pool is a Boost.Context StackAllocator: a fiber really runs on the stack it hands out,
// and gives it back when the fiber ends.
TEST(FiberStackPool, BoostFiberRunsOnAPooledStackAndReturnsIt) {
  FiberStackPool pool(std::size_t{64} * 1024, 4);
  std::uintptr_t local_at = 0;
  boost::context::fiber f(std::allocator_arg, PooledStackAllocator{&pool},
                          [&local_at](boost::context::fiber&& caller) {
                            volatile char local = 0;
                            local_at = address(const_cast<const char*>(&local));
                            return std::move(caller);
                          });
  EXPECT_EQ(pool.pooled(), 0u);
  f = std::move(f).resume();
  EXPECT_FALSE(f);  // ended
  ASSERT_EQ(pool.pooled(), 1u);
  auto stack = pool.allocate();
  EXPECT_LT(local_at, address(stack.sp));
  EXPECT_GE(local_at, address(stack.sp) - stack.size);
  pool.deallocate(stack);
}

// A client that floods without reading: its fiber ends up blocked in a write (the Session's
// buffer is full at --max-buffer, the socket buffers are full), and must stall only itself.
TEST(FiberScheduler, AWriterBlockedOnASlowReaderDoesNotStallOtherFibers) {
  auto server = ServerProcess::start({"--backend", "fiber", "--max-buffer", "65536"});
  ASSERT_TRUE(server);
  unique_fd slow = connect_loopback(server->port());
  // 32 MiB: the kernel's buffers both ways plus the server's 64 KiB took about 8 MiB here
  // before the sender blocked (measured with a non-reading client), so the flood cannot end
  // while we do not read.
  constexpr int kChunks = 32;
  const std::string chunk = random_bytes(1 << 20, 7);
  auto flood = std::async(std::launch::async, [&] {
    for (int i = 0; i < kChunks; ++i) {
      if (!send_text(slow.get(), chunk)) return false;
    }
    return true;
  });
  // The server has started echoing to the slow client (a byte is waiting for us)...
  char first = 0;
  ASSERT_EQ(::recv(slow.get(), &first, 1, MSG_PEEK), 1);
  // ...and others are served meanwhile, on the same single scheduler thread.
  for (int c = 0; c < 10; ++c) {
    const unique_fd other = connect_loopback(server->port());
    for (int round = 0; round < 20; ++round) {
      const std::string message = random_bytes(100 + round, static_cast<std::uint32_t>(c + round));
      ASSERT_TRUE(send_text(other.get(), message));
      ASSERT_EQ(recv_exact(other.get(), message.size()), message) << "client " << c;
    }
  }
  // The flood cannot have finished: we have not read, so the server could not have taken it
  // all. Its fiber was parked on a write the whole time the others were served.
  EXPECT_EQ(flood.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  for (int i = 0; i < kChunks; ++i) {
    ASSERT_EQ(fnv1a(recv_exact(slow.get(), chunk.size())), fnv1a(chunk)) << "chunk " << i;
  }
  EXPECT_TRUE(flood.get());
  slow.reset();  // or the stop below would wait out the whole drain for it
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
}

// --stack-size is honoured (a 16 KiB stack is enough for the echo loop) and the workers share
// one process-wide admission count.
TEST(FiberScheduler, SmallStacksAndTwoWorkersServeManyClients) {
  auto server = ServerProcess::start(
      {"--backend", "fiber", "--workers", "2", "--stack-size", "16384", "--max-connections", "50"});
  ASSERT_TRUE(server);
  std::vector<unique_fd> clients;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(connect_loopback(server->port()));
    ASSERT_TRUE(send_text(clients.back().get(), "ping"));
    ASSERT_EQ(recv_exact(clients.back().get(), 4), "ping") << "client " << i;
  }
  const unique_fd refused = connect_loopback(server->port());
  EXPECT_EQ(wait_for_close(refused.get()), PeerEnd::closed);
  clients.clear();
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->stderr_text();
  const std::string tail = server->remaining_stdout();
  EXPECT_NE(tail.find("accepted=50 rejected=1 active=0"), std::string::npos) << tail;
}

}  // namespace
}  // namespace polyecho::test
