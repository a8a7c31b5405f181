#include "topology/loop_topology.hpp"

#include <algorithm>

#include "blocking/accept_loop.hpp"
#include "lifecycle/threads.hpp"
#include "topology/channel_source.hpp"

namespace polyecho {

AcceptorMode resolve_acceptor(const ServerConfig& config, AcceptorMode model_default) noexcept {
  return config.acceptor == AcceptorMode::model_default ? model_default : config.acceptor;
}

void adjust_for_topology(ListenerOptions& options, const ServerConfig& config,
                         AcceptorMode model_default, unsigned loops) noexcept {
  if (resolve_acceptor(config, model_default) == AcceptorMode::reuseport &&
      (loops > 1 || config.processes > 1)) {
    options.reuse_port = true;
  }
}

LoopTopology::LoopTopology(ServerContext& context, unsigned loops, AcceptorMode model_default)
    : context_(context) {
  loops = std::max(loops, 1u);
  Admission& admission = context.admission;
  Stats& stats = context.stats;
  sources_.reserve(loops);
  if (context.channel) {
    // A worker process under --acceptor main: the master picked this process already.
    for (unsigned i = 0; i < loops; ++i) {
      unique_fd channel =
          i + 1 < loops ? dup_listener(context.channel.get()) : std::move(context.channel);
      sources_.push_back(std::make_unique<ChannelSource>(std::move(channel), loops > 1, admission,
                                                         stats.register_loop()));
    }
    return;
  }
  switch (resolve_acceptor(context.config, model_default)) {
    case AcceptorMode::main:
      inboxes_.reserve(loops);
      for (unsigned i = 0; i < loops; ++i) {
        inboxes_.push_back(std::make_unique<Inbox>(context.config.queue_limit));
        sources_.push_back(
            std::make_unique<InboxSource>(*inboxes_.back(), admission, stats.register_loop()));
      }
      break;
    case AcceptorMode::shared: {
      // Worker processes share the listener too: exclusive wakeups even with one loop each.
      const bool shared = loops > 1 || context.config.processes > 1;
      for (unsigned i = 0; i < loops; ++i) {
        unique_fd listener =
            i + 1 < loops ? dup_listener(context.listener.get()) : std::move(context.listener);
        sources_.push_back(std::make_unique<ListenerSource>(std::move(listener), shared, admission,
                                                            stats.register_loop()));
      }
      break;
    }
    case AcceptorMode::model_default:  // resolved above; a model's default is never this
    case AcceptorMode::reuseport: {
      const ListenerOptions sibling{.backlog = context.config.backlog, .reuse_port = true};
      for (unsigned i = 0; i < loops; ++i) {
        unique_fd listener =
            i == 0 ? std::move(context.listener) : make_listener(context.bound, sibling);
        sources_.push_back(std::make_unique<ListenerSource>(std::move(listener), false, admission,
                                                            stats.register_loop()));
      }
      break;
    }
  }
}

LoopTopology::~LoopTopology() = default;

std::unique_ptr<ConnectionSource> LoopTopology::source(unsigned loop) {
  return std::move(sources_.at(loop));
}

int LoopTopology::run(const std::function<void(std::size_t loop)>& run_loop) {
  if (inboxes_.empty()) return run_loop_threads(sources_.size(), run_loop);
  return run_loop_threads(inboxes_.size() + 1, [&](std::size_t i) {
    if (i == 0) {
      run_main_acceptor();
    } else {
      run_loop(i - 1);
    }
  });
}

// The main reactor: accept, admit, hand to the next loop's inbox. Admission happens here, so
// --max-connections refuses exactly the connections beyond the limit in arrival order, and the
// ticket travels with the connection to its loop.
void LoopTopology::run_main_acceptor() {
  BlockingAcceptLoop loop(context_);  // owns the listener and closes it when the stop comes
  loop.accept_nonblocking();
  std::size_t next = 0;
  loop.run([&](unique_fd fd) {
    auto admitted = context_.admission.admit(std::move(fd));
    if (!admitted) return;
    for (std::size_t tried = 0; tried < inboxes_.size(); ++tried) {
      Inbox& inbox = *inboxes_[next];
      next = (next + 1) % inboxes_.size();
      if (inbox.push(*admitted)) return;
    }
    admitted->ticket.refuse(std::move(admitted->fd));  // every loop is full up
  });
}

}  // namespace polyecho
