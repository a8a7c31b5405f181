#include "support/server_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace polyecho::test {

std::string server_binary() {
  return POLYECHO_SERVER_BIN;
}
std::string client_binary() {
  return POLYECHO_CLIENT_BIN;
}

namespace {

struct Spawned {
  pid_t pid;
  int stdout_fd;
  std::string stderr_path;
};

Spawned spawn(const std::vector<std::string>& command) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  char path_template[] = "/tmp/polyecho-test-stderr-XXXXXX";
  const int err_fd = ::mkostemp(path_template, O_CLOEXEC);
  if (err_fd < 0) throw std::runtime_error("mkostemp failed");
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> argv;
  argv.reserve(command.size() + 1);
  for (const auto& word : command) argv.push_back(const_cast<char*>(word.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err_fd);
  return {pid, out[0], path_template};
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::unique_ptr<ServerProcess> ServerProcess::start(const std::vector<std::string>& args,
                                                    Options options) {
  std::vector<std::string> command;
  if (options.nofile_limit) {
    options.prlimit_args.push_back("--nofile=" + std::to_string(*options.nofile_limit) + ":" +
                                   std::to_string(*options.nofile_limit));
  }
  if (!options.prlimit_args.empty()) {
    command = {"prlimit"};
    command.insert(command.end(), options.prlimit_args.begin(), options.prlimit_args.end());
    command.push_back("--");
  }
  command.push_back(server_binary());
  command.insert(command.end(), {"--port", "0"});
  command.insert(command.end(), args.begin(), args.end());

  std::unique_ptr<ServerProcess> server(new ServerProcess());
  const Spawned spawned = spawn(command);
  server->pid_ = spawned.pid;
  server->stdout_fd_ = spawned.stdout_fd;
  server->stderr_path_ = spawned.stderr_path;
  server->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, spawned.pid, 0));

  // prlimit execs the server in the same process, so the pid stays the server's.
  const std::string line = server->read_stdout_line();
  const auto at = line.find(" listening on ");
  const auto colon = line.rfind(':');
  if (at == std::string::npos || colon == std::string::npos) {
    ADD_FAILURE() << "server did not announce itself; stdout: '" << line
                  << "' stderr: " << server->stderr_text();
    return nullptr;
  }
  server->listening_line_ = line.substr(0, line.size() - 1);
  server->port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
  return server;
}

std::string ServerProcess::read_stdout_line() {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + kSafetyTimeout;
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd fd{stdout_fd_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&fd, 1, static_cast<int>(left.count())) <= 0) break;
    char c;
    const ssize_t n = ::read(stdout_fd_, &c, 1);  // byte by byte: leave the rest in the pipe
    if (n <= 0) break;
    line += c;
  }
  return line;
}

std::string ServerProcess::next_stdout_line() {
  std::string line = read_stdout_line();
  if (!line.empty() && line.back() == '\n') line.pop_back();
  return line;
}

std::pair<int, std::string> ServerProcess::run_to_exit(const std::vector<std::string>& args) {
  std::vector<std::string> command{server_binary()};
  command.insert(command.end(), args.begin(), args.end());
  std::unique_ptr<ServerProcess> server(new ServerProcess());
  const Spawned spawned = spawn(command);
  server->pid_ = spawned.pid;
  server->stdout_fd_ = spawned.stdout_fd;
  server->stderr_path_ = spawned.stderr_path;
  server->pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, spawned.pid, 0));
  const auto code = server->wait_exit(kSafetyTimeout);
  return {code.value_or(-1), server->stderr_text()};
}

ServerProcess::~ServerProcess() {
  if (!exit_code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait_exit(kSafetyTimeout);
  }
  if (pidfd_ >= 0) ::close(pidfd_);
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  if (stderr_path_.empty()) return;
  // A race in a worker process ends that worker (halt_on_error) while the master replaces it
  // and exits as usual, so the report on the shared stderr is the only trace: fail on it.
  if (const std::string text = stderr_text(); text.find("WARNING: ThreadSanitizer") != text.npos)
    ADD_FAILURE() << "ThreadSanitizer report on the server's stderr:\n" << text;
  ::unlink(stderr_path_.c_str());
}

void ServerProcess::signal(int signal_number) const {
  ::kill(pid_, signal_number);
}

std::optional<int> ServerProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  pollfd fd{pidfd_, POLLIN, 0};
  if (::poll(&fd, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) return std::nullopt;
  }
  exit_code_ = decode_status(status);
  return exit_code_;
}

std::string ServerProcess::remaining_stdout() {
  std::string text;
  char chunk[4096];
  ssize_t n;
  while ((n = ::read(stdout_fd_, chunk, sizeof chunk)) > 0)
    text.append(chunk, static_cast<std::size_t>(n));
  return text;
}

std::string ServerProcess::stderr_text() const {
  return read_file(stderr_path_);
}

namespace {
// Fields of /proc/PID/stat after the command name (which may contain spaces).
std::vector<std::string> stat_fields(pid_t pid) {
  const std::string text = read_file("/proc/" + std::to_string(pid) + "/stat");
  std::vector<std::string> fields;
  const auto close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return fields;
  std::istringstream in(text.substr(close_paren + 2));
  std::string field;
  while (in >> field) fields.push_back(field);
  return fields;  // fields[0] is state (field 3), fields[1] is ppid (field 4), ...
}
}  // namespace

std::vector<pid_t> ServerProcess::child_pids() const {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto fields = stat_fields(std::stoi(name));
    if (fields.size() > 1 && std::stoi(fields[1]) == pid_) children.push_back(std::stoi(name));
  }
  return children;
}

double ServerProcess::cpu_seconds() const {
  const auto fields = stat_fields(pid_);
  if (fields.size() < 15) return 0;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  // utime (14), stime (15), cutime (16), cstime (17): indexes shifted by 3.
  double total =
      std::stod(fields[11]) + std::stod(fields[12]) + std::stod(fields[13]) + std::stod(fields[14]);
  for (pid_t child : child_pids()) {
    const auto child_fields = stat_fields(child);
    if (child_fields.size() > 12)
      total += std::stod(child_fields[11]) + std::stod(child_fields[12]);
  }
  return total / ticks;
}

namespace {
long rss_kib_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long value = 0;
      in >> value;
      return value;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}
}  // namespace

long ServerProcess::rss_kib() const {
  return rss_kib_of(pid_);
}

long ServerProcess::max_rss_kib() const {
  long largest = rss_kib_of(pid_);
  for (pid_t child : child_pids()) largest = std::max(largest, rss_kib_of(child));
  return largest;
}

bool process_exists(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno != ESRCH;
  // A zombie still "exists" for kill(); report it, because a zombie is a leak we care about.
  return true;
}

char process_state(pid_t pid) {
  const auto fields = stat_fields(pid);
  return fields.empty() || fields[0].empty() ? '?' : fields[0][0];
}

std::unique_ptr<ServerProcess> start_server(const std::vector<std::string>& args,
                                            const ServerProcess::Options& options) {
  auto server = ServerProcess::start(args, options);
  if (!server) throw std::runtime_error("server failed to start");
  return server;
}

CommandResult run_command(const std::string& shell_command) {
  FILE* pipe = ::popen(shell_command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed: " + shell_command);
  std::string output;
  char chunk[4096];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, pipe)) > 0) output.append(chunk, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::size_t count_occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++count;
  return count;
}

}  // namespace polyecho::test
