#include "polyecho/session.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>

namespace polyecho {

namespace {

constexpr std::string_view kBye = "bye\n";

bool equals_ignore_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_quit(std::span<const char> text) {
  const std::string_view word(text.data(), text.size());
  return equals_ignore_case(word, "quit") || equals_ignore_case(word, "q");
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

enum class LineVerdict { echo, quit, too_long };

// Decides one complete line, upper-casing it in place when it is to be echoed.
LineVerdict check_line(std::span<char> line, const ProtocolConfig& config) {
  const std::size_t content = content_length(line);
  if (content > config.max_line) return LineVerdict::too_long;
  if (is_quit(line.first(content))) return LineVerdict::quit;
  if (config.transform == Transform::upper) upper_in_place(line.first(content));
  return LineVerdict::echo;
}

// Formats into a fixed array, truncating rather than allocating; returns the length.
template <std::size_t N, typename... Args>
std::uint8_t format_into(char (&out)[N], fmt::format_string<Args...> format, Args&&... args) {
  static_assert(N <= std::numeric_limits<std::uint8_t>::max());
  const auto result = fmt::format_to_n(out, N, format, std::forward<Args>(args)...);
  return static_cast<std::uint8_t>(std::min(result.size, N));
}

// The buffer must hold one maximal message with its framing, so a message at the limit always
// fits: a line plus its CRLF, a frame plus its header (a header cannot declare more than 2^32-1).
std::size_t cap_for(const ProtocolConfig& config) {
  switch (config.mode) {
    case Mode::line:
      return std::max(config.max_buffer, config.max_line + 2);
    case Mode::frame:
      return std::max(config.max_buffer,
                      std::min<std::size_t>(config.max_frame, UINT32_MAX) + kFrameHeaderSize);
    case Mode::raw:
      break;
  }
  return config.max_buffer;
}

}  // namespace

Session::Session(const ProtocolConfig& config) : config_(config), buffer_(cap_for(config)) {}

std::span<char> Session::input_space(std::size_t useful) {
  if (closing_) return {};
  const auto space = buffer_.writable(useful != 0 ? useful : read_size_);
  offered_ = static_cast<std::uint32_t>(std::min<std::size_t>(space.size(), UINT32_MAX));
  return space;
}

// A read that filled all it was offered suggests more was waiting: offer the bulk size next
// time. One that used less than an eighth of it: the first size again. Two sizes only, so
// every buffer a stream takes and gives back is a pooled one.
void Session::adapt_read_size(std::size_t n) noexcept {
  if (n >= offered_) {
    read_size_ = kBulkRead;
  } else if (n < read_size_ / 8) {
    read_size_ = Buffer::kInitialCapacity;
  }
}

Intent Session::on_received(std::size_t n) {
  const auto at =
      config_.observer != nullptr ? config_.observer->now() : MessageObserver::Clock::time_point{};
  buffer_.commit(n);
  adapt_read_size(n);
  accepted_now_ = 0;
  Intent intent = Intent::keep_reading;
  if (config_.mode == Mode::raw) {
    releasable_ = buffer_.size();
    accepted_now_ = n > 0 ? 1 : 0;
  } else {
    intent = config_.mode == Mode::line ? scan_lines() : scan_frames();
  }
  if (config_.observer != nullptr) report_received(n, at);
  return intent;
}

// After a read (or the EOF that completed a last line): its figures, and its messages'
// latency when they were released at once; held ones are timed when released.
void Session::report_received(std::size_t bytes, MessageObserver::Clock::time_point at) {
  MessageObserver& observer = *config_.observer;
  observer.received(bytes, accepted_now_);
  if (accepted_now_ == 0) return;
  if (config_.hold_messages && config_.mode != Mode::raw) {
    remember_arrival(accepted_now_, at);
  } else {
    observer.replied(accepted_now_, observer.now() - at);
  }
}

void Session::remember_arrival(std::size_t messages, MessageObserver::Clock::time_point at) {
  if (!arrivals_) arrivals_ = std::make_unique<std::array<Arrival, kArrivalSlots>>();
  auto& ring = *arrivals_;
  if (arrival_count_ == kArrivalSlots) {
    ring[(first_arrival_ + kArrivalSlots - 1) % kArrivalSlots].messages += messages;
    return;
  }
  ring[(first_arrival_ + arrival_count_) % kArrivalSlots] = {messages, at};
  ++arrival_count_;
}

// One held message's echo was released: it arrived with the oldest entry.
void Session::report_released() noexcept {
  if (arrival_count_ == 0) return;
  Arrival& oldest = (*arrivals_)[first_arrival_];
  config_.observer->replied(1, config_.observer->now() - oldest.at);
  if (--oldest.messages == 0) {
    first_arrival_ = static_cast<std::uint8_t>((first_arrival_ + 1) % kArrivalSlots);
    --arrival_count_;
  }
}

// The complete messages up to offset `end` (`messages` of them are new) are echoed at once,
// or in hold mode wait behind the ones already pending. Once per scan, not per message.
void Session::accept_through(std::size_t end, std::size_t messages) noexcept {
  accepted_now_ += messages;
  if (config_.hold_messages) {
    pending_ = end - releasable_;
    pending_count_ += messages;
  } else {
    releasable_ = end;
  }
}

// Only the bytes after those already known to hold no LF are searched: O(new bytes).
Intent Session::scan_lines() {
  auto bytes = buffer_.readable();
  std::size_t line_start = parsed();
  std::size_t cursor = line_start + scanned_held_;
  std::size_t lines = 0;
  while (cursor < bytes.size()) {
    const void* lf = std::memchr(bytes.data() + cursor, '\n', bytes.size() - cursor);
    if (lf == nullptr) break;
    const std::size_t line_end =
        static_cast<std::size_t>(static_cast<const char*>(lf) - bytes.data()) + 1;
    const LineVerdict verdict =
        check_line(bytes.subspan(line_start, line_end - line_start), config_);
    if (verdict != LineVerdict::echo) {
      accept_through(line_start, lines);
      return verdict == LineVerdict::quit ? close_with(kBye) : line_too_long();
    }
    ++lines;
    line_start = line_end;
    cursor = line_end;
  }
  accept_through(line_start, lines);
  scanned_held_ = bytes.size() - line_start;
  // An incomplete line may end in CR whose LF is still on its way; it is not too long yet.
  std::size_t held = scanned_held_;
  if (held > 0 && bytes.back() == '\r') --held;
  if (held > config_.max_line) return line_too_long();
  return Intent::keep_reading;
}

// parsed() is where the next frame's header starts, so each call reads only the headers of
// frames that completed since, plus the 4 bytes of the one still incomplete: O(new bytes).
// A too-long length is caught as soon as its header is in, before any of its payload.
Intent Session::scan_frames() {
  auto bytes = buffer_.readable();
  std::size_t start = parsed();
  std::size_t frames = 0;
  while (bytes.size() - start >= kFrameHeaderSize) {
    const std::uint32_t length = read_frame_length(bytes.subspan(start).first<kFrameHeaderSize>());
    if (length > config_.max_frame) {
      accept_through(start, frames);
      fault_ = Fault::frame_too_long;
      fault_declared_ = length;
      return close_with({});
    }
    const std::size_t end = start + kFrameHeaderSize + length;
    if (end > bytes.size()) break;
    ++frames;
    start = end;
  }
  accept_through(start, frames);
  return Intent::keep_reading;
}

Intent Session::line_too_long() {
  fault_ = Fault::line_too_long;
  char reply[Buffer::kReplyReserve];
  const std::uint8_t n = format_into(reply, "error: {}\n", protocol_error());
  return close_with({reply, n});
}

std::string Session::protocol_error() const {
  switch (fault_) {
    case Fault::none:
      break;
    case Fault::line_too_long:
      return fmt::format("line too long (max {} bytes)", config_.max_line);
    case Fault::frame_too_long:
      return fmt::format("frame too long ({} > max {} bytes)", fault_declared_, config_.max_frame);
    case Fault::header_cut_short:
      return fmt::format("frame header cut short by EOF ({} of {} bytes)", fault_got_,
                         kFrameHeaderSize);
    case Fault::frame_cut_short:
      return fmt::format("frame cut short by EOF ({} of {} payload bytes)", fault_got_,
                         fault_declared_);
  }
  return {};
}

// Everything before parsed() was accepted and is still owed or pending; the rest is dropped
// and replaced by the final reply, which leaves after every message before it.
Intent Session::close_with(std::string_view reply) {
  buffer_.truncate(parsed());
  // Cannot fail: the reserve above the soft cap exceeds any reply. (Frames close with none.)
  if (!reply.empty()) buffer_.append(reply);
  return begin_close();
}

// Whatever follows the pending messages (a reply, an unterminated last line) is owed as soon
// as none is pending any more.
Intent Session::begin_close() noexcept {
  scanned_held_ = 0;
  closing_ = true;
  if (pending_ == 0) releasable_ = buffer_.size();
  return Intent::close_after_flush;
}

Intent Session::on_peer_eof() {
  const std::size_t start = parsed();
  if (!closing_ && start < buffer_.size()) {
    auto tail = buffer_.readable().subspan(start);
    if (config_.mode == Mode::line) {
      // The peer will send no LF any more: its last, unterminated line is still a line.
      if (is_quit(tail)) return close_with(kBye);
      if (config_.transform == Transform::upper) upper_in_place(tail);
      accepted_now_ = 0;
      const auto at = config_.observer != nullptr ? config_.observer->now()
                                                  : MessageObserver::Clock::time_point{};
      accept_through(buffer_.size(), 1);
      if (config_.observer != nullptr) report_received(0, at);
    } else if (config_.mode == Mode::frame) {
      return frame_cut_short();
    }
  }
  return begin_close();
}

Intent Session::frame_cut_short() {
  auto tail = buffer_.readable().subspan(parsed());
  // The tail is shorter than one maximal frame, and max_frame fits 32 bits (cap_for()).
  if (tail.size() < kFrameHeaderSize) {
    fault_ = Fault::header_cut_short;
    fault_got_ = static_cast<std::uint32_t>(tail.size());
  } else {
    fault_ = Fault::frame_cut_short;
    fault_got_ = static_cast<std::uint32_t>(tail.size() - kFrameHeaderSize);
    fault_declared_ = read_frame_length(tail.first<kFrameHeaderSize>());
  }
  return close_with({});
}

void Session::on_sent(std::size_t n) noexcept {
  buffer_.consume(n);
  releasable_ -= n;
  // Flushed and holding nothing else: a connection that owes nothing holds no buffer.
  buffer_.release_if_empty();
  if (config_.observer != nullptr) config_.observer->sent(n);
}

void Session::on_relayed_in(std::size_t n, std::size_t asked) noexcept {
  offered_ = static_cast<std::uint32_t>(std::min<std::size_t>(asked, UINT32_MAX));
  adapt_read_size(n);
  if (config_.observer == nullptr) return;
  config_.observer->received(n, 1);
  config_.observer->replied(1, {});  // echoed as it came, as a raw read is
}

void Session::on_relayed_out(std::size_t n) noexcept {
  if (config_.observer != nullptr) config_.observer->sent(n);
}

void Session::on_sent_in_place(std::size_t n) noexcept {
  buffer_.consume_in_place(n);
  releasable_ -= n;
  if (config_.observer != nullptr) config_.observer->sent(n);
}

// A frame's length is in its header; a line's is found once and kept until it is released,
// so each held line is searched twice in all: when it arrived and here.
std::size_t Session::first_pending_length() noexcept {
  auto held = buffer_.readable().subspan(releasable_, pending_);
  if (config_.mode == Mode::frame)
    return kFrameHeaderSize + read_frame_length(held.first<kFrameHeaderSize>());
  if (first_length_ == 0) {
    const void* lf = std::memchr(held.data(), '\n', held.size());
    // No LF: the unterminated last line, accepted at EOF, which is the whole of what is held.
    first_length_ = lf == nullptr
                        ? held.size()
                        : static_cast<std::size_t>(static_cast<const char*>(lf) - held.data()) + 1;
  }
  return first_length_;
}

std::optional<std::span<char>> Session::pending_message() noexcept {
  if (pending_ == 0) return std::nullopt;
  auto message = buffer_.readable().subspan(releasable_, first_pending_length());
  if (config_.mode == Mode::frame) return message.subspan(kFrameHeaderSize);
  return message.back() == '\n' ? message.first(content_length(message)) : message;
}

void Session::release_message() noexcept {
  if (pending_ == 0) return;
  const std::size_t n = first_pending_length();
  releasable_ += n;
  pending_ -= n;
  --pending_count_;
  first_length_ = 0;
  if (config_.observer != nullptr) report_released();
  if (pending_ == 0 && closing_) releasable_ = buffer_.size();
}

}  // namespace polyecho
