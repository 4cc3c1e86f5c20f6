// Byte-level BPE: table building, encode (added tokens -> normalizer -> pre-tokenizer -> merges),
// decode, streaming decode and the spec loader that the GGUF adapter uses.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <queue>

#include "qrt/error.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace qrt {
namespace {

// The GPT-2 byte alphabet: the printable bytes keep their code point, the 68 others take
// U+0100.. in byte order, so every byte is one visible character.
struct ByteAlphabet {
  char32_t to_cp[256];
  std::string to_utf8[256];
  ByteAlphabet() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      to_cp[b] = printable ? char32_t(b) : char32_t(256 + extra++);
      tok::append_utf8(to_utf8[b], to_cp[b]);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// What HF's ByteLevel decoder gives for one token: its characters mapped back to bytes, or the
// token's own UTF-8 when one of its characters is outside the byte alphabet.
std::string decode_token_text(const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len;
    const char32_t cp = tok::decode_utf8(text, pos, &len);
    const int b = alphabet_to_byte(cp);
    if (b < 0) return text;
    out.push_back(static_cast<char>(b));
    pos += len;
  }
  return out;
}

constexpr std::string_view kMetaspace = "\xE2\x96\x81";   // U+2581 "▁"

// "<0xAB>" -> 0xAB, else -1 (HF ByteFallback: exactly six characters, two hex digits).
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

bool is_whitespace_cp(char32_t cp) { return tok::char_class(cp) == tok::kSpace; }
bool is_word_cp(char32_t cp) {
  const uint8_t c = tok::char_class(cp);
  return c == tok::kLetter || c == tok::kNumber || cp == '_';
}

// Start of the UTF-8 character that ends at byte `end` (exclusive).
size_t prev_char_start(std::string_view s, size_t end) {
  size_t p = end - 1;
  for (int k = 0; k < 3 && p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80; ++k) --p;
  return p;
}

}  // namespace

char32_t byte_to_alphabet(uint8_t b) { return alphabet().to_cp[b]; }

int alphabet_to_byte(char32_t cp) {
  static const std::vector<int16_t> inverse = [] {
    std::vector<int16_t> v(512, -1);
    for (int b = 0; b < 256; ++b) v[alphabet().to_cp[b]] = int16_t(b);
    return v;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

const char* pre_tokenizer_kind_name(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::Gpt2: return "gpt2";
    case PreTokenizerKind::Llama3: return "llama3";
    case PreTokenizerKind::Qwen2: return "qwen2";
    case PreTokenizerKind::SmolLM: return "smollm";
    case PreTokenizerKind::SentencePiece: return "sentencepiece";
  }
  return "?";
}

std::optional<PreTokenizerKind> pre_tokenizer_kind_from_gguf(const std::string& pre) {
  if (pre == "gpt2" || pre == "gpt-2" || pre == "phi-2" || pre == "olmo" || pre == "jais" ||
      pre == "roberta-bpe" || pre == "poro-chat" || pre == "viking") {
    return PreTokenizerKind::Gpt2;
  }
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" ||
      pre == "pixtral") {
    return PreTokenizerKind::Llama3;
  }
  if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "megrez") return PreTokenizerKind::Qwen2;
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") {
    return PreTokenizerKind::SmolLM;
  }
  return std::nullopt;
}

static std::vector<tok::PreStep> steps_for_kind(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::Gpt2: return {tok::PreStep::SplitGpt2};
    case PreTokenizerKind::Llama3: return {tok::PreStep::SplitLlama3};
    case PreTokenizerKind::Qwen2: return {tok::PreStep::SplitQwen2};
    case PreTokenizerKind::SmolLM: return {tok::PreStep::DigitsIndividual, tok::PreStep::SplitGpt2};
    case PreTokenizerKind::SentencePiece: return {};
  }
  return {tok::PreStep::SplitGpt2};
}

// ---------------------------------------------------------------------------------------------
// Building the tables

