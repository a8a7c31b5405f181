// g++ -std=c++20 -O2 -DASIO_STANDALONE -DASIO_NO_DEPRECATED coroutine_switch.cpp -pthread
// Cost of one suspend/resume through the io_context: co_await asio::post(use_awaitable).
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
constexpr int kN = 5'000'000;
asio::awaitable<void> spin() {
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < kN; ++i) co_await asio::post(ex, asio::use_awaitable);
}
int main() {
  for (int round = 0; round < 3; ++round) {
    asio::io_context io{1};
    asio::co_spawn(io, spin(), asio::detached);
    auto t0 = std::chrono::steady_clock::now();
    io.run();
    auto ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%.1f ns per co_await post (suspend + queue + resume)\n", ns / kN);
  }
}
