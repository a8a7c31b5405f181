#pragma once

#include "lifecycle/connection_source.hpp"

namespace polyecho {

// A worker process's side of --processes N --acceptor main: the master accepts and passes each
// connection over this process's SOCK_SEQPACKET channel (SCM_RIGHTS, process/fd_passing.hpp);
// every loop of the process watches its own dup of the channel, one woken per connection when
// there are several. The worker admits what it receives (tickets cannot cross processes), so
// --max-connections and --max-per-ip are checked against the shared counts, as everywhere.
class ChannelSource final : public ConnectionSource {
 public:
  ChannelSource(unique_fd channel, bool shared, Admission& admission, LoopStats* loop);

  [[nodiscard]] int fd() const noexcept override { return channel_.get(); }
  [[nodiscard]] bool shared() const noexcept override { return shared_; }
  [[nodiscard]] Taken take() override;
  [[nodiscard]] bool holds_accepted() const noexcept override { return true; }

 private:
  unique_fd channel_;
  bool shared_;
  bool shedding_ = false;  // out of descriptors: connections received are being lost
};

}  // namespace polyecho
