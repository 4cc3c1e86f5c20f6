// GGUF adapter: tokenizer.ggml.* metadata -> TokenizerSpec -> Tokenizer.
#include <cstdio>

#include "qrt/error.h"
#include "qrt/gguf.h"
#include "qrt/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace qrt {
namespace {

int32_t token_id_key(const GgufFile& gguf, const TokenizerSpec& spec, const char* key) {
  const auto v = gguf.find_int(key);
  if (!v) return -1;
  if (*v < 0 || *v >= int64_t(spec.tokens.size())) {
    throw invalid_input(spec.origin + ": " + key + " = " + std::to_string(*v) + " is outside the vocabulary of " +
                        std::to_string(spec.tokens.size()));
  }
  return static_cast<int32_t>(*v);
}

std::vector<int32_t> token_types(const GgufFile& gguf) {
  std::vector<int32_t> types;
  if (gguf.contains("tokenizer.ggml.token_type")) {
    for (const int64_t t : gguf.get_int_array("tokenizer.ggml.token_type")) types.push_back(static_cast<int32_t>(t));
  }
  return types;
}

// tokenizer.ggml.model "llama": SentencePiece BPE (Llama-2, Mistral, TinyLlama GGUF files), built as
// transformers' GGUF converter does: merges recovered from the scores, <unk>/<s>/</s> special.
Tokenizer from_gguf_sentencepiece(const GgufFile& gguf, TokenizerSpec spec) {
  spec.sentencepiece = true;
  spec.pre = PreTokenizerKind::SentencePiece;
  if (gguf.contains("tokenizer.ggml.merges")) spec.merges = gguf.get_string_array("tokenizer.ggml.merges");
  if (spec.merges.empty()) spec.scores = gguf.get_float_array("tokenizer.ggml.scores");
  spec.token_types = token_types(gguf);
  spec.bos_id = token_id_key(gguf, spec, "tokenizer.ggml.bos_token_id");
  spec.eos_id = token_id_key(gguf, spec, "tokenizer.ggml.eos_token_id");
  spec.unk_id = token_id_key(gguf, spec, "tokenizer.ggml.unknown_token_id");
  spec.pad_id = token_id_key(gguf, spec, "tokenizer.ggml.padding_token_id");
  spec.add_space_prefix = gguf.find_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  spec.add_bos = gguf.find_bool("tokenizer.ggml.add_bos_token").value_or(true) && spec.bos_id >= 0;
  spec.add_eos = gguf.find_bool("tokenizer.ggml.add_eos_token").value_or(false) && spec.eos_id >= 0;
  spec.chat_template = gguf.find_string("tokenizer.chat_template").value_or("");
  return Tokenizer::from_spec(spec);
}

// Some converters store added tokens as plain text ("a b", "\n\n") rather than in the byte
// alphabet. transformers' GGUF converter respells such a token into the alphabet and does not add it
// as a special/user-defined token; done the same way here so that ids agree.
void respell_outside_alphabet(TokenizerSpec& spec) {
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    const std::string& t = spec.tokens[id];
    bool inside = true;
    for (size_t pos = 0; pos < t.size() && inside;) {
      size_t len;
      inside = alphabet_to_byte(tok::decode_utf8(t, pos, &len)) >= 0;
      pos += len;
    }
    if (inside) continue;
    std::string spelled;
    for (const char c : t) tok::append_utf8(spelled, byte_to_alphabet(static_cast<uint8_t>(c)));
    spec.tokens[id] = std::move(spelled);
    if (id < spec.token_types.size() && (spec.token_types[id] == 3 || spec.token_types[id] == 4)) {
      spec.token_types[id] = 1;
    }
  }
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& gguf) {
  const std::string origin = gguf.path().empty() ? std::string("<gguf>") : gguf.path();
  const auto model = gguf.find_string("tokenizer.ggml.model");
  if (!model) throw invalid_input(origin + ": no tokenizer.ggml.model (the file carries no tokenizer)");
  if (*model != "gpt2" && *model != "llama") {
    throw unsupported(origin + ": tokenizer.ggml.model '" + *model +
                      "' is not supported (qrt implements 'gpt2' byte-level BPE and 'llama' SentencePiece BPE)");
  }
  TokenizerSpec spec;
  spec.origin = origin;
  spec.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (*model == "llama") return from_gguf_sentencepiece(gguf, std::move(spec));
  spec.merges = gguf.get_string_array("tokenizer.ggml.merges");
  spec.token_types = token_types(gguf);
  respell_outside_alphabet(spec);
  const std::string pre = gguf.find_string("tokenizer.ggml.pre").value_or("default");
  if (auto kind = pre_tokenizer_kind_from_gguf(pre)) {
    spec.pre = *kind;
  } else {
    spec.pre = PreTokenizerKind::Gpt2;
    std::fprintf(stderr, "qrt: warning: %s: tokenizer.ggml.pre '%s' is not a pre-tokenizer qrt knows; "
                 "using GPT-2 splitting (token ids may differ from the reference tokenizer)\n",
                 origin.c_str(), pre.c_str());
  }
  // As llama.cpp does for these families; HF's Qwen2 tokenizer.json has an NFC normalizer.
  spec.ignore_merges = spec.pre == PreTokenizerKind::Llama3;
  spec.nfc = spec.pre == PreTokenizerKind::Qwen2;
  auto id_of = [&](const char* key) -> int32_t {
    const auto v = gguf.find_int(key);
    if (!v) return -1;
    if (*v < 0 || *v >= int64_t(spec.tokens.size())) {
      throw invalid_input(origin + ": " + key + " = " + std::to_string(*v) + " is outside the vocabulary of " +
                          std::to_string(spec.tokens.size()));
    }
    return static_cast<int32_t>(*v);
  };
  spec.bos_id = id_of("tokenizer.ggml.bos_token_id");
  spec.eos_id = id_of("tokenizer.ggml.eos_token_id");
  spec.unk_id = id_of("tokenizer.ggml.unknown_token_id");
  spec.pad_id = id_of("tokenizer.ggml.padding_token_id");
  spec.add_bos = gguf.find_bool("tokenizer.ggml.add_bos_token").value_or(spec.pre == PreTokenizerKind::Llama3) &&
                 spec.bos_id >= 0;
  spec.add_eos = gguf.find_bool("tokenizer.ggml.add_eos_token").value_or(false) && spec.eos_id >= 0;
  // HF's byte-level BPE has no unk token (a missing byte is dropped); GGUF files still name one.
  spec.unk_id = -1;
  spec.chat_template = gguf.find_string("tokenizer.chat_template").value_or("");
  return from_spec(spec);
}

}  // namespace qrt
