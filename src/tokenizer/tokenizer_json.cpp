// Loader for Hugging Face tokenizer.json (+ tokenizer_config.json, chat_template.jinja): reads the
// parts of a byte-level BPE pipeline and refuses, naming the field, anything qrt cannot reproduce.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/bounded_read.h"
#include "io/json_strict.h"
#include "qrt/error.h"
#include "tokenizer/tokenizer_impl.h"

namespace qrt {
namespace {

using nlohmann::json;


bool get_bool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw invalid_input(std::string("field '") + key + "' must be true or false");
  return it->get<bool>();
}

const char* const kMetaspace = "\xE2\x96\x81";   // U+2581 "▁"

struct PipelineBuilder {
  std::string origin;
  std::vector<tok::PreStep> steps;
  bool byte_level = false;
  bool metaspace = false;
  TokenizerParts::Prepend prepend = TokenizerParts::Prepend::Never;
  bool split = false;

  void add(const json& node, const std::string& where) {
    if (!node.is_object()) throw invalid_input(origin + ": " + where + " must be an object");
    const std::string type = node.value("type", "");
    if (type == "Sequence") {
      const json& list = node.contains("pretokenizers") ? node["pretokenizers"] : json();
      if (!list.is_array()) throw invalid_input(origin + ": " + where + ".pretokenizers must be an array");
      for (size_t k = 0; k < list.size(); ++k) add(list[k], where + ".pretokenizers[" + std::to_string(k) + "]");
    } else if (type == "ByteLevel") {
      byte_level = true;
      if (get_bool(node, "add_prefix_space", true)) steps.push_back(tok::PreStep::PrefixSpace);
      if (get_bool(node, "use_regex", true)) steps.push_back(tok::PreStep::SplitGpt2);
    } else if (type == "Metaspace") {
      metaspace = true;
      if (node.value("replacement", std::string(kMetaspace)) != kMetaspace) {
        throw unsupported(origin + ": " + where + ": Metaspace replacement other than U+2581");
      }
      std::string scheme = node.value("prepend_scheme", "");
      if (scheme.empty()) scheme = get_bool(node, "add_prefix_space", true) ? "always" : "never";
      if (scheme == "always") prepend = TokenizerParts::Prepend::Always;
      else if (scheme == "first") prepend = TokenizerParts::Prepend::First;
      else if (scheme == "never") prepend = TokenizerParts::Prepend::Never;
      else throw invalid_input(origin + ": " + where + ": Metaspace prepend_scheme '" + scheme + "'");
      split = get_bool(node, "split", true);
    } else if (type == "Digits") {
      steps.push_back(get_bool(node, "individual_digits", false) ? tok::PreStep::DigitsIndividual
                                                                 : tok::PreStep::DigitsGrouped);
    } else if (type == "Split") {
      const std::string behavior = node.value("behavior", "");
      if (behavior != "Isolated") {
        throw unsupported(origin + ": " + where + ": Split behavior '" + behavior + "' (only Isolated is supported)");
      }
      if (get_bool(node, "invert", false)) throw unsupported(origin + ": " + where + ": Split with invert=true");
      const json& pattern = node.contains("pattern") ? node["pattern"] : json();
      std::string regex;
      if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
        regex = pattern["Regex"].get<std::string>();
      } else {
        throw unsupported(origin + ": " + where + ": Split pattern must be a Regex");
      }
      const tok::PreStep* step = tok::pre_step_for_regex(regex);
      if (!step) {
        throw unsupported(origin + ": " + where + ": pre-tokenizer regex not recognized (qrt implements the "
                          "GPT-2, Llama-3 and Qwen2 patterns): " + regex);
      }
      steps.push_back(*step);
    } else {
      throw unsupported(origin + ": " + where + ": pre-tokenizer type '" + type +
                        "' (qrt supports ByteLevel, Split, Digits, Metaspace, Sequence)");
    }
  }
};

