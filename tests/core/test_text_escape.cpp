// escape_untrusted / escape_message: nothing a terminal acts on survives (escape sequences, C1
// controls, bidirectional overrides, line separators, invalid UTF-8), printable UTF-8 does.
#include <gtest/gtest.h>

#include <string>

#include "core/text_escape.h"

namespace qrt {
namespace {

// True when `s` holds no byte or code point a terminal could act on.
bool terminal_safe(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F) return false;   // C1
    if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) == 0xAE || static_cast<unsigned char>(s[i + 2]) == 0xA8))
      return false;   // U+202E, U+2028
  }
  return true;
}

TEST(TextEscape, EscapeSequencesBecomeVisible) {
  EXPECT_EQ(escape_untrusted("\x1b[2J\x1b]0;pwned\x07"), "\\x1b[2J\\x1b]0;pwned\\x07");
  EXPECT_EQ(escape_untrusted("a\nqrt: error: forged"), "a\\nqrt: error: forged");
  EXPECT_EQ(escape_untrusted("tab\there\r"), "tab\\there\\r");
  EXPECT_EQ(escape_untrusted("back\\slash"), "back\\\\slash");
  EXPECT_EQ(escape_untrusted(std::string("nul\0byte", 8)), "nul\\x00byte");
  EXPECT_EQ(escape_untrusted("del\x7f"), "del\\x7f");
}

TEST(TextEscape, C1ControlsBidiAndSeparatorsAreEscaped) {
  // U+009B is CSI in its 8-bit form; U+202E reverses the text that follows; U+2028 breaks a line.
  EXPECT_EQ(escape_untrusted("\xc2\x9b" "2J"), "\\u{009B}2J");
  EXPECT_EQ(escape_untrusted("name\xe2\x80\xae" "txt.exe"), "name\\u{202E}txt.exe");
  EXPECT_EQ(escape_untrusted("a\xe2\x80\xa8" "b"), "a\\u{2028}b");
  EXPECT_EQ(escape_untrusted("\xe2\x81\xa6x"), "\\u{2066}x");
  EXPECT_TRUE(terminal_safe(escape_untrusted("\xc2\x9b\xe2\x80\xae\xe2\x80\xa8\x1b")));
}

TEST(TextEscape, InvalidUtf8BytesAreEscapedOneByOne) {
  EXPECT_EQ(escape_untrusted("a\xff\xfe" "b"), "a\\xff\\xfeb");
  EXPECT_EQ(escape_untrusted("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(escape_untrusted("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(escape_untrusted("\xe2\x80"), "\\xe2\\x80");            // cut short
  EXPECT_EQ(escape_untrusted("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");   // past U+10FFFF
}

TEST(TextEscape, PrintableUtf8IsKept) {
  const std::string text = "Qwen2-\xe4\xb8\xad\xe6\x96\x87 caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x96\x81the";
  EXPECT_EQ(escape_untrusted(text), text);
}

TEST(TextEscape, CutOnACharacterBoundary) {
  EXPECT_EQ(escape_untrusted("abcdef", 3), "abc...");
  // The 3-byte character starting at byte 2 is kept whole.
  EXPECT_EQ(escape_untrusted("ab\xe4\xb8\xad" "cd", 3), "ab\xe4\xb8\xad...");
  EXPECT_EQ(escape_untrusted("abc", 3), "abc");
}

TEST(TextEscape, MessagesKeepTheirOwnLines) {
  EXPECT_EQ(escape_message("first line\n    cpu_simd: ok\x1b[31m"), "first line\n    cpu_simd: ok\\x1b[31m");
  // An already escaped name inside a message stays as it was.
  EXPECT_EQ(escape_message("architecture " + escape_untrusted("a\x1b") + " is not supported"),
            "architecture a\\x1b is not supported");
  const std::string long_text(100000, 'x');
  EXPECT_EQ(escape_message(long_text), long_text);   // never cut
}

}  // namespace
}  // namespace qrt
