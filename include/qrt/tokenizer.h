// BPE tokenizer loaded from a Hugging Face tokenizer.json or from GGUF metadata, that gives the same
// ids as Hugging Face `tokenizers`: byte-level BPE (GPT-2 / Llama-3 / Qwen2 / SmolLM2 families) and
// SentencePiece-style BPE with byte fallback (Llama-2 / Mistral / TinyLlama: "▁" for spaces).
//
// Encoding: added/special tokens are matched first on the raw text (leftmost-longest, as HF does),
// the text between them is normalized (NFC where the tokenizer asks for it), split by the family's
// pre-tokenizer (implemented by hand with a committed Unicode table, no regex library), mapped to
// the GPT-2 byte alphabet and merged by rank. Decoding maps the byte alphabet back to bytes; invalid
// UTF-8 becomes U+FFFD exactly as HF's decode does. StreamDecoder emits text token by token and
// holds back a multi-byte character that is split across tokens.
//
// A Tokenizer is immutable after construction and safe to use from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qrt/chat_template.h"

namespace qrt {

class GgufFile;

// The pre-tokenizer families qrt implements (the regexes of HF tokenizer.json files and the
// `tokenizer.ggml.pre` names of llama.cpp).
enum class PreTokenizerKind {
  Gpt2,     // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Llama3,   // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|...
  Qwen2,    // Llama3 with \p{N} (single digits)
  SmolLM,   // Digits(individual) then GPT-2 (SmolLM/SmolLM2, StarCoder)
  SentencePiece,   // no splitting: spaces become "▁" (Metaspace / Prepend+Replace normalizers)
};
const char* pre_tokenizer_kind_name(PreTokenizerKind kind);
// Maps a GGUF `tokenizer.ggml.pre` value onto a kind. Unknown names give nullopt.
std::optional<PreTokenizerKind> pre_tokenizer_kind_from_gguf(const std::string& pre);

// Everything needed to build a byte-level BPE tokenizer, as plain vectors: what the GGUF metadata
// holds (and what a tokenizer.json reduces to for the common families).
struct TokenizerSpec {
  std::vector<std::string> tokens;        // id -> token text in the GPT-2 byte alphabet ("Ġthe")
  std::vector<std::string> merges;        // rank order, "left right"
  // GGUF token types, parallel to tokens (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
  // 6 byte). Control and user-defined tokens are matched in the text as added tokens; control
  // tokens are "special" (skipped by decode(skip_special = true)). May be empty.
  std::vector<int32_t> token_types;
  PreTokenizerKind pre = PreTokenizerKind::Gpt2;
  bool ignore_merges = false;             // whole word found in the vocabulary wins (Llama-3)
  bool nfc = false;                       // NFC normalizer (Qwen2)
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false;  // what encode(text, add_special = true) adds
  std::string chat_template;              // Jinja text (tokenizer.chat_template), may be empty
  std::string origin;                     // file name for messages
  // SentencePiece-style BPE (GGUF tokenizer.ggml.model "llama"): tokens are pieces with "▁" for
  // spaces, <0xXX> byte tokens (type 6) for byte fallback. Without merges, they are recovered from
  // the scores as transformers' GGUF converter does (best score first).
  bool sentencepiece = false;
  std::vector<float> scores;              // parallel to tokens
  bool add_space_prefix = true;           // "▁" before the text (first segment), stripped on decode
};

class Tokenizer {
 public:
  // Reads a HF tokenizer.json. Also reads tokenizer_config.json (bos/eos tokens, chat_template)
  // and chat_template.jinja when present in the same folder. Throws qrt::Error naming the file
  // and field for anything malformed or not a byte-level BPE qrt supports.
  static Tokenizer from_tokenizer_json(const std::string& path);
  // Parses tokenizer.json text directly (tests); `tokenizer_config_text` may be empty.
  static Tokenizer from_tokenizer_json_text(const std::string& json_text, const std::string& origin,
                                            const std::string& tokenizer_config_text = "");
  // Reads tokenizer.ggml.* and tokenizer.chat_template from GGUF metadata (model "gpt2" only).
  static Tokenizer from_gguf(const GgufFile& gguf);
  static Tokenizer from_spec(const TokenizerSpec& spec);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`. Special tokens written in the text (e.g. "<|im_start|>") are always
  // recognized; add_special adds the BOS/EOS the tokenizer's post-processor asks for.
  // A rendered chat template already contains its special tokens: encode it with add_special=false.
  std::vector<int32_t> encode(std::string_view text, bool add_special = false) const;
  // Text of `ids` (out-of-range ids are skipped). Invalid UTF-8 becomes U+FFFD as in HF.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
  // The raw bytes of one token (may be part of a UTF-8 character); "" for an out-of-range id.
  const std::string& token_to_piece(int32_t id) const;
  // The token's text as stored in the vocabulary ("Ġthe"); "" for an out-of-range id.
  const std::string& id_to_token(int32_t id) const;
  // Id of a vocabulary or added token given its stored text ("<|im_end|>"), or -1.
  int32_t token_to_id(std::string_view token) const;
  bool is_special(int32_t id) const;     // control/special added token
  // Leading spaces the decoder strips from the start of the text (SentencePiece: 1, else 0).
  int decode_strip_leading_spaces() const;

  int32_t vocab_size() const;
  int32_t bos_id() const;                // -1 when the model has none
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  // Ids that end generation: eos plus end-of-turn tokens present in the vocabulary
  // (<|im_end|>, <|eot_id|>, <|end_of_text|>, <|endoftext|>), without duplicates.
  std::vector<int32_t> stop_ids() const;
  PreTokenizerKind pre_tokenizer() const;

  // The chat template chosen from the model's Jinja text and special tokens (see chat_template.h).
  const ChatTemplate& chat_template() const;
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = true) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental decoding for streaming generation: feed ids one at a time, get the text that is
// complete so far. Bytes of a UTF-8 character split across tokens are held until it completes;
// invalid bytes become U+FFFD. The concatenation of all push() results and finish() equals
// tokenizer.decode(all ids, skip_special), except, for SentencePiece vocabularies, on byte-token runs
// that are not valid UTF-8 (HF replaces the whole run; the stream replaces the ill-formed parts).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(&tokenizer), skip_special_(skip_special),
        strip_left_(tokenizer.decode_strip_leading_spaces()) {}
  std::string push(int32_t id);
  std::string finish();            // flushes held bytes (an incomplete character -> U+FFFD)
  void reset() {
    pending_.clear();
    strip_left_ = tokenizer_->decode_strip_leading_spaces();
  }

 private:
  std::string emit(std::string text);
  const Tokenizer* tokenizer_;
  bool skip_special_;
  int strip_left_;
  std::string pending_;
};

// Helpers shared with tests: replaces ill-formed UTF-8 with U+FFFD (one per maximal ill-formed
// subpart, as Rust's String::from_utf8_lossy and Python's errors="replace" do).
std::string utf8_lossy(std::string_view bytes);
// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence that could
// still become valid with more bytes.
size_t utf8_complete_prefix(std::string_view bytes);

}  // namespace qrt
