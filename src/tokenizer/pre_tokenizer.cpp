// Hand-written equivalents of the pre-tokenizer regexes. Each match_* function returns the end of
// the match the regex finds at position i; every alternative set covers every character, so the
// match is never empty and the pieces tile the text (Split "Isolated" behaviour).
#include "tokenizer/pre_tokenizer.h"

#include <string>

#include "tokenizer/unicode.h"

namespace qrt::tok {
namespace {

using Cps = std::vector<CodePoint>;

bool is_letter(const CodePoint& c) { return c.cls == kLetter; }
bool is_number(const CodePoint& c) { return c.cls == kNumber; }
bool is_space(const CodePoint& c) { return c.cls == kSpace; }
// [^\s\p{L}\p{N}]
bool is_other(const CodePoint& c) { return c.cls == kOther; }
bool is_crlf(const CodePoint& c) { return c.cp == '\r' || c.cp == '\n'; }

size_t run_end(const Cps& c, size_t i, size_t n, bool (*pred)(const CodePoint&)) {
  while (i < n && pred(c[i])) ++i;
  return i;
}

// 's|'t|'re|'ve|'m|'ll|'d, case-sensitive or ASCII case-insensitive. Returns 0 when no match.
size_t match_contraction(const Cps& c, size_t i, size_t n, bool ignore_case) {
  if (c[i].cp != '\'' || i + 1 >= n) return 0;
  auto lower = [&](size_t k) -> char32_t {
    char32_t v = c[k].cp;
    if (ignore_case && v >= 'A' && v <= 'Z') v += 'a' - 'A';
    // Oniguruma's case-insensitive match uses Unicode case folding: U+017F LATIN SMALL LETTER LONG S
    // folds to 's' (no other code point folds onto a letter of these contractions).
    if (ignore_case && v == 0x17F) v = 's';
    return v;
  };
  const char32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
  if (i + 2 < n) {
    const char32_t b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace character: the run, less its last character when a non-space
// follows and the run is longer than one (the last space then goes with the next word).
size_t match_trailing_space(const Cps& c, size_t i, size_t n) {
  const size_t k = run_end(c, i, n, is_space);
  if (k == n || k - i == 1) return k;
  return k - 1;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Cps& c, size_t i, size_t n) {
  if (size_t e = match_contraction(c, i, n, false)) return e;
  const size_t s = (c[i].cp == ' ' && i + 1 < n) ? i + 1 : i;
  if (is_letter(c[s])) return run_end(c, s, n, is_letter);
  if (is_number(c[s])) return run_end(c, s, n, is_number);
  if (is_other(c[s])) return run_end(c, s, n, is_other);
  return match_trailing_space(c, i, n);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}
//   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_llama3(const Cps& c, size_t i, size_t n, size_t max_digits) {
  if (size_t e = match_contraction(c, i, n, true)) return e;
  if (is_letter(c[i])) return run_end(c, i, n, is_letter);
  if (!is_crlf(c[i]) && !is_number(c[i]) && i + 1 < n && is_letter(c[i + 1])) {
    return run_end(c, i + 1, n, is_letter);
  }
  if (is_number(c[i])) {
    size_t e = i;
    while (e < n && e - i < max_digits && is_number(c[e])) ++e;
    return e;
  }
  const size_t s = (c[i].cp == ' ' && i + 1 < n && is_other(c[i + 1])) ? i + 1 : i;
  if (is_other(c[s])) {
    size_t e = run_end(c, s, n, is_other);
    return run_end(c, e, n, is_crlf);
  }
  // c[i] is whitespace here. \s*[\r\n]+ backtracks to the last CR/LF of the whitespace run.
  const size_t k = run_end(c, i, n, is_space);
  for (size_t p = k; p > i; --p) {
    if (is_crlf(c[p - 1])) return p;
  }
  return match_trailing_space(c, i, n);
}

void split_with(std::string_view text, PreStep step, std::vector<std::string>& out) {
  const Cps c = to_code_points(text);
  const size_t n = c.size();
  auto offset = [&](size_t k) { return k < n ? size_t(c[k].offset) : text.size(); };
  size_t i = 0;
  while (i < n) {
    size_t e;
    switch (step) {
      case PreStep::SplitGpt2: e = match_gpt2(c, i, n); break;
      case PreStep::SplitLlama3: e = match_llama3(c, i, n, 3); break;
      case PreStep::SplitQwen2: e = match_llama3(c, i, n, 1); break;
      case PreStep::DigitsIndividual:
        e = is_number(c[i]) ? i + 1 : run_end(c, i, n, [](const CodePoint& x) { return !is_number(x); });
        break;
      case PreStep::DigitsGrouped:
        e = is_number(c[i]) ? run_end(c, i, n, is_number)
                            : run_end(c, i, n, [](const CodePoint& x) { return !is_number(x); });
        break;
      default: e = n; break;
    }
    if (e <= i) e = i + 1;  // defensive: never loop without progress
    out.emplace_back(text.substr(offset(i), offset(e) - offset(i)));
    i = e;
  }
}

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

const PreStep* pre_step_for_regex(std::string_view pattern) {
  static const PreStep gpt2 = PreStep::SplitGpt2, llama3 = PreStep::SplitLlama3,
                       qwen2 = PreStep::SplitQwen2;
  if (pattern == kGpt2Regex) return &gpt2;
  if (pattern == kLlama3Regex) return &llama3;
  if (pattern == kQwen2Regex) return &qwen2;
  return nullptr;
}

std::vector<std::string> pre_tokenize(std::string_view text, const std::vector<PreStep>& steps) {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(text);
  std::vector<std::string> next;
  for (const PreStep step : steps) {
    next.clear();
    for (std::string& piece : pieces) {
      if (step == PreStep::PrefixSpace) {
        if (piece.empty() || piece[0] != ' ') piece.insert(piece.begin(), ' ');
        next.push_back(std::move(piece));
      } else {
        split_with(piece, step, next);
      }
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace qrt::tok
