// Scale-out without containers: three polyecho-server replicas on loopback, each running a
// different model, behind Debian's haproxy configured from docker/haproxy.cfg (the compose
// file's load balancer) with its DNS discovery block replaced by static server lines.
//
// HAProxy listens on a socket this test binds to port 0 and hands over as fd@N, and every wait
// is on something HAProxy or a server reports (admin socket answers, check results, EOF,
// process exit), bounded by the suite's safety timeout.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "polyecho/endpoint.hpp"
#include "polyecho/socket_ops.hpp"
#include "support/backend_cases.hpp"
#include "support/server_process.hpp"
#include "support/test_socket.hpp"

namespace polyecho::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Keeps `config` but swaps the body of each "# >>> NAME" ... "# <<< NAME" block named in
// `blocks` (the markers stay, as comments).
std::string substitute_blocks(const std::string& config,
                              const std::map<std::string, std::string>& blocks) {
  std::istringstream in(config);
  std::string out;
  std::string line;
  bool skipping = false;
  while (std::getline(in, line)) {
    if (line.rfind("# >>> ", 0) == 0) {
      const auto found = blocks.find(line.substr(6));
      if (found != blocks.end()) {
        out += line + "\n" + found->second;
        skipping = true;
        continue;
      }
    }
    if (line.rfind("# <<< ", 0) == 0) skipping = false;
    if (!skipping) out += line + "\n";
  }
  return out;
}

