#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace polyecho {

class MessageObserver;  // polyecho/message_observer.hpp

// raw: every byte is echoed as it comes. line: LF-terminated lines (quit, transform, max_line).
// frame: length-prefixed binary messages (see kFrameHeaderSize), echoed whole and unchanged.
enum class Mode { raw, line, frame };
enum class Transform { none, upper };

// Everything the sans-IO protocol needs to know; shared by every backend and the client.
struct ProtocolConfig {
  Mode mode = Mode::raw;
  Transform transform = Transform::none;  // line mode only: frames are binary, raw is raw
  // Complete messages (lines, frames) wait as "pending" until the transport has done their
  // work and releases them (Session::pending_message). Raw mode has no messages: no effect.
  bool hold_messages = false;
  // Longest accepted line in line mode, terminator excluded.
  std::size_t max_line = 65536;
  // Largest accepted frame payload in frame mode, header excluded (at most 2^32 - 1 can be
  // declared, so larger values mean "no limit").
  std::size_t max_frame = std::size_t{1024} * 1024;
  // Cap on bytes held per connection (owed output, pending messages and an incomplete one).
  // Reaching it means "stop reading until the peer drains its echo". Raised when needed so one
  // maximal line or frame always fits.
  std::size_t max_buffer = std::size_t{1024} * 1024;
  // Told about bytes and messages as they pass, and the clock for their latency (live
  // metrics). Not owned; must outlive every Session. Null: nothing is measured.
  MessageObserver* observer = nullptr;
};

// What the transport should do after handing bytes to the protocol.
enum class Intent {
  keep_reading,       // send whatever output() holds, keep reading
  close_after_flush,  // read no more; send everything owed, then close
};

[[nodiscard]] std::optional<Mode> parse_mode(std::string_view text);
[[nodiscard]] std::optional<Transform> parse_transform(std::string_view text);
[[nodiscard]] std::string_view to_string(Mode mode);
[[nodiscard]] std::string_view to_string(Transform transform);

// Position of the first LF in `bytes`, or npos. Shared by the server's line mode and the
// client's reply framing so both agree on what a line is.
[[nodiscard]] std::size_t find_line_end(std::string_view bytes) noexcept;

// A frame is its payload's length as 4 bytes, big-endian (network order), then the payload.
// Shared by the server's frame mode, the client's `send --frame` and the bench.
// Inline: the server's frame mode reads one header per frame on its hot path.
inline constexpr std::size_t kFrameHeaderSize = 4;

[[nodiscard]] inline std::uint32_t read_frame_length(
    std::span<const char, kFrameHeaderSize> header) noexcept {
  std::uint32_t length = 0;
  for (const char c : header) length = (length << 8) | static_cast<unsigned char>(c);
  return length;
}

inline void write_frame_header(std::uint32_t length,
                               std::span<char, kFrameHeaderSize> out) noexcept {
  for (std::size_t i = 0; i < kFrameHeaderSize; ++i)
    out[i] = static_cast<char>((length >> (8 * (kFrameHeaderSize - 1 - i))) & 0xff);
}

}  // namespace polyecho
