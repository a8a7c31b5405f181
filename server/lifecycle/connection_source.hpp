#pragma once

#include "lifecycle/admission.hpp"
#include "polyecho/acceptor.hpp"
#include "polyecho/stats.hpp"
#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Where one event loop's new connections come from, whatever the topology (docs/TOPOLOGIES.md):
//  - its own listener (SO_REUSEPORT siblings, or the only loop): ListenerSource;
//  - a listener it shares with sibling loops, each watching its own dup: ListenerSource, shared;
//  - the inbox a main acceptor fills (the muduo/Netty main-sub shape): topology/inbox.hpp;
//  - in a worker process, the channel its master passes connections on:
//  topology/channel_source.hpp.
// The loop only watches fd() for readability and, when it is readable, calls take() until it
// says would_block. So the topology is a choice of source, and no loop knows which it has.
// Every connection a source yields has passed the shared Admission already, and is
// non-blocking; it is counted in this loop's LoopStats.
// One source per loop, used on that loop's thread only.
class ConnectionSource {
 public:
  enum class Status {
    admitted,     // `connection` holds one
    skipped,      // one connection went (shed for descriptors, refused by admission): take again
    would_block,  // nothing now: wait for fd() to be readable
    exhausted,    // not even a descriptor to shed one with: stop watching fd() for kBackoff
    ended,        // the source is gone (listener shut down, master gone): stop watching it
  };
  struct Taken {
    Status status;
    AdmittedConnection connection;
  };
  static constexpr auto kBackoff = Acceptor::kExhaustedBackoff;

  virtual ~ConnectionSource() = default;
  ConnectionSource(const ConnectionSource&) = delete;
  ConnectionSource& operator=(const ConnectionSource&) = delete;

  [[nodiscard]] virtual int fd() const noexcept = 0;
  // Sibling loops watch the same file: watch fd() with kExclusive as well as kReadable (epoll
  // then wakes one of them per connection instead of all).
  [[nodiscard]] virtual bool shared() const noexcept = 0;
  [[nodiscard]] virtual Taken take() = 0;
  // The listening socket when this source is one, for a model whose kernel accepts for it
  // (io_uring's multishot accept); -1 otherwise.
  [[nodiscard]] virtual int listener() const noexcept { return -1; }
  // Connections that are already accepted wait inside (an inbox, a channel): at stop the loop
  // takes them before it lets go of the source, so nothing accepted is lost. A listener's
  // backlog is not ours yet: closing the listener refuses it.
  [[nodiscard]] virtual bool holds_accepted() const noexcept { return false; }

  // For a model whose kernel accepted the connection (listener() above): the same admission and
  // counting as take(), so the loop never admits by itself.
  [[nodiscard]] Taken admit(unique_fd connection);

  // This loop's counters in Stats (null beyond Stats::kMaxLoops): the loop adds its waits.
  [[nodiscard]] LoopStats* loop_stats() const noexcept { return loop_; }

 protected:
  ConnectionSource(Admission& admission, LoopStats* loop) noexcept
      : admission_(admission), loop_(loop) {}
  [[nodiscard]] Admission& admission() const noexcept { return admission_; }
  // An admitted connection, counted for this loop: what take() returns when it has one.
  [[nodiscard]] Taken counted(AdmittedConnection connection) noexcept;

 private:
  Admission& admission_;
  LoopStats* loop_;  // this loop's counters in Stats; null beyond Stats::kMaxLoops
};

// Accepts on a listening socket through the shared Acceptor (EINTR, ECONNABORTED, EMFILE
// shedding, one log line per burst) and admits. Owns its descriptor: for a shared listener that
// is this loop's dup, and closing it at stop leaves the socket to the siblings' copies.
class ListenerSource final : public ConnectionSource {
 public:
  // Makes the listener non-blocking (the flag lives on the open file, so dups share it).
  ListenerSource(unique_fd listener, bool shared, Admission& admission, LoopStats* loop);

  [[nodiscard]] int fd() const noexcept override { return listener_.get(); }
  [[nodiscard]] bool shared() const noexcept override { return shared_; }
  [[nodiscard]] Taken take() override;
  [[nodiscard]] int listener() const noexcept override { return listener_.get(); }

 private:
  unique_fd listener_;
  Acceptor acceptor_;
  bool shared_;
};

}  // namespace polyecho