// Polls `done` until it holds or the safety timeout passes. Used only where the condition
// lives in another process that offers no notification (HAProxy's check results); the short
// pause between polls paces the polling, it does not order events.
bool wait_until(const std::function<bool()>& done) {
  const auto deadline = Clock::now() + kSafetyTimeout;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

struct ReplicaState {
  std::string status;        // UP, DOWN, ...
  std::string check_status;  // L7OK once a health check passed
};

// haproxy -db (foreground) as a child of the test. Owns the process (SIGKILLed and reaped by
// the destructor) and its scratch directory (config, admin socket, log).
class Haproxy {
 public:
  static std::unique_ptr<Haproxy> start(const std::vector<std::uint16_t>& replica_ports) {
    auto proxy = std::unique_ptr<Haproxy>(new Haproxy());
    char dir[] = "/tmp/polyecho-scaleout-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    proxy->dir_ = dir;

    std::string servers;
    for (std::size_t i = 0; i < replica_ports.size(); ++i) {
      servers +=
          "    server " + replica_name(i) + " 127.0.0.1:" + std::to_string(replica_ports[i]) + "\n";
    }
    const std::string config = substitute_blocks(read_file(POLYECHO_HAPROXY_CONFIG),
                                                 {{"servers", servers}, {"resolvers", ""}});
    std::ofstream(proxy->path("haproxy.cfg")) << config;

    // Bound here on port 0 and inherited by HAProxy: no guessing at a free port.
    unique_fd listener = make_listener(resolve_endpoint("127.0.0.1", 0), ListenerOptions{});
    proxy->port_ = local_endpoint(listener.get()).port();

    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e) env_text.emplace_back(*e);
    env_text.push_back("POLYECHO_LB_BIND=fd@" + std::to_string(listener.get()));
    env_text.push_back("POLYECHO_LB_STATS_SOCKET=" + proxy->path("admin.sock"));
    env_text.push_back("POLYECHO_LB_CHECK_INTER=100ms");
    std::vector<char*> envp;
    envp.reserve(env_text.size() + 1);
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string binary = ::access("/usr/sbin/haproxy", X_OK) == 0 ? "/usr/sbin/haproxy" : "haproxy";
    std::string config_path = proxy->path("haproxy.cfg");
    std::vector<char*> argv{binary.data(), const_cast<char*>("-db"), const_cast<char*>("-f"),
                            config_path.data(), nullptr};
    const int log_fd =
        ::open(proxy->path("haproxy.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

    // Everything is prepared before fork: after it, only async-signal-safe calls.
    proxy->pid_ = ::fork();
    if (proxy->pid_ == 0) {
      ::fcntl(listener.get(), F_SETFD, 0);  // the one fd HAProxy inherits
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      ::execvpe(argv[0], argv.data(), envp.data());
      constexpr char kMissing[] = "cannot run haproxy (scripts/setup installs it)\n";
      [[maybe_unused]] auto written = ::write(STDERR_FILENO, kMissing, sizeof kMissing - 1);
      ::_exit(127);
    }
    ::close(log_fd);
    if (proxy->pid_ < 0) throw std::runtime_error("fork failed");
    return proxy;
  }

  ~Haproxy() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (const char* file : {"haproxy.cfg", "admin.sock", "haproxy.log"})
      ::unlink(path(file).c_str());
    ::rmdir(dir_.c_str());
  }
  Haproxy(const Haproxy&) = delete;
  Haproxy& operator=(const Haproxy&) = delete;

  static std::string replica_name(std::size_t index) {
    return "replica" + std::to_string(index + 1);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string log() const { return read_file(path("haproxy.log")); }

  // One admin-socket command; empty when HAProxy is not (yet) answering.
  [[nodiscard]] std::string command(const std::string& line) const {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string socket_path = path("admin.sock");
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path.c_str());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return {};
    if (!send_text(fd.get(), line + "\n")) return {};
    return recv_until_eof(fd.get());
  }

  // Each replica's state from "show stat" (CSV with a "# pxname,svname,..." header).
  [[nodiscard]] std::map<std::string, ReplicaState> replicas() const {
    std::istringstream csv(command("show stat"));
    std::string line;
    std::map<std::string, std::size_t> column;
    std::map<std::string, ReplicaState> states;
    while (std::getline(csv, line)) {
      std::vector<std::string> fields;
      std::istringstream row(line.rfind("# ", 0) == 0 ? line.substr(2) : line);
      for (std::string field; std::getline(row, field, ',');) fields.push_back(field);
      if (line.rfind("# ", 0) == 0) {
        for (std::size_t i = 0; i < fields.size(); ++i) column[fields[i]] = i;
        continue;
      }
      if (column.empty() || fields.size() <= column["check_status"] || fields[0] != "replicas")
        continue;
      if (fields[1] == "BACKEND") continue;
      states[fields[1]] = {fields[column["status"]], fields[column["check_status"]]};
    }
    return states;
  }

  // Which replica each proxied client connection reached, keyed by the client's local port
  // (from "show sess": "... src=127.0.0.1:PORT fe=echo be=replicas srv=NAME ...").
  [[nodiscard]] std::map<std::uint16_t, std::string> replica_by_client_port() const {
    std::istringstream sessions(command("show sess"));
    std::map<std::uint16_t, std::string> result;
    for (std::string line; std::getline(sessions, line);) {
      const auto src = line.find(" src=");
      const auto srv = line.find(" srv=");
      if (src == std::string::npos || srv == std::string::npos) continue;
      const auto colon = line.find(':', src);
      const auto port = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
      result[port] = line.substr(srv + 5, line.find(' ', srv + 5) - (srv + 5));
    }
    return result;
  }

 private:
  Haproxy() = default;
  [[nodiscard]] std::string path(const char* file) const { return dir_ + "/" + file; }

  pid_t pid_ = -1;
  std::string dir_;
  std::uint16_t port_ = 0;
};

// Three different models that serve concurrently (an iterative replica would stall HAProxy's
// echo check behind a held connection). Fewer than three such models: they repeat.
std::vector<std::string> replica_backends() {
  std::vector<std::string> names;
  for (const auto& c : all_backend_cases()) {
    if (c.serves_concurrently && std::find(names.begin(), names.end(), c.backend) == names.end()) {
      names.push_back(c.backend);
    }
  }
  if (names.empty()) throw std::runtime_error("no concurrent backend is registered");
  std::vector<std::string> three;
  for (std::size_t i = 0; i < 3; ++i) three.push_back(names[i % names.size()]);
  return three;
}

bool echoes(int fd, const std::string& message) {
  return send_text(fd, message) && recv_exact(fd, message.size()) == message;
}

// Runs a shell command and returns its stdout.
std::string run_output(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  std::string output;
  char chunk[4096];
  for (std::size_t n; pipe && (n = std::fread(chunk, 1, sizeof chunk, pipe.get())) > 0;)
    output.append(chunk, n);
  return output;
}

std::uint16_t local_port(int fd) {
  return local_endpoint(fd).port();
}

class ScaleOut : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& backend : replica_backends()) {
      auto server = ServerProcess::start({"--backend", backend});
      ASSERT_NE(server, nullptr) << backend;
      ports_.push_back(server->port());
      replicas_.push_back(std::move(server));
    }
    proxy_ = Haproxy::start(ports_);
    // Ready means every replica passed an echo health check, seen on the admin socket.
    const bool healthy = wait_until([&] {
      const auto states = proxy_->replicas();
      return states.size() == replicas_.size() &&
             std::all_of(states.begin(), states.end(),
                         [](const auto& s) { return s.second.check_status == "L7OK"; });
    });
    ASSERT_TRUE(healthy) << "HAProxy never saw every replica healthy; its log:\n" << proxy_->log();
  }

  // SIGTERM and the stats line of every replica still running; empty for a killed one.
  std::vector<std::string> stop_replicas() {
    std::vector<std::string> lines;
    for (auto& server : replicas_) {
      if (!server) {
        lines.emplace_back();
        continue;
      }
      server->signal(SIGTERM);
      EXPECT_EQ(server->wait_exit(kSafetyTimeout), 0) << server->listening_line();
      lines.push_back(server->remaining_stdout());
    }
    return lines;
  }

  std::vector<std::unique_ptr<ServerProcess>> replicas_;
  std::vector<std::uint16_t> ports_;
  std::unique_ptr<Haproxy> proxy_;
};