std::unique_ptr<Tokenizer::Impl> Tokenizer::Impl::build(TokenizerParts p) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  const std::string& origin = p.origin;

  t.token_to_id.reserve(p.tokens.size() + p.added.size());
  for (size_t id = 0; id < p.tokens.size(); ++id) {
    if (!p.tokens[id].empty()) t.token_to_id.emplace(p.tokens[id], int32_t(id));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = t.token_to_id.find(alphabet().to_utf8[b]);
    t.byte_id[b] = it == t.token_to_id.end() ? -1 : it->second;
  }
  t.merges.reserve(p.merges.size());
  for (size_t rank = 0; rank < p.merges.size(); ++rank) {
    // (No structured binding: clang 14 cannot capture one in the lambda below.)
    const std::string& left = p.merges[rank].first;
    const std::string& right = p.merges[rank].second;
    auto find = [&](const std::string& s) {
      auto it = t.token_to_id.find(s);
      if (it == t.token_to_id.end()) {
        throw invalid_input(origin + ": merge " + std::to_string(rank) + " '" + left + " " + right +
                            "' uses '" + s + "', which is not in the vocabulary");
      }
      return it->second;
    };
    const int32_t a = find(left), b = find(right), m = find(left + right);
    // A repeated pair keeps its last rank, as HF's merge map does.
    t.merges.insert_or_assign(pair_key(a, b), std::make_pair(int32_t(rank), m));
  }

  size_t n = p.tokens.size();
  for (const AddedToken& a : p.added) {
    if (a.id < 0) throw invalid_input(origin + ": added token '" + a.content + "' has a negative id");
    if (a.content.empty()) throw invalid_input(origin + ": added token " + std::to_string(a.id) + " is empty");
    n = std::max(n, size_t(a.id) + 1);
  }
  if (n == 0) throw invalid_input(origin + ": the vocabulary is empty");
  // Ids index dense tables: refuse a sparse id that would make them huge (no real vocabulary comes near).
  constexpr size_t kMaxVocab = size_t(1) << 24;
  if (n > kMaxVocab) {
    throw invalid_input(origin + ": token id " + std::to_string(n - 1) + " is too large (qrt allows up to " +
                        std::to_string(kMaxVocab) + " tokens)");
  }
  t.pieces.resize(n);
  t.special.assign(n, 0);
  auto token_piece = [&](const std::string& text) -> std::string {
    if (!p.sentencepiece) return decode_token_text(text);
    if (p.decode_byte_fallback) {
      const int b = parse_byte_token(text);
      if (b >= 0) return std::string(1, static_cast<char>(b));
    }
    return p.decode_replace_space ? replace_all(text, kMetaspace, " ") : text;
  };
  for (size_t id = 0; id < p.tokens.size(); ++id) t.pieces[id] = token_piece(p.tokens[id]);
  t.is_byte_token.assign(n, 0);
  for (int b = 0; b < 256; ++b) t.byte_token_id[b] = -1;
  if (p.sentencepiece) {
    for (size_t id = 0; id < p.tokens.size(); ++id) {
      const int b = parse_byte_token(p.tokens[id]);
      if (b < 0) continue;
      t.is_byte_token[id] = p.decode_byte_fallback ? 1 : 0;
      // HF looks byte tokens up as "<0x%02X>" (upper case).
      char name[16];
      std::snprintf(name, sizeof name, "<0x%02X>", unsigned(b));
      if (p.tokens[id] == name) t.byte_token_id[b] = int32_t(id);
    }
  }
  p.tokens.resize(n);
  for (size_t k = 0; k < p.added.size(); ++k) {
    const AddedToken& a = p.added[k];
    t.token_to_id.insert_or_assign(a.content, a.id);
    p.tokens[a.id] = a.content;   // id_to_token: the added vocabulary first, as HF
    t.pieces[a.id] = token_piece(a.content);
    if (a.special) t.special[a.id] = 1;
    auto& table = a.normalized ? t.norm_added_by_byte : t.raw_added_by_byte;
    table[static_cast<unsigned char>(a.content[0])].push_back(int32_t(k));
    (a.normalized ? t.has_norm_added : t.has_raw_added) = true;
  }
  for (auto* tables : {t.raw_added_by_byte, t.norm_added_by_byte}) {
    for (int b = 0; b < 256; ++b) {
      std::stable_sort(tables[b].begin(), tables[b].end(), [&](int32_t x, int32_t y) {
        return p.added[x].content.size() > p.added[y].content.size();
      });
    }
  }
  auto valid_id = [&](int32_t id) { return id >= 0 && size_t(id) < n ? id : -1; };
  p.bos_id = valid_id(p.bos_id);
  p.eos_id = valid_id(p.eos_id);
  p.pad_id = valid_id(p.pad_id);
  p.unk_id = valid_id(p.unk_id);
  for (int32_t id : p.prefix_ids) {
    if (valid_id(id) < 0) throw invalid_input(origin + ": post-processor token id " + std::to_string(id) + " out of range");
  }
  for (int32_t id : p.suffix_ids) {
    if (valid_id(id) < 0) throw invalid_input(origin + ": post-processor token id " + std::to_string(id) + " out of range");
  }
  if (p.bos_token_text.empty() && p.bos_id >= 0) {
    p.bos_token_text = p.bos_id < int32_t(p.tokens.size()) && !p.tokens[p.bos_id].empty()
                           ? p.tokens[p.bos_id]
                           : t.pieces[p.bos_id];
  }
  t.chat = ChatTemplate::detect(p.chat_template, t.token_to_id.count("<|im_start|>") > 0,
                                t.token_to_id.count("<|start_header_id|>") > 0, p.bos_token_text);
  t.parts = std::move(p);
  return impl;
}

