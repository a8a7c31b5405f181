#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "polyecho/session.hpp"

namespace polyecho::test {

// A frame as it travels: 4-byte big-endian length, then the payload.
inline std::string frame(std::string_view payload) {
  char header[kFrameHeaderSize];
  write_frame_header(static_cast<std::uint32_t>(payload.size()), header);
  return std::string(header, kFrameHeaderSize) + std::string(payload);
}

// Plays the transport for the sans-IO protocol tests: copies input into the session in chunks
// of at most `chunk` bytes, "sends" output as soon as there is any, and stops feeding once the
// session is closing. In hold mode it does the "work" of a pending message (records it) and
// releases it only when told: work(), or after every read once work_on_arrival() is set.
class SessionHarness {
 public:
  explicit SessionHarness(const ProtocolConfig& config) : session_(config) {}

  void feed(std::string_view input, std::size_t chunk = 1 << 30) {
    while (!input.empty() && !session_.closing()) {
      auto space = session_.input_space();
      if (space.empty()) {
        step();
        space = session_.input_space();
        ASSERT_FALSE(space.empty()) << "no room after draining output";
      }
      const std::size_t n = std::min({space.size(), chunk, input.size()});
      std::memcpy(space.data(), input.data(), n);
      input.remove_prefix(n);
      session_.on_received(n);
      step();
    }
  }
  void eof() {
    session_.on_peer_eof();
    step();
  }
  void drain() {
    auto out = session_.output();
    sent_.append(out.data(), out.size());
    session_.on_sent(out.size());
  }
  // Works and releases every pending message, in order, then sends; returns how many.
  std::size_t work() {
    std::size_t n = 0;
    for (auto message = session_.pending_message(); message; message = session_.pending_message()) {
      worked_.emplace_back(message->data(), message->size());
      session_.release_message();
      ++n;
    }
    drain();
    return n;
  }
  void work_on_arrival(bool on) { work_on_arrival_ = on; }

  [[nodiscard]] const std::string& sent() const { return sent_; }
  [[nodiscard]] const std::vector<std::string>& worked() const { return worked_; }
  Session& session() { return session_; }

 private:
  void step() {
    if (work_on_arrival_) work();
    drain();
  }

  Session session_;
  std::string sent_;
  std::vector<std::string> worked_;
  bool work_on_arrival_ = false;
};

}  // namespace polyecho::test
