#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "polyecho/unique_fd.hpp"

namespace polyecho::client {

// Options shared by every polyecho-client command.
struct ConnectOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7007;
  double timeout_seconds = 10;  // no progress for this long is an error
};

// An error the user should see as one line, with a non-zero exit.
struct ClientError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Connects or throws ClientError("cannot connect to HOST:PORT: connect: Connection refused").
[[nodiscard]] unique_fd connect_or_explain(const ConnectOptions& options);

int run_interactive(const ConnectOptions& options);
// `frame`: length-prefixed frames out and back (see send_command.cpp).
int run_send(const ConnectOptions& options, const std::vector<std::string>& words, bool frame);

}  // namespace polyecho::client