// ---------------------------------------------------------------------------------------------
// Encoding

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (parts.ignore_merges) {
    std::string mapped;
    if (parts.sentencepiece) {
      mapped = word;
    } else {
      mapped.reserve(word.size() * 2);
      for (const char c : word) mapped += alphabet().to_utf8[static_cast<unsigned char>(c)];
    }
    auto it = token_to_id.find(mapped);
    if (it != token_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  constexpr size_t kCacheMaxWord = 64;
  const bool cacheable = word.size() <= kCacheMaxWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(std::string(word));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }

  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  auto push_symbol = [&](int32_t id) {
    const int32_t k = int32_t(sym.size());
    sym.push_back({id, k - 1, k + 1, true});
  };
  // A symbol missing from the vocabulary: HF emits unk (fused when asked) or drops it.
  auto push_unknown = [&]() {
    if (parts.unk_id < 0) return;
    if (parts.fuse_unk && !sym.empty() && sym.back().id == parts.unk_id) return;
    push_symbol(parts.unk_id);
  };
  if (!parts.sentencepiece) {
    for (const char c : word) {
      const int32_t id = byte_id[static_cast<unsigned char>(c)];
      id < 0 ? push_unknown() : push_symbol(id);
    }
  } else {
    // Characters are the symbols; one missing from the vocabulary falls back to its UTF-8 bytes
    // as <0xXX> tokens (all of them or none), else unk.
    size_t pos = 0;
    std::string ch;
    while (pos < word.size()) {
      size_t len;
      tok::decode_utf8(word, pos, &len);
      ch.assign(word.substr(pos, len));
      pos += len;
      auto it = token_to_id.find(ch);
      if (it != token_to_id.end()) {
        push_symbol(it->second);
        continue;
      }
      bool all_bytes = parts.byte_fallback;
      for (size_t k = 0; all_bytes && k < ch.size(); ++k) {
        all_bytes = byte_token_id[static_cast<unsigned char>(ch[k])] >= 0;
      }
      if (all_bytes) {
        for (const char c : ch) push_symbol(byte_token_id[static_cast<unsigned char>(c)]);
      } else {
        push_unknown();
      }
    }
  }
  if (!sym.empty()) sym.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push_pair = [&](int32_t pos) {
    const int32_t nx = sym[pos].next;
    if (nx < 0) return;
    auto it = merges.find(pair_key(sym[pos].id, sym[nx].id));
    if (it != merges.end()) heap.push({it->second.first, pos, it->second.second});
  };
  for (int32_t k = 0; k + 1 < int32_t(sym.size()); ++k) push_pair(k);
  // Lowest rank first, leftmost among equals, as HF's BPE merge loop.
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    auto it = merges.find(pair_key(left.id, right.id));
    if (it == merges.end() || it->second.first != top.rank) continue;   // stale entry
    left.id = top.merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  const size_t first = out.size();
  for (int32_t k = sym.empty() ? -1 : 0; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() > 50000) cache.clear();
    cache.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

void Tokenizer::Impl::encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
  if (!parts.sentencepiece) {
    for (const std::string& piece : tok::pre_tokenize(text, parts.pre_steps)) bpe_word(piece, out);
    return;
  }
  // SentencePiece: the normalizers (Prepend, Replace) then Metaspace, as HF applies them.
  std::string s;
  if (parts.prepend_normalizer && !text.empty()) s.append(kMetaspace);
  s.append(text);
  if (parts.replace_space) s = replace_all(s, " ", kMetaspace);
  const bool starts_with_meta = std::string_view(s).substr(0, 3) == kMetaspace;
  if (!starts_with_meta && !s.empty() &&
      (parts.metaspace_prepend == TokenizerParts::Prepend::Always ||
       (parts.metaspace_prepend == TokenizerParts::Prepend::First && at_start))) {
    s.insert(0, kMetaspace);
  }
  if (!parts.metaspace_split) {
    bpe_word(s, out);
    return;
  }
  // Metaspace(split): each "▁" starts a new piece (MergedWithNext).
  size_t start = 0;
  size_t pos = s.find(kMetaspace, 1);
  while (pos != std::string::npos) {
    bpe_word(std::string_view(s).substr(start, pos - start), out);
    start = pos;
    pos = s.find(kMetaspace, pos + 3);
  }
  bpe_word(std::string_view(s).substr(start), out);
}