TEST_F(ScaleOut, EveryReplicaServesTrafficThroughHaproxyWithoutErrors) {
  constexpr int kClients = 6;
  constexpr int kConnectionsEach = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int id = 0; id < kClients; ++id) {
    clients.emplace_back([&, id] {
      for (int n = 0; n < kConnectionsEach; ++n) {
        auto fd = connect_loopback(proxy_->port());
        for (int round = 0; round < 3; ++round) {
          const auto seed = static_cast<std::uint32_t>((id * kConnectionsEach + n) * 3 + round);
          if (!echoes(fd.get(), random_bytes(1000, seed))) {
            ++failures;
            break;
          }
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);

  // The load client, once polyecho-client has it: same zero-error requirement.
  const std::string client = client_binary();
  if (run_output(client + " --help").find("\n  bench") != std::string::npos) {
    const std::string command = client + " --host 127.0.0.1 --port " +
                                std::to_string(proxy_->port()) +
                                " bench --connections 6 --duration 1 --json";
    const std::string output = run_output(command);
    ASSERT_NE(output.find('{'), std::string::npos) << output;
    const auto report = nlohmann::json::parse(output.substr(output.find('{')), nullptr, false);
    ASSERT_FALSE(report.is_discarded()) << output;
    // "errors" is a count, or an object of counts with a "total".
    const auto& errors = report.at("errors");
    EXPECT_EQ(errors.is_object() ? errors.at("total") : errors, 0) << output;
  }

  // Health checks connect but send no payload of ours beyond "health\n" (7 bytes each), so
  // bytes_in well above what the checks could send proves client traffic reached a replica.
  const auto lines = stop_replicas();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto at = lines[i].find("bytes_in=");
    ASSERT_NE(at, std::string::npos) << lines[i];
    EXPECT_GE(std::stoull(lines[i].substr(at + 9)), 1000u * 3 * 5)
        << replicas_[i]->listening_line();
  }
}

TEST_F(ScaleOut, KilledReplicaLosesOnlyItsConnectionsAndIsTakenOut) {
  // Held connections, spread round-robin; each has echoed once, so it reached its replica.
  std::vector<unique_fd> held;
  for (int i = 0; i < 6; ++i) {
    held.push_back(connect_loopback(proxy_->port()));
    ASSERT_TRUE(echoes(held.back().get(), "hello " + std::to_string(i) + "\n"));
  }
  const auto placement = proxy_->replica_by_client_port();
  std::map<std::string, int> per_replica;
  for (const auto& fd : held) {
    ASSERT_TRUE(placement.count(local_port(fd.get()))) << proxy_->command("show sess");
    ++per_replica[placement.at(local_port(fd.get()))];
  }
  ASSERT_EQ(per_replica.size(), replicas_.size()) << "round-robin should reach every replica";

  constexpr std::size_t kVictim = 1;
  const std::string victim = Haproxy::replica_name(kVictim);
  replicas_[kVictim]->signal(SIGKILL);
  EXPECT_EQ(replicas_[kVictim]->wait_exit(kSafetyTimeout), 128 + SIGKILL);

  for (const auto& fd : held) {
    if (placement.at(local_port(fd.get())) == victim) {
      const PeerEnd end = wait_for_close(fd.get());
      EXPECT_TRUE(end == PeerEnd::closed || end == PeerEnd::reset)
          << "victim's connection stayed open";
    } else {
      EXPECT_TRUE(echoes(fd.get(), "still here\n")) << "a surviving replica's connection broke";
    }
  }

  const bool taken_out =
      wait_until([&] { return proxy_->replicas()[victim].status.rfind("DOWN", 0) == 0; });
  ASSERT_TRUE(taken_out) << proxy_->command("show stat");
  for (int i = 0; i < 12; ++i) {
    auto fd = connect_loopback(proxy_->port());
    EXPECT_TRUE(echoes(fd.get(), "after " + std::to_string(i) + "\n")) << "new connection " << i;
  }

  held.clear();                // closed, so the survivors have nothing to drain
  replicas_[kVictim].reset();  // already reaped by wait_exit
  stop_replicas();
}

}  // namespace
}  // namespace polyecho::test
