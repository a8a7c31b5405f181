#include "polyecho/session.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace polyecho {

namespace {

constexpr std::string_view kBye = "bye\n";

bool equals_ignore_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

void upper_in_place(std::span<char> text) {
  for (char& c : text) {
    // ASCII only: the echo must stay byte-for-byte the same length and never depend on locale.
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - ('a' - 'A'));
  }
}

// The line content without its terminator (LF, or CRLF).
std::size_t content_length(std::span<const char> line_with_lf) {
  std::size_t n = line_with_lf.size() - 1;
  if (n > 0 && line_with_lf[n - 1] == '\r') --n;
  return n;
}

}  // namespace

std::optional<Mode> parse_mode(std::string_view text) {
  if (text == "raw") return Mode::raw;
  if (text == "line") return Mode::line;
  return std::nullopt;
}

std::optional<Transform> parse_transform(std::string_view text) {
  if (text == "none") return Transform::none;
  if (text == "upper") return Transform::upper;
  return std::nullopt;
}

std::string_view to_string(Mode mode) {
  return mode == Mode::raw ? "raw" : "line";
}
std::string_view to_string(Transform transform) {
  return transform == Transform::none ? "none" : "upper";
}

std::size_t find_line_end(std::string_view bytes) noexcept {
  return bytes.find('\n');
}

// The buffer must hold a full maximal line plus its CRLF, so a line at the limit always fits.
Session::Session(const ProtocolConfig& config)
    : config_(config),
      buffer_(config.mode == Mode::line ? std::max(config.max_buffer, config.max_line + 2)
                                        : config.max_buffer) {}

std::span<char> Session::input_space(std::size_t useful) {
  if (closing_) return {};
  return buffer_.writable(useful);
}

Intent Session::on_received(std::size_t n) {
  buffer_.commit(n);
  if (config_.mode == Mode::raw) {
    releasable_ = buffer_.size();
    return Intent::keep_reading;
  }
  return scan_lines();
}

Intent Session::scan_lines() {
  auto bytes = buffer_.readable();
  std::size_t line_start = releasable_;
  std::size_t cursor = releasable_ + scanned_held_;
  while (cursor < bytes.size()) {
    const void* lf = std::memchr(bytes.data() + cursor, '\n', bytes.size() - cursor);
    if (lf == nullptr) break;
    const std::size_t line_end =
        static_cast<std::size_t>(static_cast<const char*>(lf) - bytes.data()) + 1;
    if (finish_line(line_start, line_end) == Intent::close_after_flush) {
      return Intent::close_after_flush;
    }
    line_start = line_end;
    cursor = line_end;
  }
  releasable_ = line_start;
  scanned_held_ = bytes.size() - line_start;
  // An incomplete line may end in CR whose LF is still on its way; it is not too long yet.
  std::size_t held = scanned_held_;
  if (held > 0 && bytes[bytes.size() - 1] == '\r') --held;
  if (held > config_.max_line) {
    return close_with(line_start,
                      fmt::format("error: line too long (max {} bytes)\n", config_.max_line));
  }
  return Intent::keep_reading;
}

Intent Session::finish_line(std::size_t line_start, std::size_t line_end) {
  auto line = buffer_.readable().subspan(line_start, line_end - line_start);
  const std::size_t content = content_length(line);
  if (content > config_.max_line) {
    return close_with(line_start,
                      fmt::format("error: line too long (max {} bytes)\n", config_.max_line));
  }
  const std::string_view text(line.data(), content);
  if (equals_ignore_case(text, "quit") || equals_ignore_case(text, "q")) {
    return close_with(line_start, kBye);
  }
  if (config_.transform == Transform::upper) upper_in_place(line.first(content));
  releasable_ = line_end;
  return Intent::keep_reading;
}

// Everything before `keep` was accepted and is still owed; the rest is dropped and replaced
// by the final reply.
Intent Session::close_with(std::size_t keep, std::string_view reply) {
  buffer_.truncate(keep);
  buffer_.append(reply);  // cannot fail: the reserve above the soft cap exceeds any reply
  releasable_ = buffer_.size();
  scanned_held_ = 0;
  closing_ = true;
  return Intent::close_after_flush;
}

Intent Session::on_peer_eof() {
  if (!closing_ && config_.mode == Mode::line && releasable_ < buffer_.size()) {
    // The peer will send no LF any more: its last, unterminated line is still a line.
    auto tail = buffer_.readable().subspan(releasable_);
    const std::string_view text(tail.data(), tail.size());
    if (equals_ignore_case(text, "quit") || equals_ignore_case(text, "q")) {
      return close_with(releasable_, kBye);
    }
    if (config_.transform == Transform::upper) upper_in_place(tail);
  }
  releasable_ = buffer_.size();
  scanned_held_ = 0;
  closing_ = true;
  return Intent::close_after_flush;
}

void Session::on_sent(std::size_t n) noexcept {
  buffer_.consume(n);
  releasable_ -= n;
}

}  // namespace polyecho