namespace {

// Splits `text` at the added tokens of `table` (leftmost-longest, HF's AddedVocabulary rules for
// single_word / lstrip / rstrip). Calls plain(segment) and token(id) in order.
template <typename Plain, typename Token>
void split_added(std::string_view text, const std::vector<int32_t>* table,
                 const std::vector<AddedToken>& added, Plain&& plain, Token&& token) {
  size_t seg_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const auto& cands = table[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (const int32_t k : cands) {
      const std::string& c = added[k].content;
      if (text.size() - i >= c.size() && std::memcmp(text.data() + i, c.data(), c.size()) == 0) {
        hit = &added[k];
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, end = i + hit->content.size();
    if (hit->single_word) {
      bool ok = true;
      if (start > 0) {
        size_t len;
        const size_t p = prev_char_start(text, start);
        ok = !is_word_cp(tok::decode_utf8(text, p, &len));
      }
      if (ok && end < text.size()) {
        size_t len;
        ok = !is_word_cp(tok::decode_utf8(text, end, &len));
      }
      if (!ok) {
        i = end;
        continue;
      }
    }
    if (hit->lstrip) {
      while (start > seg_start) {
        size_t len;
        const size_t p = prev_char_start(text, start);
        if (!is_whitespace_cp(tok::decode_utf8(text, p, &len))) break;
        start = p;
      }
    }
    if (hit->rstrip) {
      while (end < text.size()) {
        size_t len;
        const char32_t cp = tok::decode_utf8(text, end, &len);
        if (!is_whitespace_cp(cp)) break;
        end += len;
      }
    }
    if (start > seg_start) plain(text.substr(seg_start, start - seg_start));
    token(hit->id);
    seg_start = end;
    i = end;
  }
  if (seg_start < text.size()) plain(text.substr(seg_start));
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  const Impl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out.insert(out.end(), t.parts.prefix_ids.begin(), t.parts.prefix_ids.end());
  auto push_token = [&](int32_t id) { out.push_back(id); };
  auto normalized_segment = [&](std::string_view seg) {
    const bool seg_at_start = seg.data() == text.data();
    std::string normalized;
    if (t.parts.nfc) {
      normalized = tok::nfc(seg);
      seg = normalized;
    }
    if (t.has_norm_added) {
      split_added(seg, t.norm_added_by_byte, t.parts.added,
                  [&](std::string_view s) { t.encode_segment(s, seg_at_start && s.data() == seg.data(), out); },
                  push_token);
    } else {
      t.encode_segment(seg, seg_at_start, out);
    }
  };
  if (t.has_raw_added) {
    split_added(text, t.raw_added_by_byte, t.parts.added, normalized_segment, push_token);
  } else {
    normalized_segment(text);
  }
  if (add_special) out.insert(out.end(), t.parts.suffix_ids.begin(), t.parts.suffix_ids.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t len;
    const char32_t cp = tok::decode_utf8(s, i, &len);
    if (cp != 0xFFFFFFFF) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    // Skip the maximal subpart of an ill-formed sequence (Unicode §3.9, U+FFFD substitution).
    const auto b0 = static_cast<unsigned char>(s[i]);
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 1;
    else if (b0 >= 0xE0 && b0 <= 0xEF) need = 2, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    else if (b0 >= 0xF0 && b0 <= 0xF4) need = 3, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    size_t j = i + 1;
    for (size_t k = 0; k < need && j < s.size(); ++k, ++j) {
      const auto b = static_cast<unsigned char>(s[j]);
      if (k == 0 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
    }
    out += "\xEF\xBF\xBD";
    i = j;
  }
  return out;
}

size_t utf8_complete_prefix(std::string_view s) {
  const size_t n = s.size();
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const auto b0 = static_cast<unsigned char>(s[n - k]);
    if ((b0 & 0xC0) == 0x80) continue;   // continuation byte: look further back
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) need = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    else if (b0 >= 0xF0 && b0 <= 0xF4) need = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (need <= k) return n;   // complete (or not a lead byte): nothing to hold
    if (k >= 2) {
      const auto b1 = static_cast<unsigned char>(s[n - k + 1]);
      if (b1 < lo || b1 > hi) return n;   // already ill-formed: emit it now
    }
    return n - k;
  }
  return n;
}

// HF's SentencePiece decoder chain: Replace("▁", " "), ByteFallback (a run of <0xXX> tokens becomes
// its UTF-8 text, or one U+FFFD per byte when it is not valid), Fuse, Strip(" ", n, 0).
std::string Tokenizer::Impl::decode_sentencepiece(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out, run;
  auto flush_run = [&]() {
    if (run.empty()) return;
    if (utf8_lossy(run) == run) {
      out += run;
    } else {
      for (size_t k = 0; k < run.size(); ++k) out += "\xEF\xBF\xBD";
    }
    run.clear();
  };
  for (const int32_t id : ids) {
    if (id < 0 || size_t(id) >= pieces.size()) continue;
    if (skip_special && special[id]) continue;
    if (is_byte_token[id]) {
      run += pieces[id];
      continue;
    }
    flush_run();
    out += pieces[id];
  }
  flush_run();
  size_t cut = 0;
  while (cut < size_t(parts.strip_leading_spaces) && cut < out.size() && out[cut] == ' ') ++cut;
  return utf8_lossy(std::string_view(out).substr(cut));
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& t = *impl_;
  if (t.parts.sentencepiece) return t.decode_sentencepiece(ids, skip_special);
  std::string bytes;
  for (const int32_t id : ids) {
    if (id < 0 || size_t(id) >= t.pieces.size()) continue;
    if (skip_special && t.special[id]) continue;
    bytes += t.pieces[id];
  }
  return utf8_lossy(bytes);
}

std::string StreamDecoder::push(int32_t id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) return {};
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_ += tokenizer_->token_to_piece(id);
  const size_t ready = utf8_complete_prefix(pending_);
  if (ready == 0) return {};
  std::string out = utf8_lossy(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return emit(std::move(out));
}

std::string StreamDecoder::finish() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return emit(std::move(out));
}

// The decoder's Strip step, applied once to the start of the stream.
std::string StreamDecoder::emit(std::string text) {
  size_t cut = 0;
  while (strip_left_ > 0 && cut < text.size()) {
    if (text[cut] != ' ') {
      strip_left_ = 0;
      break;
    }
    ++cut;
    --strip_left_;
  }
  if (cut) text.erase(0, cut);
  return text;
}

// ---------------------------------------------------------------------------------------------
// Accessors

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

static const std::string kEmpty;

const std::string& Tokenizer::token_to_piece(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->pieces.size()) return kEmpty;
  return impl_->pieces[id];
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  const auto& tokens = impl_->parts.tokens;
  return id >= 0 && size_t(id) < tokens.size() ? tokens[id] : kEmpty;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_to_id.find(std::string(token));
  return it == impl_->token_to_id.end() ? -1 : it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[id];
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->pieces.size()); }
int Tokenizer::decode_strip_leading_spaces() const { return impl_->parts.strip_leading_spaces; }
int32_t Tokenizer::bos_id() const { return impl_->parts.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->parts.eos_id; }
int32_t Tokenizer::pad_id() const { return impl_->parts.pad_id; }
int32_t Tokenizer::unk_id() const { return impl_->parts.unk_id; }
PreTokenizerKind Tokenizer::pre_tokenizer() const { return impl_->parts.pre_kind; }
const ChatTemplate& Tokenizer::chat_template() const { return impl_->chat; }

