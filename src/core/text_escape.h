// Escaping of text that comes from files (GGUF metadata, config.json, tensor names, tokenizer and
// tuning-cache entries) before it reaches a terminal or a one-line message. A hostile file could
// otherwise clear the screen, set the window title, or forge output lines with escape sequences,
// C1 controls, line separators or bidirectional overrides. Every printer of untrusted text goes
// through these two functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace qrt {

// `s` with everything a terminal could act on written as a visible escape: C0 controls and DEL as
// \n, \t, \r or \xNN, a backslash as \\, bytes that are not valid UTF-8 as \xNN, and the code points
// that steer a terminal or the text direction (C1 controls U+0080-U+009F, U+2028/U+2029 and the
// bidirectional marks and overrides) as \u{XXXX}. Printable UTF-8 (accents, CJK, emoji) is kept.
// Cut after `max_bytes` of input (on a character boundary) with "..." appended.
std::string escape_untrusted(std::string_view s, size_t max_bytes = 4096);

// The same escaping for a whole message that may hold several lines of its own (an error with a
// per-backend list): '\n' and '\\' are kept (names inside messages were escaped where they were
// inserted: escaping their backslashes again would print \\x1b), everything else is escaped as
// above. For the CLI's last line of defence, where a message is printed.
std::string escape_message(std::string_view s);

}  // namespace qrt
