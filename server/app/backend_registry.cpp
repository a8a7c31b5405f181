#include "app/backend_registry.hpp"

#include <algorithm>

namespace polyecho {

namespace {
// Function-local static: registrars in other translation units may run before any namespace
// scope object here is constructed.
std::vector<BackendInfo>& storage() {
  static std::vector<BackendInfo> backends;
  return backends;
}
std::vector<MissingBackend>& missing_storage() {
  static std::vector<MissingBackend> missing;
  return missing;
}
}  // namespace

void BackendRegistry::add(BackendInfo info) {
  auto& backends = storage();
  auto at = std::lower_bound(backends.begin(), backends.end(), info.name,
                             [](const BackendInfo& b, const std::string& n) { return b.name < n; });
  backends.insert(at, std::move(info));
}

const std::vector<BackendInfo>& BackendRegistry::all() {
  return storage();
}

const BackendInfo* BackendRegistry::find(std::string_view name) {
  for (const auto& info : storage()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

const BackendInfo* BackendRegistry::preferred_default() {
  const auto& backends = storage();
  auto best = std::max_element(
      backends.begin(), backends.end(),
      [](const BackendInfo& a, const BackendInfo& b) { return a.default_rank < b.default_rank; });
  return best == backends.end() ? nullptr : &*best;
}

void BackendRegistry::add_missing(MissingBackend missing) {
  missing_storage().push_back(std::move(missing));
}

const std::vector<MissingBackend>& BackendRegistry::missing() {
  return missing_storage();
}

}  // namespace polyecho
