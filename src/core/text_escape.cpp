// Terminal-safe escaping of untrusted text (see text_escape.h).
#include "core/text_escape.h"

#include <cstdint>
#include <cstdio>

namespace qrt {

namespace {

// Length of the valid UTF-8 sequence starting at s[i] and its code point, or 0 when the bytes there
// are not a well-formed sequence (overlong forms, surrogates and values past U+10FFFF included).
size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const size_t left = s.size() - i;
  const auto cont = [&](size_t k) { return (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF && left >= 2 && cont(1)) {
    *cp = (uint32_t{c} & 0x1F) << 6 | (b(1) & 0x3F);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF && left >= 3 && cont(1) && cont(2)) {
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;   // UTF-16 surrogate
    *cp = (uint32_t{c} & 0x0F) << 12 | (uint32_t{b(1)} & 0x3F) << 6 | (b(2) & 0x3F);
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && left >= 4 && cont(1) && cont(2) && cont(3)) {
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;   // past U+10FFFF
    *cp = (uint32_t{c} & 0x07) << 18 | (uint32_t{b(1)} & 0x3F) << 12 | (uint32_t{b(2)} & 0x3F) << 6 | (b(3) & 0x3F);
    return 4;
  }
  return 0;
}

// Code points a terminal or a text renderer acts on rather than shows.
bool steering_code_point(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) ||       // C1 controls (CSI, OSC, ... in 8-bit form)
         cp == 0x200E || cp == 0x200F ||     // left-to-right / right-to-left marks
         cp == 0x2028 || cp == 0x2029 ||     // line / paragraph separators
         (cp >= 0x202A && cp <= 0x202E) ||   // bidirectional embeddings and overrides
         (cp >= 0x2066 && cp <= 0x2069) ||   // bidirectional isolates
         cp == 0x061C || cp == 0xFEFF;       // Arabic letter mark, byte-order mark
}

void append_hex_byte(std::string& out, unsigned char c) {
  static const char* hex = "0123456789abcdef";
  out += "\\x";
  out += hex[c >> 4];
  out += hex[c & 15];
}

// message: a whole message (its own newlines kept; backslashes kept, since names inside it were
// escaped where they were inserted and a backslash does nothing to a terminal).
std::string escape(std::string_view s, size_t max_bytes, bool message) {
  std::string out;
  out.reserve(s.size() < max_bytes ? s.size() : max_bytes);
  size_t i = 0;
  while (i < s.size()) {
    if (i >= max_bytes) {
      out += "...";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == '\n' && message) out += '\n';
      else if (c == '\n') out += "\\n";
      else if (c == '\t') out += "\\t";
      else if (c == '\r') out += "\\r";
      else if (c == '\\') out += message ? "\\" : "\\\\";
      else if (c < 0x20 || c == 0x7F) append_hex_byte(out, c);
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t n = utf8_sequence(s, i, &cp);
    if (n == 0) {
      append_hex_byte(out, c);
      ++i;
    } else if (steering_code_point(cp)) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\u{%04X}", static_cast<unsigned>(cp));
      out += buf;
      i += n;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace

std::string escape_untrusted(std::string_view s, size_t max_bytes) { return escape(s, max_bytes, false); }

std::string escape_message(std::string_view s) { return escape(s, s.size(), true); }

}  // namespace qrt
