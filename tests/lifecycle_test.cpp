// The lifecycle pieces every model shares: the DrainTimeline (the stop sequence as a value, on
// a made-up clock) and admission (Admission and its AdmissionTicket, over real shared Stats and
// a real PeerLimit).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>

#include "lifecycle/admission.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/peer_limit.hpp"
#include "polyecho/socket_ops.hpp"
#include "polyecho/stats.hpp"
#include "support/peer_address.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using namespace std::chrono_literals;
using Phase = DrainTimeline::Phase;

// Any instant will do: the timeline only compares the ones it is given.
const DrainTimeline::Clock::time_point t0 = DrainTimeline::Clock::time_point{} + 1h;

TEST(DrainTimeline, ServesUntilStoppedWithNoDeadline) {
  DrainTimeline timeline(10s, 1s);
  EXPECT_FALSE(timeline.stopping());
  EXPECT_EQ(timeline.phase(t0 + 100h), Phase::serving);
  EXPECT_EQ(timeline.next_deadline(t0), std::nullopt);
  EXPECT_EQ(timeline.advance(t0), std::nullopt) << "serving is where it starts, not news";
}

TEST(DrainTimeline, PhasesFollowTheDrainTimeoutAndTheFlushGrace) {
  DrainTimeline timeline(10s, 1s);
  timeline.stop(t0);
  EXPECT_TRUE(timeline.stopping());
  EXPECT_EQ(timeline.phase(t0), Phase::draining);
  EXPECT_EQ(timeline.phase(t0 + 10s - 1ns), Phase::draining);
  EXPECT_EQ(timeline.phase(t0 + 10s), Phase::flushing);
  EXPECT_EQ(timeline.phase(t0 + 11s - 1ns), Phase::flushing);
  EXPECT_EQ(timeline.phase(t0 + 11s), Phase::closing);
  EXPECT_EQ(timeline.phase(t0 + 100h), Phase::closing);
  EXPECT_EQ(timeline.input_cut_at(), t0 + 10s);
  EXPECT_EQ(timeline.close_at(), t0 + 11s);
}

TEST(DrainTimeline, NextDeadlineIsTheEndOfThePhase) {
  DrainTimeline timeline(10s, 1s);
  timeline.stop(t0);
  EXPECT_EQ(timeline.next_deadline(t0 + 3s), t0 + 10s) << "draining ends at the input cut";
  EXPECT_EQ(timeline.next_deadline(t0 + 10s), t0 + 11s) << "flushing ends at the close";
  EXPECT_EQ(timeline.next_deadline(t0 + 11s), std::nullopt) << "closing: none left";
}

TEST(DrainTimeline, AdvanceReportsEachPhaseOnce) {
  DrainTimeline timeline(10s, 1s);
  timeline.stop(t0);
  EXPECT_EQ(timeline.advance(t0), Phase::draining);
  EXPECT_EQ(timeline.advance(t0 + 5s), std::nullopt);
  EXPECT_EQ(timeline.advance(t0 + 10s), Phase::flushing);
  EXPECT_EQ(timeline.advance(t0 + 10s + 1ms), std::nullopt);
  EXPECT_EQ(timeline.advance(t0 + 11s), Phase::closing);
  EXPECT_EQ(timeline.advance(t0 + 12s), std::nullopt);
}

TEST(DrainTimeline, ALateWakeGoesFromDrainingStraightToClosing) {
  DrainTimeline timeline(10s, 1s);
  timeline.stop(t0);
  EXPECT_EQ(timeline.advance(t0), Phase::draining);
  EXPECT_EQ(timeline.advance(t0 + 30s), Phase::closing) << "closing covers the missed cut";
  EXPECT_EQ(timeline.advance(t0 + 31s), std::nullopt);
}

TEST(DrainTimeline, AZeroDrainTimeoutCutsInputAtOnce) {
  DrainTimeline timeline(0s);
  timeline.stop(t0);
  EXPECT_EQ(timeline.advance(t0), Phase::flushing);
  EXPECT_EQ(timeline.close_at(), t0 + DrainTimeline::kFlushGrace) << "the default grace";
}

