#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "bench/bench_command.hpp"
#include "client_options.hpp"
#include "polyecho/socket_ops.hpp"

// A function-try-block: an exception from building the command line (CLI11 throws on a
// malformed option) or from a command ends in one line on stderr and exit 1, never terminate().
int main(int argc, char** argv) try {
  using namespace polyecho::client;
  CLI::App app{"polyecho-client: talk to a polyecho (or any echo) server", "polyecho-client"};
  app.require_subcommand(0, 1);
  app.fallthrough();
  ConnectOptions options;
  app.add_option("--host", options.host, "Server address")->capture_default_str();
  app.add_option("--port", options.port, "Server port")->capture_default_str();
  app.add_option("--timeout", options.timeout_seconds, "Seconds without progress before giving up")
      ->check(CLI::Range(0.001, 3600.0))
      ->capture_default_str();

  std::vector<std::string> words;
  bool frame = false;
  auto* send = app.add_subcommand("send", "Send TEXT (or stdin), print the echo, exit 0");
  send->add_option("text", words, "Words to send, joined by spaces and ended with a newline");
  send->add_flag("--frame", frame,
                 "Frame mode: TEXT (joined by spaces, no newline) is one frame, or each stdin "
                 "line (without its newline) is one frame; every echoed frame's payload is "
                 "printed followed by a newline; a server closing mid-frame is an error");
  const polyecho::bench::BenchCommand bench(app, options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "polyecho-client: error: {} (see --help)\n", e.what());
    return 2;
  }

  polyecho::ignore_sigpipe();
  if (send->parsed()) return run_send(options, words, frame);
  if (bench.parsed()) return bench.run();
  return run_interactive(options);
} catch (const std::exception& e) {
  fmt::print(stderr, "polyecho-client: {}\n", e.what());
  return 1;
}
