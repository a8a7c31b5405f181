// libFuzzer target for the sans-IO protocol. The first bytes pick a configuration and a
// chunking seed; the rest is the peer's byte stream, fed in random chunks with random partial
// "sends". A straightforward reference model computes what must come back.
// Invariants: raw output == input; line mode follows its rules (echo, upper, bye, error);
// the buffer never grows past its cap plus the reply reserve.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "polyecho/session.hpp"

namespace {

using polyecho::Mode;
using polyecho::ProtocolConfig;
using polyecho::Session;
using polyecho::Transform;

bool is_quit(std::string_view text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "q" || lower == "quit";
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

std::string too_long(std::size_t max) {
  return "error: line too long (max " + std::to_string(max) + " bytes)\n";
}

// What a line-mode server must answer to `input` followed by EOF.
std::string reference_line_mode(std::string_view input, const ProtocolConfig& c) {
  std::string out;
  while (!input.empty()) {
    const auto lf = input.find('\n');
    if (lf == std::string_view::npos) {
      std::size_t content = input.size();
      if (input.back() == '\r') --content;
      if (content > c.max_line) return out + too_long(c.max_line);
      if (is_quit(input)) return out + "bye\n";
      return out + (c.transform == Transform::upper ? upper(input) : std::string(input));
    }
    std::string_view line = input.substr(0, lf + 1);
    std::size_t content = lf;
    if (content > 0 && line[content - 1] == '\r') --content;
    if (content > c.max_line) return out + too_long(c.max_line);
    if (is_quit(line.substr(0, content))) return out + "bye\n";
    if (c.transform == Transform::upper) {
      out += upper(line.substr(0, content));
      out += line.substr(content);
    } else {
      out += line;
    }
    input.remove_prefix(lf + 1);
  }
  return out;
}

struct Rng {
  std::uint32_t state;
  std::uint32_t next() {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 6) return 0;
  ProtocolConfig config;
  config.mode = (data[0] & 1) ? Mode::line : Mode::raw;
  config.transform = (data[0] & 2) ? Transform::upper : Transform::none;
  config.max_line = 1 + data[1] % 64;
  config.max_buffer = 1024 + static_cast<std::size_t>(data[2]) * 16;
  Rng rng{static_cast<std::uint32_t>(data[3] | data[4] << 8 | data[5] << 16) | 1u};
  const std::string_view input(reinterpret_cast<const char*>(data + 6), size - 6);

  Session session(config);
  const std::size_t hard_cap =
      std::max(config.max_buffer, config.max_line + 2) + polyecho::Buffer::kReplyReserve;
  std::string sent;
  std::size_t offset = 0;
  auto send_some = [&](bool everything) {
    auto out = session.output();
    std::size_t n = everything ? out.size() : std::min<std::size_t>(out.size(), rng.next() % 97);
    sent.append(out.data(), n);
    session.on_sent(n);
  };
  while (offset < input.size() && !session.closing()) {
    auto space = session.input_space();
    if (space.empty()) {
      if (!session.has_output()) std::abort();  // no room and nothing to send: a stuck connection
      send_some(true);
      continue;
    }
    const std::size_t n =
        std::min({space.size(), input.size() - offset, std::size_t{1} + rng.next() % 300});
    std::memcpy(space.data(), input.data() + offset, n);
    offset += n;
    session.on_received(n);
    if (session.buffered() > hard_cap) std::abort();
    send_some(false);
  }
  if (!session.closing()) session.on_peer_eof();
  while (session.has_output()) send_some(true);
  if (!session.finished()) std::abort();

  if (config.mode == Mode::raw) {
    if (sent != input) std::abort();
  } else if (sent != reference_line_mode(input.substr(0, offset), config)) {
    std::abort();
  }
  return 0;
}
