#pragma once

namespace polyecho {

// Parses the command line (app/cli.hpp), binds, announces "polyecho: NAME listening on
// HOST:PORT" on stdout, runs the chosen model until stopped, prints the stats line. Returns the
// exit code: 0 after a clean stop, 1 for runtime failures (bind, model unavailable), 2 for bad
// flags.
int server_main(int argc, char** argv);

}  // namespace polyecho