// The normalizers qrt implements: NFC (Qwen2), and Prepend("▁") / Replace(" ", "▁") (legacy
// SentencePiece files, Llama-2 / TinyLlama / Mistral v0.1).
void parse_normalizer(const json& node, TokenizerParts& p) {
  if (node.is_null()) return;
  const std::string type = node.is_object() ? node.value("type", "") : "";
  if (type == "NFC") {
    p.nfc = true;
  } else if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    for (const json& n : node["normalizers"]) parse_normalizer(n, p);
  } else if (type == "Prepend" && node.value("prepend", "") == kMetaspace) {
    if (p.replace_space) throw unsupported(p.origin + ": normalizer Prepend after Replace");
    p.prepend_normalizer = true;
  } else if (type == "Replace" && node.contains("pattern") && node["pattern"].is_object() &&
             node["pattern"].value("String", "") == " " && node.value("content", "") == kMetaspace) {
    p.replace_space = true;
  } else {
    throw unsupported(p.origin + ": normalizer " + (node.is_object() ? node.dump().substr(0, 120) : type) +
                      " (qrt supports none, NFC, and Prepend/Replace with U+2581)");
  }
}

// Decoders: ByteLevel for byte-level BPE; for SentencePiece the Replace("▁", " "), ByteFallback,
// Fuse, Strip(" ", n, 0) chain or a Metaspace decoder.
void parse_decoder(const json& node, TokenizerParts& p, bool* byte_level) {
  if (node.is_null()) return;
  const std::string type = node.is_object() ? node.value("type", "") : "";
  if (type == "ByteLevel") {
    *byte_level = true;
  } else if (type == "Sequence" && node.contains("decoders") && node["decoders"].is_array()) {
    for (const json& d : node["decoders"]) parse_decoder(d, p, byte_level);
  } else if (type == "Replace" && node.contains("pattern") && node["pattern"].is_object() &&
             node["pattern"].value("String", "") == kMetaspace && node.value("content", "") == " ") {
    p.decode_replace_space = true;
  } else if (type == "ByteFallback") {
    p.decode_byte_fallback = true;
  } else if (type == "Fuse") {
    // Joining is what qrt's decode does anyway.
  } else if (type == "Strip" && node.value("content", "") == " " && node.value("stop", 0) == 0) {
    p.strip_leading_spaces = node.value("start", 0);
  } else if (type == "Metaspace") {
    p.decode_replace_space = true;
    const std::string scheme = node.value("prepend_scheme", get_bool(node, "add_prefix_space", true) ? "always" : "never");
    if (scheme != "never") p.strip_leading_spaces = 1;
  } else {
    throw unsupported(p.origin + ": decoder " + (node.is_object() ? node.dump().substr(0, 120) : type) +
                      " (qrt supports ByteLevel and the SentencePiece Replace/ByteFallback/Fuse/Strip chain)");
  }
}

int32_t token_id_of(const TokenizerParts& p, const std::unordered_map<std::string, int32_t>& vocab,
                    const std::string& text) {
  for (const AddedToken& a : p.added) {
    if (a.content == text) return a.id;
  }
  auto it = vocab.find(text);
  return it == vocab.end() ? -1 : it->second;
}

// tokenizer_config.json spells a token as "text" or {"content": "text", ...}.
std::string config_token(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

void parse_post_processor(const json& node, TokenizerParts& p,
                          const std::unordered_map<std::string, int32_t>& vocab) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "ByteLevel") return;   // offsets only
  if (type == "Sequence") {
    if (node.contains("processors") && node["processors"].is_array()) {
      for (const json& n : node["processors"]) parse_post_processor(n, p, vocab);
    }
    return;
  }
  if (type == "TemplateProcessing") {
    const json& single = node.contains("single") ? node["single"] : json();
    const json& specials = node.contains("special_tokens") ? node["special_tokens"] : json::object();
    if (!single.is_array()) throw invalid_input(p.origin + ": post_processor.single must be an array");
    bool after = false;
    for (const json& item : single) {
      if (item.contains("Sequence")) {
        after = true;
        continue;
      }
      if (!item.contains("SpecialToken")) continue;
      const std::string name = item["SpecialToken"].value("id", "");
      std::vector<int32_t> ids;
      if (specials.contains(name) && specials[name].contains("ids")) {
        for (const json& v : specials[name]["ids"]) ids.push_back(v.get<int32_t>());
      } else {
        const int32_t id = token_id_of(p, vocab, name);
        if (id < 0) throw invalid_input(p.origin + ": post_processor special token '" + name + "' is unknown");
        ids.push_back(id);
      }
      auto& dst = after ? p.suffix_ids : p.prefix_ids;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    // {"cls": ["<s>", 0], "sep": ["</s>", 2]}
    if (node.contains("cls") && node["cls"].is_array() && node["cls"].size() == 2) {
      p.prefix_ids.push_back(node["cls"][1].get<int32_t>());
    }
    if (node.contains("sep") && node["sep"].is_array() && node["sep"].size() == 2) {
      p.suffix_ids.push_back(node["sep"][1].get<int32_t>());
    }
    return;
  }
  throw unsupported(p.origin + ": post_processor type '" + type + "'");
}

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) {
  const std::string text = io::read_file_bounded(path, io::kMaxTokenizerFileBytes, "a tokenizer.json");
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::string config_text;
  const auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) config_text = io::read_file_bounded(config_path.string(), io::kMaxConfigFileBytes, "a tokenizer_config.json");
  Tokenizer t = from_tokenizer_json_text(text, path, config_text);
  const auto jinja_path = dir / "chat_template.jinja";
  if (t.impl_->parts.chat_template.empty() && std::filesystem::exists(jinja_path)) {
    // A separate chat_template.jinja (newer transformers) when the config has none.
    TokenizerParts parts = t.impl_->parts;
    parts.chat_template =
        io::read_file_bounded(jinja_path.string(), io::kMaxTemplateFileBytes, "a chat template (chat_template.jinja)");
    return Tokenizer(Impl::build(std::move(parts)));
  }
  return t;
}

