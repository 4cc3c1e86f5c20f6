// GGUF byte-level BPE vocabulary -> Hugging Face tokenizer.json / tokenizer_config.json.
// The pre-tokenizer configurations are those of the HF tokenizer.json files of each family
// (llama.cpp names them in tokenizer.ggml.pre).
#include "quant/gguf_tokenizer_export.h"

#include <nlohmann/json.hpp>

#include "io/json_strict.h"
#include "qrt/error.h"
#include "qrt/gguf.h"

namespace qrt::quant {

using nlohmann::ordered_json;

namespace {

ordered_json byte_level(bool use_regex, bool add_prefix_space = false, bool trim_offsets = true) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

ordered_json split(const std::string& regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

// nullopt-like: empty json for an unknown pre-tokenizer.
ordered_json pre_tokenizer_for(const std::string& pre) {
  static const std::string llama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const std::string qwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (pre == "smollm" || pre == "starcoder" || pre == "refact")
    return {{"type", "Sequence"},
            {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  if (pre == "gpt2" || pre == "gpt-2" || pre == "default") return byte_level(true);
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe")
    return {{"type", "Sequence"}, {"pretokenizers", {split(llama3), byte_level(false)}}};
  if (pre == "qwen2") return {{"type", "Sequence"}, {"pretokenizers", {split(qwen2), byte_level(false)}}};
  return ordered_json();
}

}  // namespace

bool write_tokenizer_from_gguf(const std::string& gguf_path, HfFolderWriter& writer, std::string* why) {
  GgufFile g = GgufFile::open(gguf_path);
  const std::string model = g.find_string("tokenizer.ggml.model").value_or("");
  if (model != "gpt2") {
    *why = "GGUF tokenizer model " + io::quote_name(model, 60) + " is not a byte-level BPE (only 'gpt2' is exported)";
    return false;
  }
  if (!g.contains("tokenizer.ggml.tokens") || !g.contains("tokenizer.ggml.merges")) {
    *why = "tokenizer.ggml.tokens or tokenizer.ggml.merges is missing";
    return false;
  }
  const std::string pre = g.find_string("tokenizer.ggml.pre").value_or("default");
  const ordered_json pre_tokenizer = pre_tokenizer_for(pre);
  if (pre_tokenizer.is_null()) {
    *why = "pre-tokenizer " + io::quote_name(pre, 60) + " has no known tokenizer.json equivalent";
    return false;
  }
  const auto& tokens = g.get_string_array("tokenizer.ggml.tokens");
  const auto& merges = g.get_string_array("tokenizer.ggml.merges");
  std::vector<int64_t> types;
  if (g.contains("tokenizer.ggml.token_type")) types = g.get_int_array("tokenizer.ggml.token_type");
  auto token_at = [&](const char* key) -> std::optional<std::string> {
    auto id = g.find_int(key);
    if (!id || *id < 0 || *id >= static_cast<int64_t>(tokens.size())) return std::nullopt;
    return tokens[*id];
  };

  ordered_json added = ordered_json::array();
  for (size_t i = 0; i < types.size() && i < tokens.size(); ++i)
    if (types[i] == 3 || types[i] == 4)   // control, user-defined
      added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", types[i] == 3}});
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  ordered_json merge_list = ordered_json::array();
  for (const std::string& m : merges) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      *why = "merge " + io::quote_name(m, 40) + " is not two space-separated tokens";
      return false;
    }
    merge_list.push_back({m.substr(0, sp), m.substr(sp + 1)});
  }
  ordered_json post = byte_level(true, true, false);
  const bool add_bos = g.find_bool("tokenizer.ggml.add_bos_token").value_or(false);
  const auto bos = token_at("tokenizer.ggml.bos_token_id");
  if (add_bos && bos) {
    const int64_t bos_id = *g.find_int("tokenizer.ggml.bos_token_id");
    post = {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", *bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", *bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", *bos}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{*bos, {{"id", *bos}, {"ids", {bos_id}}, {"tokens", {*bos}}}}}}};
  }
  ordered_json tok;
  tok["version"] = "1.0";
  tok["truncation"] = nullptr;
  tok["padding"] = nullptr;
  tok["added_tokens"] = added;
  tok["normalizer"] = nullptr;
  tok["pre_tokenizer"] = pre_tokenizer;
  tok["post_processor"] = post;
  tok["decoder"] = byte_level(true, true, true);
  tok["model"] = {{"type", "BPE"},          {"dropout", nullptr},       {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                  {"byte_fallback", false}, {"ignore_merges", pre == "llama-bpe" || pre == "llama3"},
                  {"vocab", vocab},         {"merges", merge_list}};
  // JSON holds UTF-8 only: a token the GGUF stores as other bytes has no tokenizer.json spelling.
  std::string tok_text;
  try {
    tok_text = tok.dump(2) + "\n";
  } catch (const nlohmann::json::exception&) {
    *why = "a token or merge of tokenizer.ggml.tokens / merges is not valid UTF-8, which tokenizer.json cannot hold";
    return false;
  }

  ordered_json cfg;
  cfg["add_prefix_space"] = false;
  cfg["add_bos_token"] = add_bos;
  if (bos) cfg["bos_token"] = *bos;
  if (auto eos = token_at("tokenizer.ggml.eos_token_id")) cfg["eos_token"] = *eos;
  if (auto unk = token_at("tokenizer.ggml.unknown_token_id")) cfg["unk_token"] = *unk;
  if (auto pad = token_at("tokenizer.ggml.padding_token_id")) cfg["pad_token"] = *pad;
  if (auto tmpl = g.find_string("tokenizer.chat_template")) cfg["chat_template"] = *tmpl;
  cfg["clean_up_tokenization_spaces"] = false;
  const std::string arch = g.find_string("general.architecture").value_or("llama");
  if (auto ctx = g.find_int(arch + ".context_length")) cfg["model_max_length"] = *ctx;
  cfg["tokenizer_class"] = "GPT2Tokenizer";
  std::string cfg_text;
  try {
    cfg_text = cfg.dump(2) + "\n";
  } catch (const nlohmann::json::exception&) {
    *why = "a special token or tokenizer.chat_template is not valid UTF-8, which tokenizer_config.json cannot hold";
    return false;
  }
  writer.add_text_file("tokenizer.json", tok_text);
  writer.add_text_file("tokenizer_config.json", cfg_text);
  return true;
}

}  // namespace qrt::quant
