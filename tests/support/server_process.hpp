#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace polyecho::test {

// Safety net for every wait in the tests. Nothing sleeps to synchronise: tests wait for the
// "listening on" line, for bytes, for EOF or for process exit, and this only bounds the wait.
inline constexpr std::chrono::seconds kSafetyTimeout{15};

std::string server_binary();
std::string client_binary();

// A polyecho-server child process started for one test. Its stdout is a pipe (the first line
// tells the port); its stderr goes to a temporary file the test can read. The destructor
// SIGKILLs and reaps it if the test did not stop it, so no test leaks a server, and fails the
// test if that stderr holds a ThreadSanitizer report (a worker process's, too).
class ServerProcess {
 public:
  struct Options {
    // Prefix the command with `prlimit --nofile=N:N` (EMFILE tests).
    std::optional<int> nofile_limit = {};
    // More `prlimit` options, e.g. "--sigpending=16" (signal-queue overflow tests).
    std::vector<std::string> prlimit_args = {};
  };

  // Starts `polyecho-server --port 0 ARGS...` and waits for its "listening on" line.
  // Fails the current test (ADD_FAILURE) and returns nullptr if it never comes.
  static std::unique_ptr<ServerProcess> start(const std::vector<std::string>& args,
                                              Options options);
  static std::unique_ptr<ServerProcess> start(const std::vector<std::string>& args) {
    return start(args, Options{});
  }
  // Runs the server to completion without expecting it to listen (bad flags, busy port).
  // Returns {exit status, stderr}.
  static std::pair<int, std::string> run_to_exit(const std::vector<std::string>& args);

  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& listening_line() const { return listening_line_; }

  void signal(int signal_number) const;
  // Waits for the process to exit; returns its exit code (128+N when killed by signal N), or
  // nullopt when it is still running after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // The next line the server writes to stdout after the listening line (without its LF), e.g.
  // "polyecho: stats on http://...": waits for it up to the safety timeout; empty if none came.
  std::string next_stdout_line();
  // Everything the server wrote to stdout after the listening line (read after it exited).
  std::string remaining_stdout();
  std::string stderr_text() const;
  // PIDs whose parent is this server (fork/prefork children), read from /proc.
  [[nodiscard]] std::vector<pid_t> child_pids() const;
  // Sum of utime+stime of the server (and its children, when `with_children`) in seconds.
  [[nodiscard]] double cpu_seconds() const;
  // Resident set size of the server process in KiB.
  [[nodiscard]] long rss_kib() const;
  // The largest RSS among the server and its children (fork/prefork serve in children, which
  // start as copies of the server, so each is compared with the server's idle RSS).
  [[nodiscard]] long max_rss_kib() const;

 private:
  ServerProcess() = default;
  // One stdout line with its LF, read byte by byte so the rest stays in the pipe; what came
  // before the safety timeout, EOF or an error otherwise.
  std::string read_stdout_line();
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdout_fd_ = -1;
  std::string stderr_path_;
  std::string listening_line_;
  std::uint16_t port_ = 0;
  std::optional<int> exit_code_;
};

bool process_exists(pid_t pid);
// The state letter of /proc/PID/stat ('R', 'S', 'Z' for a zombie, ...), '?' if unreadable.
char process_state(pid_t pid);

// ServerProcess::start for fixtures: throws (ending the test) instead of returning nullptr.
std::unique_ptr<ServerProcess> start_server(const std::vector<std::string>& args,
                                            const ServerProcess::Options& options = {});

struct CommandResult {
  int status;          // exit code, -1 if it did not exit normally
  std::string output;  // stdout only; stderr goes to the test's stderr
};
// Runs a shell command to completion and captures its stdout.
CommandResult run_command(const std::string& shell_command);

// How many times `needle` occurs in `text` (e.g. a once-per-burst line in a server's log).
[[nodiscard]] std::size_t count_occurrences(const std::string& text, const std::string& needle);

}  // namespace polyecho::test
