#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lifecycle/backend.hpp"
#include "lifecycle/server_config.hpp"

namespace polyecho {

struct BackendInfo {
  std::string name;
  std::string description;  // one line, shown by --list-backends
  bool uses_workers = false;
  // False for models that serve one connection at a time (the others wait in the backlog).
  bool serves_concurrently = true;
  // Connections meet several threads whatever the flags: a thread each, or a pool fed from
  // another thread.
  bool threaded = false;
  // The flag whose value N is how many threads serve connections at once ("--workers" for a
  // loop per thread, "--worker-threads" for threads per process); empty if no flag adds any.
  // With `threaded` this tells tools which variants are multi-threaded (scripts/tsan-cases).
  std::string threads_flag;
  // An event-loop model: takes --acceptor and --processes (server/topology/), and without
  // --acceptor feeds its loops the `default_acceptor` way.
  bool loop_model = false;
  AcceptorMode default_acceptor = AcceptorMode::reuseport;
  // Honours --offload N (its loops hand cpu and block work to a pool); anything else refuses
  // the flag at start-up rather than ignore it.
  bool supports_offload = false;
  // Higher wins when --backend is not given.
  int default_rank = 0;
  // Flag sets worth exercising besides the defaults, e.g. "--workers 2". The conformance suite
  // runs every scenario once per variant, so a variant listed here is tested automatically.
  std::vector<std::string> variants;
  std::function<std::unique_ptr<Backend>(const ServerConfig&)> create;
};

// A model this build leaves out because its dependency was missing at configure time. Listed
// (not selectable) by --list-backends so the absence is explained, e.g.
// "uring (not compiled in: liburing missing at build time)".
struct MissingBackend {
  std::string name;
  std::string reason;
};

// Registration happens from static objects in each backend file:
//   const BackendRegistrar kRegistrar{BackendInfo{...}};
// The backends are linked into the executable as object files, so nothing is dropped.
class BackendRegistry {
 public:
  static void add(BackendInfo info);
  [[nodiscard]] static const std::vector<BackendInfo>& all();  // sorted by name
  [[nodiscard]] static const BackendInfo* find(std::string_view name);
  [[nodiscard]] static const BackendInfo* preferred_default();
  static void add_missing(MissingBackend missing);
  [[nodiscard]] static const std::vector<MissingBackend>& missing();
};

struct BackendRegistrar {
  explicit BackendRegistrar(BackendInfo info) { BackendRegistry::add(std::move(info)); }
};

struct MissingBackendRegistrar {
  MissingBackendRegistrar(std::string name, std::string reason) {
    BackendRegistry::add_missing({std::move(name), std::move(reason)});
  }
};

}  // namespace polyecho