TEST(DrainTimeline, StoppingAgainChangesNothing) {
  DrainTimeline timeline(10s, 1s);
  timeline.stop(t0);
  EXPECT_EQ(timeline.advance(t0), Phase::draining);
  timeline.stop(t0 + 5s);
  EXPECT_EQ(timeline.input_cut_at(), t0 + 10s);
  EXPECT_EQ(timeline.close_at(), t0 + 11s);
  EXPECT_EQ(timeline.phase(t0 + 10s), Phase::flushing);
  EXPECT_EQ(timeline.advance(t0 + 6s), std::nullopt) << "no second `draining`";
}

// A connection to admit, and its peer's end, which tells when admission closed it.
struct Candidate {
  unique_fd connection;
  unique_fd peer;
};

Candidate candidate() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

bool closed_behind(int peer) {
  char c;
  return ::recv(peer, &c, 1, MSG_DONTWAIT) == 0;
}

struct Counts {
  std::uint64_t accepted;
  std::uint64_t rejected;
  std::int64_t active;
  friend bool operator==(const Counts&, const Counts&) = default;
  friend std::ostream& operator<<(std::ostream& os, const Counts& c) {
    return os << "accepted=" << c.accepted << " rejected=" << c.rejected << " active=" << c.active;
  }
};

// --max-connections 2, --max-per-ip off (so a socketpair, which has no IP peer, will do).
class AdmissionTest : public ::testing::Test {
 protected:
  [[nodiscard]] Counts counts() const {
    return {stats_.accepted.load(), stats_.rejected.load(), stats_.active.load()};
  }
  std::optional<AdmittedConnection> admit(Candidate& c) {
    return admission_.admit(std::move(c.connection));
  }

  SharedStats shared_;
  Stats& stats_ = shared_.get();
  PeerLimit peers_{0, 16};
  Admission admission_{2, stats_, peers_};
};

TEST_F(AdmissionTest, CountsAcceptedAndActiveUntilTheTicketDies) {
  Candidate c = candidate();
  const int number = c.connection.get();
  auto admitted = admit(c);
  ASSERT_TRUE(admitted);
  EXPECT_EQ(admitted->fd.get(), number);
  EXPECT_TRUE(admitted->ticket);
  EXPECT_EQ(counts(), (Counts{1, 0, 1}));
  EXPECT_EQ(admission_.held(), 1u);
  admitted.reset();
  EXPECT_EQ(counts(), (Counts{1, 0, 0}));
  EXPECT_TRUE(closed_behind(c.peer.get()));
}

TEST_F(AdmissionTest, RefusesPastMaxConnectionsAndClosesTheConnection) {
  Candidate a = candidate(), b = candidate(), c = candidate(), d = candidate();
  auto first = admit(a);
  auto second = admit(b);
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(admit(c)) << "--max-connections is 2";
  EXPECT_EQ(counts(), (Counts{2, 1, 2}));
  EXPECT_TRUE(closed_behind(c.peer.get())) << "refused means closed";
  EXPECT_FALSE(closed_behind(a.peer.get()));
  first.reset();  // a slot comes free
  EXPECT_TRUE(admit(d));
  EXPECT_EQ(counts(), (Counts{3, 1, 1}));  // admitted, then its ticket died with the temporary
}

TEST_F(AdmissionTest, RejectClosesAndCounts) {
  Candidate a = candidate();
  admission_.reject(std::move(a.connection));
  EXPECT_EQ(counts(), (Counts{0, 1, 0}));
  EXPECT_TRUE(closed_behind(a.peer.get()));
}

TEST_F(AdmissionTest, RefuseMovesTheCountFromAcceptedToRejected) {
  Candidate a = candidate();
  auto admitted = admit(a);
  ASSERT_TRUE(admitted);
  admitted->ticket.refuse(std::move(admitted->fd));
  EXPECT_EQ(counts(), (Counts{0, 1, 0}));
  EXPECT_TRUE(closed_behind(a.peer.get()));
  EXPECT_FALSE(admitted->ticket) << "a refused ticket holds nothing";
  admitted.reset();
  EXPECT_EQ(counts(), (Counts{0, 1, 0})) << "nothing given back twice";
}

TEST_F(AdmissionTest, AMovedTicketGivesItsSlotBackOnce) {
  Candidate a = candidate(), b = candidate();
  auto first = admit(a);
  auto second = admit(b);
  ASSERT_TRUE(first && second);
  AdmissionTicket moved = std::move(first->ticket);
  EXPECT_FALSE(first->ticket);
  EXPECT_TRUE(moved);
  first.reset();
  EXPECT_EQ(counts().active, 2) << "the moved-from ticket held nothing";
  moved = std::move(second->ticket);  // assigning over a ticket gives the old one's slot back
  EXPECT_EQ(counts().active, 1);
  second.reset();
  EXPECT_EQ(counts().active, 1);
  moved = AdmissionTicket{};
  EXPECT_EQ(counts(), (Counts{2, 0, 0}));
}

