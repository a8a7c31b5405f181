#include "polyecho/stats.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <new>

#include "polyecho/socket_ops.hpp"

namespace polyecho {

std::string Stats::summary() const {
  return fmt::format(
      "accepted={} rejected={} active={} bytes_in={} bytes_out={} errors={} offloaded={} "
      "offload_queue_peak={}",
      accepted.load(), rejected.load(), active.load(), bytes_in.load(), bytes_out.load(),
      errors.load(), offloaded.load(), offload_queue_peak.load());
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
