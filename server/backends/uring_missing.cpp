// Built instead of backends/uring_backend.cpp when CMake found no liburing, so that
// --list-backends explains the absence instead of staying silent.
#include "app/backend_registry.hpp"

namespace polyecho {
namespace {
const MissingBackendRegistrar kMissing{"uring", "not compiled in: liburing missing at build time"};
}  // namespace
}  // namespace polyecho
