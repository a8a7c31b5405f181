// The reactor's relay pipes (server/relay/relay_pipe.hpp): the cap on pipes in the process,
// reuse of a thread's spares, and that bytes really pass through with splice(2).
#include "relay/relay_pipe.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace polyecho {
namespace {

TEST(RelayPipe, AtMostTheCapExistAndAReturnedOneIsReused) {
  const std::size_t before = RelayPipe::live();
  std::vector<RelayPipe> held;
  for (;;) {
    RelayPipe pipe = RelayPipe::take();
    if (!pipe) break;
    held.push_back(std::move(pipe));
    ASSERT_LE(held.size(), RelayPipe::kMaxPipes) << "take() went past the cap";
  }
  EXPECT_EQ(RelayPipe::live(), RelayPipe::kMaxPipes);

  // Given back empty, a pipe is this thread's spare: the next take() reuses it.
  const int reused = held.back().read_end();
  held.back().give_back();
  held.pop_back();
  EXPECT_EQ(RelayPipe::live(), RelayPipe::kMaxPipes) << "a spare still counts";
  RelayPipe again = RelayPipe::take();
  ASSERT_TRUE(again);
  EXPECT_EQ(again.read_end(), reused);

  // Destroying closes: the count goes down and new pipes can be made again.
  held.clear();
  again = RelayPipe();
  EXPECT_LE(RelayPipe::live(), before);
}

TEST(RelayPipe, SparesBeyondTheirLimitAreClosedAndAnExitingThreadClosesItsOwn) {
  const std::size_t before = RelayPipe::live();
  std::thread other([] {
    std::vector<RelayPipe> pipes(RelayPipe::kSpares + 2);
    for (auto& pipe : pipes) pipe = RelayPipe::take();
    for (auto& pipe : pipes) pipe.give_back();  // kSpares kept, two closed
  });
  other.join();
  EXPECT_EQ(RelayPipe::live(), before) << "the exited thread's spares were not closed";
}

TEST(RelayPipe, SpliceMovesASocketsBytesThroughThePipeAndBack) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  RelayPipe pipe = RelayPipe::take();
  ASSERT_TRUE(pipe);
  const std::string text = "through the kernel";
  ASSERT_EQ(::write(pair[0], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  const ssize_t in = ::splice(pair[1], nullptr, pipe.write_end(), nullptr, 65536, SPLICE_F_MOVE);
  ASSERT_EQ(in, static_cast<ssize_t>(text.size()));
  const ssize_t out = ::splice(pipe.read_end(), nullptr, pair[1], nullptr,
                               static_cast<std::size_t>(in), SPLICE_F_MOVE);
  ASSERT_EQ(out, in);
  std::string echoed(text.size(), '\0');
  ASSERT_EQ(::read(pair[0], echoed.data(), echoed.size()), static_cast<ssize_t>(text.size()));
  EXPECT_EQ(echoed, text);
  pipe.give_back();
  ::close(pair[0]);
  ::close(pair[1]);
}

}  // namespace
}  // namespace polyecho
