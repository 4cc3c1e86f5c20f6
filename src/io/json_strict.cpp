// Strict JSON parsing for file headers and name quoting for messages.
#include "io/json_strict.h"

#include <set>
#include <vector>

#include "qrt/error.h"

namespace qrt::io {

namespace {
constexpr int kMaxDepth = 64;
}  // namespace

nlohmann::json parse_json_strict(const char* begin, const char* end, const std::string& what) {
  // One set of seen keys per open object; nlohmann reports keys through the parser callback.
  std::vector<std::set<std::string>> seen;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    // nlohmann parses iteratively, but copying, dumping and comparing values recurse: bound the depth.
    if ((event == E::object_start || event == E::array_start) && depth >= kMaxDepth)
      throw invalid_input(what + ": JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (event == E::object_start) {
      seen.emplace_back();
    } else if (event == E::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (event == E::key && !seen.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.back().insert(key).second) throw invalid_input(what + ": duplicate key " + quote_name(key));
    }
    return true;
  };
  try {
    return nlohmann::json::parse(begin, end, callback, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann quotes the offending bytes, which may be invalid UTF-8 or control characters.
    const std::string q = quote_name(e.what(), 400);
    throw invalid_input(what + ": invalid JSON: " + q.substr(1, q.size() - 2));
  }
}

std::string quote_name(std::string_view s, size_t max) {
  static const char* hex = "0123456789abcdef";
  std::string r = "'";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      r += "\\n";
    } else if (c == '\\') {
      r += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    } else {
      r += static_cast<char>(c);
    }
  }
  if (s.size() > max) r += "...";
  return r + "'";
}

}  // namespace qrt::io
