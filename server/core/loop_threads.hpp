#pragma once

#include <cstddef>
#include <functional>

#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Runs `count` event loops (at least one) to completion: loop 0 on the calling thread, which
// keeps receiving SIGINT/SIGTERM, the others on threads that block them (the sticky stop fd
// wakes every loop anyway). A loop that throws is logged, makes the result 1 and requests a
// stop so the others drain and end too. Joins every thread before returning 0 or 1.
int run_loop_threads(std::size_t count, const std::function<void(std::size_t index)>& run_loop);

// Another descriptor for the same listening socket, for a sibling loop that watches it with
// its own multiplexer (and closes its own copy). Throws std::system_error.
[[nodiscard]] unique_fd dup_listener(int listener);

}  // namespace polyecho
