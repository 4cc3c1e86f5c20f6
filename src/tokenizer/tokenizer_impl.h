// The tokenizer's internal state, shared by the loaders (tokenizer.json, GGUF) and the encoder.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "qrt/tokenizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace qrt {

// An added token as HF's AddedVocabulary holds it.
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;   // matched after the normalizer (second pass)
};

// Everything a loader fills before Tokenizer::Impl::build() derives the lookup tables.
struct TokenizerParts {
  std::string origin;
  std::vector<std::string> tokens;            // id -> vocabulary text (gaps are "")
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedToken> added;
  std::vector<tok::PreStep> pre_steps;
  PreTokenizerKind pre_kind = PreTokenizerKind::Gpt2;
  bool nfc = false;
  bool ignore_merges = false;
  int32_t unk_id = -1;
  bool fuse_unk = false;
  std::vector<int32_t> prefix_ids, suffix_ids;   // post-processor, for add_special
  int32_t bos_id = -1, eos_id = -1, pad_id = -1;
  std::string chat_template;
  std::string bos_token_text;

  // SentencePiece-style BPE (Llama-2, Mistral): characters are the initial symbols, spaces are "▁".
  bool sentencepiece = false;
  bool byte_fallback = false;          // a character missing from the vocabulary -> <0xXX> tokens
  bool prepend_normalizer = false;     // Prepend("▁") normalizer: every segment (legacy files)
  bool replace_space = false;          // " " -> "▁" (Replace normalizer or Metaspace)
  enum class Prepend { Never, First, Always } metaspace_prepend = Prepend::Never;
  bool metaspace_split = false;        // Metaspace(split): a piece starts at every "▁"
  bool decode_byte_fallback = false;   // ByteFallback decoder: <0xXX> -> byte
  bool decode_replace_space = false;   // Replace("▁", " ") / Metaspace decoder
  int strip_leading_spaces = 0;        // Strip(" ", n, 0) / Metaspace decoder
};

struct Tokenizer::Impl {
  TokenizerParts parts;
  std::unordered_map<std::string, int32_t> token_to_id;   // vocabulary and added tokens
  int32_t byte_id[256];                                   // id of each byte's alphabet symbol, or -1
  int32_t byte_token_id[256];                             // SentencePiece: id of "<0xXX>", or -1
  std::vector<uint8_t> is_byte_token;                     // id -> 1 for a <0xXX> token (SentencePiece)
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  std::vector<std::string> pieces;                        // id -> decoded bytes
  std::vector<uint8_t> special;                           // id -> 1 when special
  // Added tokens by first byte, longest first; two sets (raw text, normalized text).
  std::vector<int32_t> raw_added_by_byte[256], norm_added_by_byte[256];
  bool has_raw_added = false, has_norm_added = false;
  ChatTemplate chat;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static std::unique_ptr<Impl> build(TokenizerParts parts);
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  // `at_start`: the segment begins the text (Metaspace prepend_scheme "first").
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
  std::string decode_sentencepiece(const std::vector<int32_t>& ids, bool skip_special) const;
};

// The GPT-2 byte alphabet: byte -> code point (printable bytes map to themselves).
char32_t byte_to_alphabet(uint8_t b);
// Inverse, or -1 for a code point outside the alphabet.
int alphabet_to_byte(char32_t cp);

}  // namespace qrt