Tokenizer Tokenizer::from_tokenizer_json_text(const std::string& json_text, const std::string& origin,
                                              const std::string& tokenizer_config_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw invalid_input(origin + ": not valid JSON: " + io::json_error_text(e));
  }
  TokenizerParts p;
  p.origin = origin;
  try {
    if (!j.is_object()) throw invalid_input(origin + ": top level must be an object");
    const json& model = j.contains("model") ? j["model"] : json();
    if (!model.is_object()) throw invalid_input(origin + ": missing 'model'");
    const std::string model_type = model.value("type", "BPE");
    if (model_type != "BPE") {
      throw unsupported(origin + ": model.type '" + model_type + "' (qrt supports byte-level BPE)");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
        throw unsupported(origin + ": model." + key + " is set (not a byte-level BPE)");
      }
    }
    p.byte_fallback = get_bool(model, "byte_fallback", false);
    const json& vocab = model.contains("vocab") ? model["vocab"] : json();
    if (!vocab.is_object()) throw invalid_input(origin + ": model.vocab must be an object");
    std::unordered_map<std::string, int32_t> vocab_map;
    vocab_map.reserve(vocab.size());
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer()) {
        throw invalid_input(origin + ": model.vocab['" + it.key() + "'] must be an integer id");
      }
      const int64_t id = it.value().get<int64_t>();
      if (id < 0 || id >= (int64_t(1) << 24)) {
        throw invalid_input(origin + ": model.vocab['" + it.key() + "'] id " + std::to_string(id) + " out of range");
      }
      max_id = std::max(max_id, id);
      vocab_map.emplace(it.key(), int32_t(id));
    }
    p.tokens.assign(size_t(max_id + 1), std::string());
    for (const auto& [tok_text, id] : vocab_map) p.tokens[id] = tok_text;

    const json& merges = model.contains("merges") ? model["merges"] : json::array();
    if (!merges.is_array()) throw invalid_input(origin + ": model.merges must be an array");
    p.merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const json& m = merges[r];
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos) {
          throw invalid_input(origin + ": model.merges[" + std::to_string(r) + "] '" + s +
                              "' is not two tokens separated by one space");
        }
        p.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        p.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        throw invalid_input(origin + ": model.merges[" + std::to_string(r) + "] must be \"a b\" or [a, b]");
      }
    }
    p.ignore_merges = get_bool(model, "ignore_merges", false);
    p.fuse_unk = get_bool(model, "fuse_unk", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = vocab_map.find(model["unk_token"].get<std::string>());
      if (it != vocab_map.end()) p.unk_id = it->second;
    }

    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      const json& added = j["added_tokens"];
      if (!added.is_array()) throw invalid_input(origin + ": added_tokens must be an array");
      for (size_t k = 0; k < added.size(); ++k) {
        const json& a = added[k];
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
            !a["content"].is_string()) {
          throw invalid_input(origin + ": added_tokens[" + std::to_string(k) + "] needs an integer id and a string content");
        }
        AddedToken t;
        const int64_t id = a["id"].get<int64_t>();
        if (id < 0 || id >= (int64_t(1) << 24)) {
          throw invalid_input(origin + ": added_tokens[" + std::to_string(k) + "].id out of range");
        }
        t.id = int32_t(id);
        t.content = a["content"].get<std::string>();
        t.special = get_bool(a, "special", false);
        t.single_word = get_bool(a, "single_word", false);
        t.lstrip = get_bool(a, "lstrip", false);
        t.rstrip = get_bool(a, "rstrip", false);
        t.normalized = get_bool(a, "normalized", !t.special);
        p.added.push_back(std::move(t));
      }
    }

    parse_normalizer(j.contains("normalizer") ? j["normalizer"] : json(), p);

    PipelineBuilder pre{origin, {}};
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) pre.add(j["pre_tokenizer"], "pre_tokenizer");
    if (pre.byte_level && (pre.metaspace || p.prepend_normalizer || p.replace_space)) {
      throw unsupported(origin + ": pre_tokenizer mixes ByteLevel with Metaspace/U+2581 normalizers");
    }
    if (!pre.byte_level) {
      if (!pre.metaspace && !p.prepend_normalizer && !p.replace_space) {
        throw unsupported(origin + ": neither a ByteLevel pre-tokenizer nor SentencePiece-style spaces (Metaspace or "
                          "a Replace(' ', U+2581) normalizer): qrt supports byte-level and SentencePiece BPE");
      }
      if (!pre.steps.empty()) throw unsupported(origin + ": pre_tokenizer steps besides Metaspace in a SentencePiece BPE");
      p.sentencepiece = true;
      if (pre.metaspace) p.replace_space = true;
      p.metaspace_prepend = pre.prepend;
      p.metaspace_split = pre.metaspace && pre.split;
    }
    p.pre_steps = pre.steps;
    p.pre_kind = PreTokenizerKind::Gpt2;
    bool digits = false;
    for (const tok::PreStep s : p.pre_steps) {
      if (s == tok::PreStep::SplitLlama3) p.pre_kind = PreTokenizerKind::Llama3;
      if (s == tok::PreStep::SplitQwen2) p.pre_kind = PreTokenizerKind::Qwen2;
      if (s == tok::PreStep::DigitsIndividual) digits = true;
    }
    if (digits && p.pre_kind == PreTokenizerKind::Gpt2) p.pre_kind = PreTokenizerKind::SmolLM;
    if (p.sentencepiece) p.pre_kind = PreTokenizerKind::SentencePiece;

    bool byte_level_decoder = false;
    parse_decoder(j.contains("decoder") ? j["decoder"] : json(), p, &byte_level_decoder);
    if (byte_level_decoder && p.sentencepiece) {
      throw unsupported(origin + ": a ByteLevel decoder on a SentencePiece-style BPE");
    }

    parse_post_processor(j.contains("post_processor") ? j["post_processor"] : json(), p, vocab_map);

    if (!tokenizer_config_text.empty()) {
      json cfg;
      try {
        cfg = json::parse(tokenizer_config_text);
      } catch (const json::exception& e) {
        throw invalid_input(origin + ": tokenizer_config.json is not valid JSON: " + io::json_error_text(e));
      }
      if (cfg.is_object()) {
        const std::string bos = config_token(cfg, "bos_token"), eos = config_token(cfg, "eos_token"),
                          pad = config_token(cfg, "pad_token"), unk = config_token(cfg, "unk_token");
        if (!bos.empty()) p.bos_id = token_id_of(p, vocab_map, bos), p.bos_token_text = bos;
        if (!eos.empty()) p.eos_id = token_id_of(p, vocab_map, eos);
        if (!pad.empty()) p.pad_id = token_id_of(p, vocab_map, pad);
        if (!unk.empty() && p.unk_id < 0) p.unk_id = token_id_of(p, vocab_map, unk);
        if (cfg.contains("chat_template")) {
          const json& ct = cfg["chat_template"];
          if (ct.is_string()) {
            p.chat_template = ct.get<std::string>();
          } else if (ct.is_array()) {
            for (const json& entry : ct) {
              if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
                  entry["template"].is_string()) {
                p.chat_template = entry["template"].get<std::string>();
              }
            }
          }
        }
      }
    }
    // Without a config, the post-processor's first special token is the BOS.
    if (p.bos_id < 0 && !p.prefix_ids.empty()) p.bos_id = p.prefix_ids.front();
  } catch (const json::exception& e) {
    throw invalid_input(origin + ": unexpected JSON structure: " + io::json_error_text(e));
  } catch (const Error& e) {
    // Helpers below the loader name the field but not the file.
    if (std::string(e.what()).rfind(origin, 0) == 0) throw;
    throw Error(e.kind(), origin + ": " + e.what());
  }
  return Tokenizer(Impl::build(std::move(p)));
}

}  // namespace qrt
