#include "support/backend_cases.hpp"

#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "support/server_process.hpp"

namespace polyecho::test {

unsigned BackendCase::serving_processes() const {
  for (std::size_t i = 0; i + 1 < flags.size(); ++i) {
    if (flags[i] == "--processes") return static_cast<unsigned>(std::stoul(flags[i + 1]));
  }
  return 1;
}

std::vector<std::string> BackendCase::args(const std::vector<std::string>& extra) const {
  std::vector<std::string> all{"--backend", backend};
  all.insert(all.end(), flags.begin(), flags.end());
  all.insert(all.end(), extra.begin(), extra.end());
  return all;
}

namespace {

std::string sanitize(const std::string& text) {
  std::string name;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      name += c;
    else if (!name.empty() && name.back() != '_')
      name += '_';
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name;
}

std::vector<BackendCase> discover() {
  const auto listing =
      nlohmann::json::parse(run_command(server_binary() + " --list-backends --json").output);
  std::vector<BackendCase> cases;
  for (const auto& entry : listing) {
    std::vector<std::string> variants{""};
    for (const auto& v : entry.at("variants")) variants.push_back(v.get<std::string>());
    for (const auto& variant : variants) {
      BackendCase c;
      c.backend = entry.at("name").get<std::string>();
      c.serves_concurrently = entry.at("serves_concurrently").get<bool>();
      c.uses_workers = entry.at("uses_workers").get<bool>();
      c.loop_model = entry.at("loop_model").get<bool>();
      std::istringstream words(variant);
      std::string word;
      while (words >> word) c.flags.push_back(word);
      c.label = sanitize(c.backend + " " + variant);
      cases.push_back(std::move(c));
    }
  }
  if (cases.empty()) throw std::runtime_error("the server lists no backends");
  return cases;
}

}  // namespace

const std::vector<BackendCase>& all_backend_cases() {
  static const std::vector<BackendCase> cases = discover();
  return cases;
}

std::string case_name(const BackendCase& c) {
  return c.label;
}

void PrintTo(const BackendCase& c, std::ostream* out) {
  *out << c.label;
}

}  // namespace polyecho::test
