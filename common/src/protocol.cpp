// The protocol's names and line framing, shared by the Session, the server's flags and the
// client.
#include "polyecho/protocol.hpp"

namespace polyecho {

std::optional<Mode> parse_mode(std::string_view text) {
  if (text == "raw") return Mode::raw;
  if (text == "line") return Mode::line;
  if (text == "frame") return Mode::frame;
  return std::nullopt;
}

std::optional<Transform> parse_transform(std::string_view text) {
  if (text == "none") return Transform::none;
  if (text == "upper") return Transform::upper;
  return std::nullopt;
}

std::string_view to_string(Mode mode) {
  switch (mode) {
    case Mode::raw:
      return "raw";
    case Mode::line:
      return "line";
    case Mode::frame:
      return "frame";
  }
  return "?";
}
std::string_view to_string(Transform transform) {
  return transform == Transform::none ? "none" : "upper";
}

std::size_t find_line_end(std::string_view bytes) noexcept {
  return bytes.find('\n');
}

}  // namespace polyecho
