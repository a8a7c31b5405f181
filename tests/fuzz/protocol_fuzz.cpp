// libFuzzer target for the sans-IO protocol. The first bytes pick a configuration and a
// chunking seed; the rest is the peer's byte stream, fed in random chunks with random partial
// "sends". A straightforward reference model computes what must come back.
// Invariants: raw output == input; line mode follows its rules (echo, upper, bye, error);
// frame mode echoes whole frames up to a too-long one or a cut-short tail; hold mode (messages
// released at random moments) sends the same bytes as no hold; the buffer never grows past its
// cap plus the reply reserve, and a connection never gets stuck.
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

// What a frame-mode server must answer to `input` followed by EOF: every whole frame up to
// the first too-long one; nothing of a frame cut short.
std::string reference_frame_mode(std::string_view input, const ProtocolConfig& c) {
  std::string out;
  while (input.size() >= polyecho::kFrameHeaderSize) {
    std::size_t length = 0;
    for (std::size_t i = 0; i < polyecho::kFrameHeaderSize; ++i)
      length = length * 256 + static_cast<unsigned char>(input[i]);
    if (length > c.max_frame) break;
    const std::size_t whole = polyecho::kFrameHeaderSize + length;
    if (whole > input.size()) break;
    out += input.substr(0, whole);
    input.remove_prefix(whole);
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
  constexpr Mode kModes[] = {Mode::raw, Mode::line, Mode::frame, Mode::line};
  config.mode = kModes[data[0] & 3];
  config.transform = (data[0] & 4) ? Transform::upper : Transform::none;
  config.hold_messages = (data[0] & 8) != 0;
  config.max_line = 1 + data[1] % 64;
  config.max_frame = data[1] % 64;
  config.max_buffer = 1024 + static_cast<std::size_t>(data[2]) * 16;
  Rng rng{static_cast<std::uint32_t>(data[3] | data[4] << 8 | data[5] << 16) | 1u};
  const std::string_view input(reinterpret_cast<const char*>(data + 6), size - 6);

  Session session(config);
  const std::size_t hard_cap = session.buffer_cap() + polyecho::Buffer::kReplyReserve;
  if (session.buffer_cap() < std::max(config.max_line + 2, config.max_frame + 4) &&
      config.mode != Mode::raw)
    std::abort();  // one maximal message must always fit
  std::string sent;
  std::size_t offset = 0;
  auto send_some = [&](bool everything) {
    auto out = session.output();
    std::size_t n = everything ? out.size() : std::min<std::size_t>(out.size(), rng.next() % 97);
    sent.append(out.data(), n);
    session.on_sent(n);
  };
  // The "work": releases up to `most` pending messages, checking each one's size.
  auto release_some = [&](std::size_t most) {
    for (; most > 0 && session.pending_message(); --most) {
      const std::size_t before = session.output().size();
      const std::size_t content = session.pending_message()->size();
      session.release_message();
      if (session.output().size() < before + content) std::abort();
    }
  };
  while (offset < input.size() && !session.closing()) {
    auto space = session.input_space();
    if (space.empty()) {
      release_some(1);
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
    release_some(rng.next() % 4);
    send_some(false);
  }
  if (!session.closing()) session.on_peer_eof();
  release_some(SIZE_MAX);
  while (session.has_output()) send_some(true);
  if (!session.finished() || session.pending_count() != 0) std::abort();

  const std::string_view received = input.substr(0, offset);
  switch (config.mode) {
    case Mode::raw:
      if (sent != input) std::abort();
      break;
    case Mode::line:
      if (sent != reference_line_mode(received, config)) std::abort();
      break;
    case Mode::frame:
      if (sent != reference_frame_mode(received, config)) std::abort();
      // A protocol error exactly when the input did not end at a frame boundary.
      if (session.protocol_error().empty() != (sent.size() == received.size())) std::abort();
      break;
  }
  return 0;
}
