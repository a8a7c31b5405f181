#pragma once

#include <cstdint>

#include "lifecycle/peer_limit.hpp"

namespace polyecho::test {

// The key PeerLimit counts an IPv4 client under: its IPv4-mapped IPv6 form (::ffff:a.b.c.d).
// Header-only: only tests that link polyecho_lifecycle include it.
inline PeerAddress ipv4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  PeerAddress address;
  address.bytes[10] = address.bytes[11] = 0xff;
  address.bytes[12] = a;
  address.bytes[13] = b;
  address.bytes[14] = c;
  address.bytes[15] = d;
  return address;
}

}  // namespace polyecho::test