TEST_F(AdmissionTest, LeaveToParentMakesTheChildsCopyDoNothing) {
  std::atomic<std::int64_t> held{0};
  admission_.count_held_in(&held);
  Candidate a = candidate();
  auto admitted = admit(a);
  ASSERT_TRUE(admitted);
  admitted->ticket.leave_to_parent();
  EXPECT_FALSE(admitted->ticket);
  admitted.reset();
  EXPECT_EQ(counts(), (Counts{1, 0, 1})) << "the parent gives the slot back when it reaps";
  EXPECT_EQ(held.load(), 1);
}

TEST_F(AdmissionTest, CountHeldInCountsEveryLiveTicket) {
  std::atomic<std::int64_t> held{0};
  admission_.count_held_in(&held);
  Candidate a = candidate(), b = candidate(), c = candidate();
  auto first = admit(a);
  auto second = admit(b);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(held.load(), 2);
  EXPECT_FALSE(admit(c));
  EXPECT_EQ(held.load(), 2) << "a refused connection is not held";
  first.reset();
  EXPECT_EQ(held.load(), 1);
  second->ticket.refuse(std::move(second->fd));
  EXPECT_EQ(held.load(), 0);
}

// --max-per-ip needs an IP peer (getpeername): admission over real loopback TCP connections.
struct PerIpGate {
  PerIpGate(std::size_t max_per_ip, std::size_t max_connections)
      : peers(max_per_ip, 16), admission(max_connections, shared.get(), peers) {}
  std::optional<AdmittedConnection> admit_from(const char* source) {
    return admission.admit(net.accept_from(source));
  }

  SharedStats shared;
  PeerLimit peers;
  Admission admission;
  LoopbackListener net;
};

const PeerAddress kLocal = ipv4(127, 0, 0, 1);

TEST(AdmissionPerIp, ThePlaceIsGivenBackWhenTheTicketDies) {
  PerIpGate gate(1, 8);
  auto first = gate.admit_from("127.0.0.1");
  ASSERT_TRUE(first);
  EXPECT_EQ(gate.peers.count(kLocal), 1u);
  LoopbackPair second = gate.net.connect_from("127.0.0.1");
  EXPECT_FALSE(gate.admission.admit(std::move(second.accepted))) << "--max-per-ip is 1";
  EXPECT_EQ(wait_for_close(second.client.get()), PeerEnd::closed);
  EXPECT_EQ(gate.shared.get().rejected.load(), 1u);
  first.reset();
  EXPECT_EQ(gate.peers.count(kLocal), 0u);
  EXPECT_TRUE(gate.admit_from("127.0.0.1"));
}

TEST(AdmissionPerIp, RefuseGivesThePlaceBackAtOnce) {
  PerIpGate gate(1, 8);
  auto admitted = gate.admit_from("127.0.0.1");
  ASSERT_TRUE(admitted);
  admitted->ticket.refuse(std::move(admitted->fd));
  EXPECT_EQ(gate.peers.count(kLocal), 0u) << "while the refused ticket still exists";
  EXPECT_TRUE(gate.admit_from("127.0.0.1"));
}

TEST(AdmissionPerIp, LeaveToParentKeepsThePlaceForTheParent) {
  PerIpGate gate(1, 8);
  auto admitted = gate.admit_from("127.0.0.1");
  ASSERT_TRUE(admitted);
  admitted->ticket.leave_to_parent();
  admitted.reset();
  EXPECT_EQ(gate.peers.count(kLocal), 1u) << "the parent gives it back when it reaps";
}

TEST(AdmissionPerIp, RefusedForMaxConnectionsTheConnectionKeepsNoPlace) {
  PerIpGate gate(5, 1);
  auto first = gate.admit_from("127.0.0.1");
  ASSERT_TRUE(first);
  EXPECT_FALSE(gate.admit_from("127.0.0.2")) << "--max-connections is 1";
  EXPECT_EQ(gate.peers.count(ipv4(127, 0, 0, 2)), 0u);
  EXPECT_EQ(gate.peers.count(kLocal), 1u);
}

}  // namespace
}  // namespace polyecho::test
