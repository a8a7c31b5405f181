// leader-follower: the POSA2 Leader/Followers pattern. --workers N threads share ONE epoll
// instance and take turns at it: the leader waits for one event (EPOLLONESHOT), promotes a
// follower to wait for the next, and handles its event itself: accept, or a connection's
// read -> work -> write, then re-arms that fd. A connection is thus served by whichever thread
// happens to lead when it is ready, not by a loop it was assigned to (compare epoll --workers N,
// whose connections stay on the reactor that accepted them). server/reactor/leader_followers.hpp
// has the details.
//
// Default: 4 threads. More threads than this machine's cores would not serve more plain echo
// traffic (one thread leads at a time and the hand-off costs a wake-up per event), but a
// thread busy in --work cpu|block keeps no other connection waiting while another follows:
// four leaves room for a few such stalls without one thread per core on a large machine
// turning every event into a hand-off among many sleepers. Raise it for block-heavy work.
#include "app/backend_registry.hpp"
#include "reactor/leader_followers.hpp"

namespace polyecho {
namespace {

constexpr unsigned kDefaultThreads = 4;

class LeaderFollowerBackend final : public Backend {
 public:
  explicit LeaderFollowerBackend(const ServerConfig& config)
      : threads_(config.workers != 0 ? config.workers : kDefaultThreads) {}

  int run(ServerContext& context) override {
    LeaderFollowers pattern(context, threads_);
    return pattern.run();
  }

 private:
  unsigned threads_;
};

const BackendRegistrar kRegistrar{BackendInfo{
    .name = "leader-follower",
    .description = "Leader/Followers: --workers N threads (default 4) take turns waiting on "
                   "one epoll, EPOLLONESHOT",
    .uses_workers = true,
    .serves_concurrently = true,
    .threaded = true,
    .threads_flag = "--workers",
    .default_rank = -1,  // never the default: a teaching model, below every other
    // The default is 4 threads; 2 is the smallest pool where leadership changes hands.
    .variants = {"--workers 2"},
    .create =
        [](const ServerConfig& config) { return std::make_unique<LeaderFollowerBackend>(config); },
}};

}  // namespace
}  // namespace polyecho
