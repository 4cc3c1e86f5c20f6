// Unicode helpers for the tokenizer: UTF-8 decoding, the character classes of the pre-tokenizer
// regexes (\p{L}, \p{N}, \s) from a committed table (tools/make_unicode_tables.py), and NFC.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qrt::tok {

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 4 };

// Class of a code point (an invalid code point is kOther).
uint8_t char_class(char32_t cp);

// Decodes the UTF-8 sequence at bytes[pos]; sets `len` to its byte length. An ill-formed byte
// decodes as one code point 0xFFFFFFFF of length 1 (class kOther), so every byte is covered.
char32_t decode_utf8(std::string_view bytes, size_t pos, size_t* len);
void append_utf8(std::string& out, char32_t cp);

// One code point of a text being pre-tokenized: its value, class and byte offset.
struct CodePoint {
  char32_t cp;
  uint32_t offset;
  uint8_t cls;
};
std::vector<CodePoint> to_code_points(std::string_view text);

// Unicode Normalization Form C. Text that is already NFC (all of it below U+0300 in particular)
// comes back unchanged without allocation beyond the copy.
std::string nfc(std::string_view text);

}  // namespace qrt::tok
