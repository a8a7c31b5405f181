// g++ -std=c++20 -O2 fiber_switch.cpp -lboost_context
// Cost of one stackful switch: a Boost.Context fiber that yields back to its resumer in a loop.
// One iteration is two switches (into the fiber and back), as one park + resume in the
// fiber scheduler; the epoll round trip around a real wake-up is not included.
#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <chrono>
#include <cstdio>
namespace ctx = boost::context;
constexpr int kN = 5'000'000;
int main() {
  for (int round = 0; round < 3; ++round) {
    ctx::fiber f(std::allocator_arg, ctx::protected_fixedsize_stack(64 * 1024),
                 [](ctx::fiber&& caller) {
                   for (;;) caller = std::move(caller).resume();
                   return std::move(caller);
                 });
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kN; ++i) f = std::move(f).resume();
    auto t1 = std::chrono::steady_clock::now();
    std::printf("%.1f ns per resume+yield (two switches)\n",
                std::chrono::duration<double, std::nano>(t1 - t0).count() / kN);
  }
}
