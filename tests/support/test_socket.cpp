#include "support/test_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <thread>

#include "polyecho/endpoint.hpp"
#include "polyecho/socket_ops.hpp"
#include "support/server_process.hpp"

namespace polyecho::test {

RaisedFdLimit::RaisedFdLimit(rlim_t wanted) {
  if (::getrlimit(RLIMIT_NOFILE, &saved_) != 0) throw_errno("getrlimit");
  rlimit raised = saved_;
  raised.rlim_cur = std::max(saved_.rlim_cur, std::min(wanted, saved_.rlim_max));
  if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) throw_errno("setrlimit");
  reached_ = raised.rlim_cur >= wanted;
}

RaisedFdLimit::~RaisedFdLimit() {
  ::setrlimit(RLIMIT_NOFILE, &saved_);
}

unique_fd connect_loopback(std::uint16_t port, const char* host) {
  unique_fd fd = connect_to(resolve_endpoint(host, port));
  set_io_timeout(fd.get(), kSafetyTimeout);
  return fd;
}

unique_fd connect_loopback_from(std::uint16_t port, const char* source) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  sockaddr_in local{};
  local.sin_family = AF_INET;
  if (::inet_pton(AF_INET, source, &local.sin_addr) != 1) throw_errno("inet_pton", EINVAL);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0)
    throw_errno("bind");
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(port);
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0)
    throw_errno("connect");
  set_io_timeout(fd.get(), kSafetyTimeout);
  return fd;
}

LoopbackListener::LoopbackListener()
    : listener_(make_listener(resolve_endpoint("127.0.0.1", 0), {})),
      port_(local_endpoint(listener_.get()).port()) {}

LoopbackPair LoopbackListener::connect_from(const char* source) {
  LoopbackPair pair;
  pair.client = connect_loopback_from(port_, source);
  pair.accepted.reset(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!pair.accepted) throw_errno("accept4");
  return pair;
}

unique_fd LoopbackListener::accept_from(const char* source) {
  LoopbackPair pair = connect_from(source);
  clients_.push_back(std::move(pair.client));
  return std::move(pair.accepted);
}

bool send_text(int fd, std::string_view bytes) {
  return send_all(fd, {bytes.data(), bytes.size()}) == 0;
}

std::string recv_exact(int fd, std::size_t n) {
  std::string data(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const IoResult r = read_some(fd, {data.data() + got, n - got});
    if (r.bytes <= 0) break;
    got += static_cast<std::size_t>(r.bytes);
  }
  data.resize(got);
  return data;
}

std::string recv_line(int fd) {
  std::string line;
  char c;
  while (read_some(fd, {&c, 1}).bytes == 1) {
    line += c;
    if (c == '\n') break;
  }
  return line;
}

std::string recv_until_eof(int fd) {
  std::string data;
  char chunk[64 * 1024];
  for (;;) {
    const IoResult r = read_some(fd, chunk);
    if (r.bytes <= 0) break;
    data.append(chunk, static_cast<std::size_t>(r.bytes));
  }
  return data;
}

PeerEnd wait_for_close(int fd) {
  char c;
  const IoResult r = read_some(fd, {&c, 1});
  if (r.eof()) return PeerEnd::closed;
  if (r.bytes > 0) return PeerEnd::data;
  if (r.error == ECONNRESET || r.error == EPIPE) return PeerEnd::reset;
  return PeerEnd::timed_out;
}

std::string random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 engine(seed);
  std::string data(n, '\0');
  for (auto& c : data) c = static_cast<char>(engine() & 0xff);
  return data;
}

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string numbered_line(std::size_t n) {
  return "message " + std::to_string(n) + "\n";
}

double one_line_each(std::uint16_t port, std::size_t n) {
  std::vector<unique_fd> clients;
  clients.reserve(n);
  for (std::size_t i = 0; i < n; ++i) clients.push_back(connect_loopback(port));
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) {
    if (!send_text(clients[i].get(), numbered_line(i))) return -1;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (recv_line(clients[i].get()) != numbered_line(i)) return -1;
  }
  return seconds_since(start);
}

std::string echo_while_sending(int fd, std::string_view payload, bool& sent_ok) {
  sent_ok = false;
  std::thread writer([&] { sent_ok = send_text(fd, payload); });
  std::string echoed = recv_exact(fd, payload.size());
  writer.join();
  return echoed;
}

}  // namespace polyecho::test
