#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace polyecho {

enum class Mode { raw, line };
enum class Transform { none, upper };

// Everything the sans-IO protocol needs to know; shared by every backend and the client.
struct ProtocolConfig {
  Mode mode = Mode::raw;
  Transform transform = Transform::none;
  // Longest accepted line in line mode, terminator excluded.
  std::size_t max_line = 65536;
  // Cap on bytes held per connection (owed output plus an incomplete line). Reaching it means
  // "stop reading until the peer drains its echo".
  std::size_t max_buffer = std::size_t{1024} * 1024;
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

}  // namespace polyecho
