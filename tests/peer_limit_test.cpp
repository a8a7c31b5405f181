// PeerLimit, the --max-per-ip gate, on real loopback connections: counting per address,
// giving places back, and a dead prefork worker's places dropped by the master.
#include "lifecycle/peer_limit.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "support/peer_address.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

TEST(PeerLimit, OffAdmitsEverythingAndCountsNothing) {
  PeerLimit limit(0, 100);
  LoopbackListener net;
  EXPECT_FALSE(limit.enabled());
  std::vector<PeerLease> leases;
  for (int i = 0; i < 5; ++i) {
    auto lease = limit.admit(net.accept_from("127.0.0.1").get());
    ASSERT_TRUE(lease);
    leases.push_back(std::move(*lease));
  }
  EXPECT_EQ(limit.count(ipv4(127, 0, 0, 1)), 0u);
}

TEST(PeerLimit, CountsPerAddressAndGivesPlacesBack) {
  PeerLimit limit(2, 100);
  LoopbackListener net;
  const auto one = ipv4(127, 0, 0, 1);
  const auto two = ipv4(127, 0, 0, 2);
  auto a = limit.admit(net.accept_from("127.0.0.1").get());
  auto b = limit.admit(net.accept_from("127.0.0.1").get());
  ASSERT_TRUE(a && b);
  EXPECT_EQ(limit.count(one), 2u);
  EXPECT_FALSE(limit.admit(net.accept_from("127.0.0.1").get())) << "third from one address";
  auto c = limit.admit(net.accept_from("127.0.0.2").get());
  ASSERT_TRUE(c) << "another address has its own count";
  EXPECT_EQ(limit.count(two), 1u);
  a.reset();  // the connection ended
  EXPECT_EQ(limit.count(one), 1u);
  PeerLease moved = std::move(*b);  // moving a lease does not give the place back
  b.reset();
  EXPECT_EQ(limit.count(one), 1u);
  auto d = limit.admit(net.accept_from("127.0.0.1").get());
  EXPECT_TRUE(d);
  EXPECT_EQ(limit.count(one), 2u);
}

TEST(PeerLimit, ManyAddressesComeAndGoWithoutLosingCount) {
  // Addresses colliding in the table and leaving in any order exercise the deletion.
  PeerLimit limit(1, 10);  // the smallest table: 1024 slots
  std::vector<std::optional<PeerLease>> leases;
  LoopbackListener net;
  for (int i = 1; i <= 200; ++i) {
    const std::string source = "127.0.1." + std::to_string(i);
    leases.push_back(limit.admit(net.accept_from(source.c_str()).get()));
    ASSERT_TRUE(leases.back()) << source;
  }
  for (std::size_t i = 0; i < leases.size(); i += 2) leases[i].reset();
  for (int i = 1; i <= 200; ++i) {
    const auto address = ipv4(127, 0, 1, static_cast<std::uint8_t>(i));
    EXPECT_EQ(limit.count(address), (i - 1) % 2 == 0 ? 0u : 1u) << i;
  }
  const std::string odd = "127.0.1.2";  // still held: refused
  EXPECT_FALSE(limit.admit(net.accept_from(odd.c_str()).get()));
  const std::string even = "127.0.1.1";  // given back: admitted
  EXPECT_TRUE(limit.admit(net.accept_from(even.c_str()).get()));
}

TEST(PeerLimit, MasterDropsTheDeadWorkersPlacesAndOnlyThose) {
  PeerLimit limit(3, 100);
  LoopbackListener net;
  const auto one = ipv4(127, 0, 0, 1);
  auto own = limit.admit(net.accept_from("127.0.0.1").get());  // the master's (owner 0)
  ASSERT_TRUE(own);
  unique_fd first = net.accept_from("127.0.0.1");
  unique_fd second = net.accept_from("127.0.0.1");
  const pid_t worker = ::fork();
  ASSERT_GE(worker, 0);
  if (worker == 0) {
    // A prefork worker in slot 4 takes two places, then dies without giving them back.
    PeerLimit::enter_worker(4);
    auto x = limit.admit(first.get());
    auto y = limit.admit(second.get());
    ::_exit(x && y ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(worker, &status, 0), worker);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(limit.count(one), 3u) << "the table is shared with the worker";
  EXPECT_FALSE(limit.admit(net.accept_from("127.0.0.1").get()));
  limit.forget_owner(3);  // another slot: nothing changes
  EXPECT_EQ(limit.count(one), 3u);
  limit.forget_owner(4);
  EXPECT_EQ(limit.count(one), 1u) << "only the master's own place is left";
  own.reset();
  EXPECT_EQ(limit.count(one), 0u);
}

}  // namespace
}  // namespace polyecho::test
