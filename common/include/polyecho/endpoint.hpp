#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace polyecho {

// An IPv4 or IPv6 socket address, by value.
struct Endpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;

  [[nodiscard]] int family() const noexcept { return storage.ss_family; }
  [[nodiscard]] const sockaddr* addr() const noexcept {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
  [[nodiscard]] sockaddr* addr() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
  [[nodiscard]] std::uint16_t port() const noexcept;
  // "127.0.0.1" or "::1"
  [[nodiscard]] std::string host() const;
  // "127.0.0.1:7007" or "[::1]:7007"
  [[nodiscard]] std::string to_string() const;
};

// Resolves a numeric address ("127.0.0.1", "::1", "0.0.0.0") or a host name such as
// "localhost" (first result). Throws std::invalid_argument with a readable reason.
[[nodiscard]] Endpoint resolve_endpoint(std::string_view host, std::uint16_t port);

}  // namespace polyecho
