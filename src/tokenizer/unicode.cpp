// Character classes and NFC from the generated tables in unicode_tables.inc.
#include "tokenizer/unicode.h"

#include <algorithm>

namespace qrt::tok {
namespace {

struct CodepointRange {
  char32_t first;
  char32_t last;
  uint8_t value;
};
struct Decomposition {
  char32_t cp;
  uint16_t offset;
  uint8_t length;
};
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};

#include "tokenizer/unicode_tables.inc"

constexpr char32_t kInvalid = 0xFFFFFFFF;

uint8_t range_lookup(const CodepointRange* begin, const CodepointRange* end, char32_t cp) {
  const CodepointRange* it = std::upper_bound(
      begin, end, cp, [](char32_t c, const CodepointRange& r) { return c < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->value : 0;
}

struct AsciiTable {
  uint8_t cls[128];
  AsciiTable() {
    for (int c = 0; c < 128; ++c) {
      cls[c] = range_lookup(std::begin(kClassRanges), std::end(kClassRanges), char32_t(c));
    }
  }
};
const AsciiTable kAscii;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  return range_lookup(std::begin(kCombiningClassRanges), std::end(kCombiningClassRanges), cp);
}

// Hangul syllables decompose and compose arithmetically (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* it = std::lower_bound(
      std::begin(kDecompositions), std::end(kDecompositions), cp,
      [](const Decomposition& d, char32_t c) { return d.cp < c; });
  if (it != std::end(kDecompositions) && it->cp == cp) {
    out.insert(out.end(), kDecompositionPool + it->offset, kDecompositionPool + it->offset + it->length);
  } else {
    out.push_back(cp);
  }
}

char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const Composition* it = std::lower_bound(
      std::begin(kCompositions), std::end(kCompositions), std::make_pair(a, b),
      [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
        return c.first != key.first ? c.first < key.first : c.second < key.second;
      });
  if (it != std::end(kCompositions) && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

uint8_t char_class(char32_t cp) {
  if (cp < 128) return kAscii.cls[cp];
  if (cp > 0x10FFFF) return kOther;
  return range_lookup(std::begin(kClassRanges), std::end(kClassRanges), cp);
}

char32_t decode_utf8(std::string_view s, size_t pos, size_t* len) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  *len = 1;
  if (b0 < 0x80) return b0;
  size_t n;
  char32_t cp;
  char32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return kInvalid;
  }
  if (pos + n > s.size()) return kInvalid;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[pos + k]);
    if ((b & 0xC0) != 0x80) return kInvalid;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalid;
  *len = n;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<CodePoint> to_code_points(std::string_view text) {
  std::vector<CodePoint> out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len;
    const char32_t cp = decode_utf8(text, pos, &len);
    out.push_back({cp, static_cast<uint32_t>(pos), char_class(cp)});
    pos += len;
  }
  return out;
}

std::string nfc(std::string_view text) {
  // Quick check: code points below U+0300 are all NFC-stable, and so are ill-formed bytes (kept).
  bool simple = true;
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0xCC) {  // lead byte of U+0300 and above
      simple = false;
      break;
    }
  }
  if (simple) return std::string(text);

  std::string out;
  out.reserve(text.size());
  std::vector<char32_t> buf;  // decomposed run being composed
  auto flush = [&]() {
    if (buf.empty()) return;
    // Canonical ordering: stable sort of each run of non-starters by combining class.
    size_t i = 0;
    while (i < buf.size()) {
      if (combining_class(buf[i]) == 0) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < buf.size() && combining_class(buf[j]) != 0) ++j;
      std::stable_sort(buf.begin() + i, buf.begin() + j, [](char32_t a, char32_t b) {
        return combining_class(a) < combining_class(b);
      });
      i = j;
    }
    // Canonical composition.
    size_t starter = SIZE_MAX;
    uint8_t last_cc = 0;
    std::vector<char32_t> composed;
    composed.reserve(buf.size());
    for (const char32_t cp : buf) {
      const uint8_t cc = combining_class(cp);
      if (starter != SIZE_MAX) {
        const bool blocked = composed.size() - 1 != starter && (last_cc == 0 || last_cc >= cc);
        if (!blocked) {
          if (const char32_t c = compose(composed[starter], cp)) {
            composed[starter] = c;
            continue;
          }
        }
      }
      if (cc == 0) {
        starter = composed.size();
        last_cc = 0;
      } else {
        last_cc = cc;
      }
      composed.push_back(cp);
    }
    for (const char32_t cp : composed) append_utf8(out, cp);
    buf.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len;
    const char32_t cp = decode_utf8(text, pos, &len);
    if (cp == kInvalid) {
      flush();
      out.append(text.substr(pos, len));
    } else {
      decompose(cp, buf);
    }
    pos += len;
  }
  flush();
  return out;
}

}  // namespace qrt::tok