std::vector<int32_t> Tokenizer::stop_ids() const {
  std::vector<int32_t> ids;
  if (eos_id() >= 0) ids.push_back(eos_id());
  for (const char* name : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|eom_id|>"}) {
    const int32_t id = token_to_id(name);
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt) const {
  return impl_->chat.apply(messages, add_generation_prompt);
}

// ---------------------------------------------------------------------------------------------
// Plain-vector construction (GGUF metadata and tests)

// A SentencePiece GGUF has scores, not merges. transformers' GGUF converter recovers merges from the
// vocabulary: every split of a token into two tokens is a merge, ranked by the token's score (best
// first), then by the longer left part, then the longer right part; within one token, by the ids of
// the two parts. Reproduced here so that ids match transformers on the same file.
static std::vector<std::pair<std::string, std::string>> merges_from_scores(const std::vector<std::string>& tokens,
                                                                           const std::vector<float>& scores) {
  std::unordered_map<std::string, int32_t> last_index;   // Python {token: index}: the last one wins
  last_index.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) last_index[tokens[i]] = int32_t(i);
  std::unordered_map<std::string, float> score_of;        // dict(zip(tokens, scores)): last score
  std::vector<size_t> order;                              // ... in first-occurrence order
  score_of.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (score_of.find(tokens[i]) == score_of.end()) order.push_back(i);
    score_of[tokens[i]] = scores[i];
  }
  struct Merge {
    float score;
    size_t left_chars, right_chars;
    int32_t left_id, right_id;
    std::string left, right;
  };
  std::vector<Merge> all;
  std::vector<size_t> bounds;
  for (const size_t i : order) {
    const std::string& t = tokens[i];
    // Splitting costs O(length^2): a token far longer than any real piece (hostile file) is skipped.
    if (t.size() > 1024) continue;
    bounds.clear();
    size_t pos = 0;
    while (pos < t.size()) {
      size_t len;
      tok::decode_utf8(t, pos, &len);
      pos += len;
      bounds.push_back(pos);
    }
    const size_t nchars = bounds.size();
    std::vector<Merge> local;
    for (size_t k = 0; k + 1 < nchars; ++k) {
      std::string left = t.substr(0, bounds[k]), right = t.substr(bounds[k]);
      auto l = last_index.find(left), r = last_index.find(right);
      if (l == last_index.end() || r == last_index.end()) continue;
      local.push_back({score_of[t], k + 1, nchars - k - 1, l->second, r->second, std::move(left), std::move(right)});
    }
    std::sort(local.begin(), local.end(), [](const Merge& a, const Merge& b) {
      return a.left_id != b.left_id ? a.left_id < b.left_id : a.right_id < b.right_id;
    });
    for (Merge& m : local) all.push_back(std::move(m));
  }
  std::stable_sort(all.begin(), all.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
    return a.right_chars > b.right_chars;
  });
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(all.size());
  for (Merge& m : all) merges.emplace_back(std::move(m.left), std::move(m.right));
  return merges;
}

