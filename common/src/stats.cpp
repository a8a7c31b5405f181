#include "polyecho/stats.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <algorithm>
#include <new>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

LoopStats* Stats::register_loop() noexcept {
  const auto slot = loops_started.fetch_add(1, std::memory_order_relaxed);
  return slot < kMaxLoops ? &loops[slot] : nullptr;
}

std::string Stats::summary() const {
  std::string line = fmt::format(
      "accepted={} rejected={} active={} bytes_in={} bytes_out={} errors={} offloaded={} "
      "offload_queue_peak={}",
      accepted.load(), rejected.load(), active.load(), bytes_in.load(), bytes_out.load(),
      errors.load(), offloaded.load(), offload_queue_peak.load());
  const std::size_t counted = std::min<std::size_t>(loops_started.load(), kMaxLoops);
  if (counted > 1) {
    line += " loop_connections=";
    for (std::size_t i = 0; i < counted; ++i) {
      if (i > 0) line += '/';
      line += std::to_string(loops[i].connections.load());
    }
  }
  return line;
}

SharedStats::SharedStats() {
  void* memory =
      ::mmap(nullptr, sizeof(Stats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw_errno("mmap(stats)");
  stats_ = new (memory) Stats();
}

SharedStats::~SharedStats() {
  stats_->~Stats();
  ::munmap(stats_, sizeof(Stats));
}

}  // namespace polyecho
