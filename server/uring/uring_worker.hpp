#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <vector>

#include "lifecycle/admission.hpp"
#include "lifecycle/backend.hpp"
#include "lifecycle/connection_source.hpp"
#include "lifecycle/drain_timeline.hpp"
#include "lifecycle/thread_affinity.hpp"
#include "polyecho/session.hpp"
#include "relay/stream_relay.hpp"
#include "uring/buffer_ring.hpp"
#include "uring/ring.hpp"

namespace polyecho::uring {

using Clock = std::chrono::steady_clock;

// One accepted connection. Owned by its worker's lists; freed only when `inflight` is zero,
// because the kernel still holds its address in the user_data of every pending operation.
// 16-aligned: the operation tag takes the low 4 bits of its address (see Op).
struct alignas(16) Connection {
  Connection(AdmittedConnection admitted, const ProtocolConfig& protocol)
      : fd(std::move(admitted.fd)), ticket(std::move(admitted.ticket)), session(protocol) {}

  unique_fd fd;
  AdmissionTicket ticket;  // given back when the Connection is freed, before the close
  Session session;
  std::list<Connection>::iterator self;  // position in open_ (idle order) or closing_
  Clock::time_point last_active;
  // Bytes copied into the Session's tail while a send was in flight, reported to it once the
  // send completes (see uring_connection.cpp).
  std::size_t staged = 0;
  ProvidedBufferRing* recv_pool = nullptr;  // the pool the recv in flight takes a buffer from
  std::size_t last_recv = 0;  // bytes the latest recv brought: sizes the room kept for the next
  unsigned inflight = 0;      // operations whose final CQE has not arrived yet
  bool recv_armed = false;
  // The recv in flight writes straight into the Session's tail (a stream, or a ring without
  // provided buffers): until it completes the buffer must not slide, grow, rewind or go back
  // to the pool.
  bool recv_direct = false;
  bool send_armed = false;  // at most one send in flight: bytes leave in order
  // A raw stream relayed through a kernel pipe (see relay() in uring_connection.cpp): the
  // socket is non-blocking meanwhile, no recv or send is armed, and a poll in the ring says
  // when to splice.
  bool relaying = false;
  bool poll_armed = false;
  bool cancel_pending = false;
  bool work_armed = false;  // --work wait: the first pending message's timeout is in flight
  bool starved = false;     // a recv found the pool empty (-ENOBUFS); re-armed after the batch
  bool peer_eof = false;    // the peer's EOF arrived, or the drain deadline cut our input
  bool closing = false;
  StreamRelay relay;  // holds a pipe only while relayed bytes wait in it
};

// What a CQE completes: a Connection's address with the operation in its low bits (the
// address is 16-aligned), or a null address for the worker's own operations.
enum Op : std::uint64_t {
  kRecv = 1,
  kSend = 2,
  kCancel = 3,
  kAccept = 4,
  kTimer = 5,
  kStop = 6,
  kLoopCancel = 7,
  kWork = 8,  // a connection's --work wait (an IORING_OP_TIMEOUT)
  kPoll = 9,  // a relayed stream's wait for its socket (readable, or writable)
};
constexpr std::uint64_t kOpMask = 15;
static_assert(alignof(Connection) > kOpMask, "operation tags live in the low bits of the address");
inline std::uint64_t tag(const Connection* c, Op op) {
  return reinterpret_cast<std::uint64_t>(c) | op;
}

// One ring, one connection source, one thread: accepts, echoes through Session, times out idle
// connections and drains on stop. Everything here runs on the worker's thread.
// When the source is a listener, the kernel accepts (multishot accept); any other source (a
// main acceptor's inbox, a master's channel) is polled through the ring and taken from here.
class UringWorker {
 public:
  UringWorker(ServerContext& context, std::unique_ptr<ConnectionSource> source);
  UringWorker(const UringWorker&) = delete;
  UringWorker& operator=(const UringWorker&) = delete;
  ~UringWorker();

  void run();

 private:
  // Loop level (uring_worker.cpp).
  void handle(const Completion& completion);
  void arm_accept();
  void on_accept(int result, std::uint32_t flags);
  void take_from_source(bool rearm);
  void start(ConnectionSource::Taken taken);
  void arm_timer();
  void on_tick();
  void begin_stop();
  void cancel(std::uint64_t user_data);
  [[nodiscard]] bool finished() const;

  // Connection level (uring_connection.cpp).
  void on_recv(Connection& c, int result, std::uint32_t flags);
  void on_send(Connection& c, int result);
  void on_cancelled(Connection& c);
  void progress(Connection& c);
  void deliver(Connection& c, const char* bytes, std::size_t n);
  void arm_recv(Connection& c);
  // A raw stream: its recvs read straight into its Session, not through the pool.
  [[nodiscard]] bool reads_in_place(const Connection& c) const;
  void arm_send(Connection& c);
  // Relayed raw streams (--splice).
  [[nodiscard]] bool relays(const Connection& c) const;
  void relay(Connection& c);
  void set_relaying(Connection& c, bool on);
  void arm_poll(Connection& c, unsigned mask);
  void on_poll(Connection& c, int result);
  void touch(Connection& c);
  void stop_reading(Connection& c);
  void close_connection(Connection& c, int error);
  void free_if_done(Connection& c);
  void rearm_starved();

  // Per-message work, --work (uring_work.cpp).
  void start_work(Connection& c);
  void on_work_done(Connection& c);

  ServerContext& context_;
  const ServerConfig& config_;
  std::unique_ptr<ConnectionSource> source_;  // null once the stop let go of it
  LoopStats* loop_stats_;                     // the source's, kept past it; may be null
  bool kernel_accepts_;                       // the source is a listener: multishot accept
  bool relay_streams_;                        // --splice and no --work: see relays()
  Ring ring_;
  // Provided buffers in two size classes; both absent on kernels without buffer rings.
  std::optional<ProvidedBufferRing> small_pool_;
  std::optional<ProvidedBufferRing> bulk_pool_;
  std::list<Connection> open_;     // least recently active first: the idle timeout's order
  std::list<Connection> closing_;  // closed, waiting for their last completions
  // Connections whose recv found every pool buffer taken (-ENOBUFS), oldest first; see
  // rearm_starved().
  std::vector<Connection*> starved_;
  Clock::time_point now_;

  unsigned loop_ops_ = 0;  // accept, timer, stop poll and their cancels
  bool accept_armed_ = false;
  bool accept_ended_ = false;  // the listener was shut down: never re-armed
  bool timer_armed_ = false;
  bool timer_cancelled_ = false;
  DrainTimeline drain_;
  ThreadAffinity loop_thread_;  // bound in run(): every member is this thread's alone
  std::optional<Clock::time_point> accept_paused_until_;
  std::uint64_t accept_backoffs_ = 0;  // EMFILE/ENFILE backoffs in the current burst
  __kernel_timespec tick_{};
  __kernel_timespec work_wait_{};  // --work wait: every wait is this long (read at submission)
};

}  // namespace polyecho::uring