Tokenizer Tokenizer::from_spec(const TokenizerSpec& spec) {
  TokenizerParts p;
  p.origin = spec.origin.empty() ? "tokenizer" : spec.origin;
  p.tokens = spec.tokens;
  p.merges.reserve(spec.merges.size());
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const std::string& m = spec.merges[r];
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= m.size()) {
      throw invalid_input(p.origin + ": merge " + std::to_string(r) + " '" + m +
                          "' is not two tokens separated by one space");
    }
    p.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  if (!spec.token_types.empty() && spec.token_types.size() != spec.tokens.size()) {
    throw invalid_input(p.origin + ": " + std::to_string(spec.token_types.size()) +
                        " token types for " + std::to_string(spec.tokens.size()) + " tokens");
  }
  for (size_t id = 0; id < spec.token_types.size(); ++id) {
    const int32_t type = spec.token_types[id];
    if ((type == 3 || type == 4) && !spec.tokens[id].empty()) {
      AddedToken a;
      a.content = spec.tokens[id];
      a.id = int32_t(id);
      a.special = type == 3;
      p.added.push_back(std::move(a));
    }
  }
  p.pre_kind = spec.pre;
  p.pre_steps = steps_for_kind(spec.pre);
  p.nfc = spec.nfc;
  p.ignore_merges = spec.ignore_merges;
  p.unk_id = spec.unk_id;
  p.bos_id = spec.bos_id;
  p.eos_id = spec.eos_id;
  p.pad_id = spec.pad_id;
  if (spec.add_bos) {
    if (spec.bos_id < 0) throw invalid_input(p.origin + ": add_bos is set but there is no BOS token id");
    p.prefix_ids.push_back(spec.bos_id);
  }
  if (spec.add_eos) {
    if (spec.eos_id < 0) throw invalid_input(p.origin + ": add_eos is set but there is no EOS token id");
    p.suffix_ids.push_back(spec.eos_id);
  }
  p.chat_template = spec.chat_template;
  if (spec.sentencepiece) {
    // As transformers' LlamaTokenizer builds it: BPE with byte fallback and fused unk, Metaspace
    // (prepend_scheme "first", no split), decoder Replace + ByteFallback + Fuse + Strip.
    p.sentencepiece = true;
    p.pre_kind = PreTokenizerKind::SentencePiece;
    p.pre_steps.clear();
    p.byte_fallback = true;
    p.fuse_unk = true;
    p.replace_space = true;
    p.metaspace_prepend = spec.add_space_prefix ? TokenizerParts::Prepend::First : TokenizerParts::Prepend::Never;
    p.decode_byte_fallback = true;
    p.decode_replace_space = true;
    p.strip_leading_spaces = spec.add_space_prefix ? 1 : 0;
    // transformers' LlamaTokenizer registers <unk> as a special token (matched in text).
    const bool unk_added = std::any_of(p.added.begin(), p.added.end(),
                                       [&](const AddedToken& a) { return a.id == spec.unk_id; });
    if (spec.unk_id >= 0 && size_t(spec.unk_id) < spec.tokens.size() && !unk_added) {
      AddedToken a;
      a.content = spec.tokens[spec.unk_id];
      a.id = spec.unk_id;
      a.special = true;
      if (!a.content.empty()) p.added.push_back(std::move(a));
    }
    if (p.merges.empty()) {
      if (spec.scores.size() != spec.tokens.size()) {
        throw invalid_input(p.origin + ": " + std::to_string(spec.scores.size()) + " scores for " +
                            std::to_string(spec.tokens.size()) + " tokens (a SentencePiece vocabulary needs "
                            "tokenizer.ggml.scores or tokenizer.ggml.merges)");
      }
      p.merges = merges_from_scores(spec.tokens, spec.scores);
    }
  }
  return Tokenizer(Impl::build(std::move(p)));
}

}  // namespace qrt
