// libFuzzer target: the tokenizer. The first input byte picks what the rest is:
//   'j'  a tokenizer.json text            -> parse, then encode/decode a fixed sample with it
//   'c'  a tokenizer_config.json text     -> parsed beside a fixed tokenizer.json, chat template applied
//   'e'  text for one of the committed tiny tokenizers (the second byte picks which, and add_special)
//   'd'  token ids (little-endian int32)  -> decode and stream-decode
// Anything but a clean qrt::Error is a bug, and so is an id out of range, a decode that is not valid
// UTF-8, a streamed decode that differs from the whole one (byte-level tokenizers), or a byte-level
// tokenizer without a prefix space that does not give valid UTF-8 text back unchanged.
// Seeds: tests/data/fuzz_seeds/fuzz_tokenizer/.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "qrt/error.h"
#include "qrt/tokenizer.h"

namespace {

const char* const kTinyNames[] = {"tiny_gpt2",   "tiny_llama3",  "tiny_qwen2",    "tiny_smollm",
                                  "tiny_llama2", "tiny_mistral", "tiny_spm_split"};
constexpr int kTinyCount = sizeof(kTinyNames) / sizeof(kTinyNames[0]);

const std::vector<qrt::Tokenizer>& tiny_tokenizers() {
  static const std::vector<qrt::Tokenizer> all = [] {
    std::vector<qrt::Tokenizer> v;
    for (const char* name : kTinyNames)
      v.push_back(
          qrt::Tokenizer::from_tokenizer_json(std::string(QRT_TEST_DATA) + "/tokenizer/" + name + "/tokenizer.json"));
    return v;
  }();
  return all;
}

bool byte_level(const qrt::Tokenizer& tok) {
  return tok.pre_tokenizer() != qrt::PreTokenizerKind::SentencePiece;
}

std::string stream_decode(const qrt::Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  qrt::StreamDecoder s(tok, skip_special);
  std::string out;
  for (int32_t id : ids) out += s.push(id);
  return out + s.finish();
}

// Encodes `text`; checks every id, that the decode is valid UTF-8 and that streaming agrees.
void check_encode(const qrt::Tokenizer& tok, const std::string& text, bool add_special) {
  const std::vector<int32_t> ids = tok.encode(text, add_special);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  const std::string out = tok.decode(ids, /*skip_special=*/true);
  if (qrt::utf8_lossy(out) != out) std::abort();
  const std::string streamed = stream_decode(tok, ids, true);
  if (qrt::utf8_lossy(streamed) != streamed) std::abort();
  if (byte_level(tok) && streamed != out) std::abort();
}

void fuzz_tokenizer_json(const std::string& text) {
  const qrt::Tokenizer tok = qrt::Tokenizer::from_tokenizer_json_text(text, "fuzz/tokenizer.json");
  check_encode(tok, "Hello, world! 123 \xC3\xA9t\xC3\xA9 <|im_start|>", true);
  check_encode(tok, "\xF0\x9F\x98\x80 \xFF\x80 tab\there", false);
  (void)tok.stop_ids();
  (void)tok.apply_chat_template({{"user", "hi"}});
}

void fuzz_tokenizer_config(const std::string& text) {
  static const std::string base =
      qrt::fuzz::read_text(std::string(QRT_TEST_DATA) + "/tokenizer/tiny_llama3/tokenizer.json");
  const qrt::Tokenizer tok = qrt::Tokenizer::from_tokenizer_json_text(base, "fuzz/tokenizer.json", text);
  (void)tok.bos_id();
  (void)tok.eos_id();
  (void)tok.stop_ids();
  const std::string chat = tok.apply_chat_template({{"system", "be brief"}, {"user", "hi"}}, true);
  check_encode(tok, chat, false);
}

void fuzz_encode(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const auto& tokenizers = tiny_tokenizers();
  const qrt::Tokenizer& tok = tokenizers[data[0] % kTinyCount];
  const bool add_special = (data[0] / kTinyCount) % 2;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  check_encode(tok, text, add_special);
  // The byte-level tokenizers without a prefix space or a normalizer (tiny_llama3, tiny_smollm) give
  // their input back, lossy-decoded: special tokens written in the text are kept and nothing is added.
  const std::string name = kTinyNames[data[0] % kTinyCount];
  if (name == "tiny_llama3" || name == "tiny_smollm") {
    const std::vector<int32_t> ids = tok.encode(text, false);
    if (tok.decode(ids, false) != qrt::utf8_lossy(text)) std::abort();
  }
}

void fuzz_decode(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const qrt::Tokenizer& tok = tiny_tokenizers()[data[0] % kTinyCount];
  std::vector<int32_t> ids;
  for (size_t i = 1; i + 4 <= size; i += 4) {
    int32_t id;
    std::memcpy(&id, data + i, 4);
    // Mostly ids near the vocabulary, some far outside it (they must be skipped, not read).
    ids.push_back((id & 0x40000000) ? id : id % (tok.vocab_size() + 8));
  }
  for (bool skip : {false, true}) {
    const std::string out = tok.decode(ids, skip);
    if (qrt::utf8_lossy(out) != out) std::abort();
    const std::string streamed = stream_decode(tok, ids, skip);
    if (qrt::utf8_lossy(streamed) != streamed) std::abort();
    if (byte_level(tok) && streamed != out) std::abort();
  }
  for (int32_t id : ids) {
    (void)tok.token_to_piece(id);
    (void)tok.id_to_token(id);
    (void)tok.is_special(id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1 << 16)) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (data[0]) {
      case 'j':
        fuzz_tokenizer_json(rest);
        break;
      case 'c':
        fuzz_tokenizer_config(rest);
        break;
      case 'e':
        fuzz_encode(data + 1, size - 1);
        break;
      case 'd':
        fuzz_decode(data + 1, size - 1);
        break;
      default:
        break;
    }
  } catch (const qrt::Error& e) {
    qrt::fuzz::note_rejected(e);
  }
  return 0;
}
