// Helpers shared by the readers: strict JSON parsing (duplicate keys rejected, errors as qrt::Error)
// and quoting of untrusted names for one-line error messages.
#pragma once

#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace qrt::io {

// Parses [begin, end) as JSON. Throws qrt::Error(InvalidInput) "<what>: ..." on a syntax error,
// invalid UTF-8, a key repeated inside one object (at any depth), or nesting deeper than 64 levels.
nlohmann::json parse_json_strict(const char* begin, const char* end, const std::string& what);

// What a JSON library exception says, as a qrt message part: nlohmann's "[json.exception.
// parse_error.101] " tag removed and the rest escaped for the terminal (it may quote bytes of the
// input): "parse error at line 1, column 9: syntax error ...".
std::string json_error_text(const std::exception& e);

// 'name' in quotes, escaped for a terminal (core/text_escape.h) and cut after `max` bytes, so names
// read from a hostile file can never break a one-line error message.
std::string quote_name(std::string_view s, size_t max = 200);

}  // namespace qrt::io
