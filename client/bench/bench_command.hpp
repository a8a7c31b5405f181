#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>

#include "../client_options.hpp"

namespace polyecho::bench {

// The flags of `polyecho-client bench`, as typed.
struct BenchOptions {
  std::uint32_t connections = 1;
  double duration = 10;
  std::uint64_t messages = 0;
  std::size_t size = 64;
  bool frame = false;
  std::uint32_t pipeline = 1;
  double rate = 0;
  double connect_rate = 0;
  bool reconnect = false;
  bool idle = false;
  bool stream = false;
  std::size_t window = std::size_t{256} * 1024;  // --stream: bytes in flight per connection
  unsigned sources = 0;  // connect from this many loopback addresses (0: the kernel's choice)
  unsigned threads = 0;  // 0 = one per core
  double warmup = 0;
  bool json = false;
};

// `polyecho-client bench`: registers its subcommand on construction; run() when parsed().
// Host, port and --timeout come from the client's global options.
class BenchCommand {
 public:
  BenchCommand(CLI::App& app, const client::ConnectOptions& connect);
  [[nodiscard]] bool parsed() const { return command_->parsed(); }
  // Exit code: 0 when every echoed byte matched and no connection failed.
  [[nodiscard]] int run() const;

 private:
  CLI::App* command_;
  const client::ConnectOptions& connect_;
  BenchOptions options_;
};

}  // namespace polyecho::bench
