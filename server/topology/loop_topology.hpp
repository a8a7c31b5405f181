#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "lifecycle/backend.hpp"
#include "lifecycle/connection_source.hpp"
#include "topology/inbox.hpp"

namespace polyecho {

// The topology axis for the event-loop models (reactors, fiber, uring, asio-coro): how new
// connections reach a model's N loops, chosen with --acceptor. A model builds its loops, gives
// each the source this object made for it, and runs them through run(); it never knows which
// topology it is in. docs/TOPOLOGIES.md maps the modes to the servers that use them.
//  - reuseport: loop 0 keeps the listener the core bound, the others bind SO_REUSEPORT siblings;
//    the kernel hashes each connection to one listener. No shared queue, no herd, but no
//    balancing by load either.
//  - shared: one listener, a dup in every loop, watched with EPOLLEXCLUSIVE (kExclusive) so
//    one loop wakes per connection; the accept queue is shared, so an idle loop takes work.
//  - main: one acceptor (a poll loop on the calling thread, which also keeps the stop signals)
//    accepts, admits, and hands each connection to the loops round-robin through their
//    bounded Inbox; a full inbox is skipped, and with every inbox full the connection is
//    refused. Round-robin, as muduo and Netty do: O(1), and the acceptor reads nothing the
//    loops write, so no cache line bounces; least-connections would need every loop to publish
//    its count, and only pays when connection lifetimes are very uneven.
//  - In a worker process of --processes under main, the master already chose the process: the
//    loops share the process's channel (ChannelSource) whatever --acceptor says.
// Built on the calling thread, before any loop thread, so setup failures are reported there.
class LoopTopology {
 public:
  LoopTopology(ServerContext& context, unsigned loops, AcceptorMode model_default);
  ~LoopTopology();
  LoopTopology(const LoopTopology&) = delete;
  LoopTopology& operator=(const LoopTopology&) = delete;

  // Loop `loop`'s source; each is taken once, before run().
  [[nodiscard]] std::unique_ptr<ConnectionSource> source(unsigned loop);
  // Runs the loops to completion as run_loop_threads() does (the exit code is its), with the
  // main acceptor on the calling thread when there is one; loop 0 runs there otherwise.
  int run(const std::function<void(std::size_t loop)>& run_loop);

 private:
  void run_main_acceptor();

  ServerContext& context_;
  std::vector<std::unique_ptr<Inbox>> inboxes_;             // main only; outlive the loops' sources
  std::vector<std::unique_ptr<ConnectionSource>> sources_;  // by loop; taken by source()
};

// --acceptor, or `model_default` when it was not given.
[[nodiscard]] AcceptorMode resolve_acceptor(const ServerConfig& config,
                                            AcceptorMode model_default) noexcept;

// For Backend::adjust_listener: SO_REUSEPORT on the listener the core binds when siblings will
// bind the same port (reuseport with several loops, or several worker processes).
void adjust_for_topology(ListenerOptions& options, const ServerConfig& config,
                         AcceptorMode model_default, unsigned loops) noexcept;

}  // namespace polyecho
