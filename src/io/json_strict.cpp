// Strict JSON parsing for file headers and name quoting for messages.
#include "io/json_strict.h"

#include <vector>

#include "core/text_escape.h"
#include "qrt/error.h"

namespace qrt::io {

namespace {

constexpr int kMaxDepth = 64;
using json = nlohmann::json;

// A SAX handler that builds the document itself, so that duplicate keys are found with one map
// lookup each. (nlohmann's parser callback, the obvious way to see keys, makes its DOM builder
// rescan the parent object after every nested value: 80,000 tensors in a safetensors header took
// minutes.) Depth is bounded because copying, dumping and comparing values recurse.
class StrictBuilder {
 public:
  explicit StrictBuilder(const std::string& what) : what_(what) {}

  bool null() { return put(json(nullptr)); }
  bool boolean(bool v) { return put(json(v)); }
  bool number_integer(json::number_integer_t v) { return put(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(json(v)); }
  bool string(json::string_t& v) { return put(json(std::move(v))); }
  bool binary(json::binary_t& v) { return put(json::binary(std::move(v))); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    if (stack_.back()->contains(k)) return fail(what_ + ": duplicate key " + quote_name(k));
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    return fail(what_ + ": invalid JSON: " + json_error_text(e));
  }

  json take() { return std::move(root_); }
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  // Adds `v` where the document is: the root, the end of the open array, or the open object
  // under the last key. Returns where it went (stable: the parent is not touched until `v` ends).
  json* place(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    return &(top[key_] = std::move(v));
  }
  bool put(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& container) {
    if (stack_.size() >= static_cast<size_t>(kMaxDepth))
      return fail(what_ + ": JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    stack_.push_back(place(std::move(container)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  const std::string& what_;
  json root_;
  std::vector<json*> stack_;
  std::string key_;
  std::string error_;
};

}  // namespace

nlohmann::json parse_json_strict(const char* begin, const char* end, const std::string& what) {
  StrictBuilder builder(what);
  const bool ok = json::sax_parse(begin, end, &builder, nlohmann::json::input_format_t::json, /*strict=*/true);
  if (!ok || !builder.error().empty())
    throw invalid_input(builder.error().empty() ? what + ": invalid JSON" : builder.error());
  return builder.take();
}

std::string json_error_text(const std::exception& e) {
  std::string_view text = e.what();
  if (text.rfind("[json.exception.", 0) == 0) {
    const size_t close = text.find("] ");
    if (close != std::string_view::npos) text.remove_prefix(close + 2);
  }
  // nlohmann quotes the offending bytes, which may be invalid UTF-8 or control characters.
  return escape_untrusted(text, 400);
}

std::string quote_name(std::string_view s, size_t max) { return "'" + escape_untrusted(s, max) + "'"; }

}  // namespace qrt::io
