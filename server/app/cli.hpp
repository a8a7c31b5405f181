#pragma once

#include <optional>

#include "lifecycle/server_config.hpp"

namespace polyecho {

// What polyecho-server was asked to do: serve with `config`, or only list the models.
struct CommandLine {
  ServerConfig config;
  bool list_backends = false;
  bool json = false;
};

// Fills `line` from argv. Every value is checked and converted here (strategy names become
// enums, seconds become durations), so nothing after this point parses or compares flag text.
// Returns an exit code when the program should stop here: 0 after --help or --version, 2 after
// a bad flag, reported as one line on stderr that names the flag.
std::optional<int> parse_command_line(int argc, char** argv, CommandLine& line);

}  // namespace polyecho
