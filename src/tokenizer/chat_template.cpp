// Chat template families rendered in C++ (see chat_template.h for why there is no Jinja engine).
#include "qrt/chat_template.h"

#include <cstdio>

namespace qrt {
namespace {

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// Jinja's `trim` filter: strips leading and trailing whitespace.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// A ChatML template that adds a system turn when the conversation has none spells it as a string
// literal: '<|im_start|>system\nYou are ...<|im_end|>\n'. Returns the literal text between
// "system\n" and "<|im_end|>" when it contains no Jinja expression, else "".
std::string chatml_default_system(const std::string& tpl) {
  if (!contains(tpl, "!= 'system'") && !contains(tpl, "!= \"system\"") &&
      !contains(tpl, "== 'system'") && !contains(tpl, "== \"system\"")) {
    return "";
  }
  size_t pos = 0;
  while ((pos = tpl.find("<|im_start|>system", pos)) != std::string::npos) {
    pos += 18;
    size_t start = pos;
    if (tpl.compare(start, 1, "\n") == 0) {
      start += 1;
    } else if (tpl.compare(start, 2, "\\n") == 0) {
      start += 2;
    } else {
      continue;
    }
    const size_t end = tpl.find("<|im_end|>", start);
    if (end == std::string::npos) break;
    std::string literal = tpl.substr(start, end - start);
    if (literal.empty() || literal.find_first_of("'\"{}+") != std::string::npos) continue;
    // Undo the Jinja string escape for newlines.
    std::string out;
    for (size_t k = 0; k < literal.size(); ++k) {
      if (literal[k] == '\\' && k + 1 < literal.size() && literal[k + 1] == 'n') {
        out += '\n';
        ++k;
      } else {
        out += literal[k];
      }
    }
    return out;
  }
  return "";
}

}  // namespace

const char* chat_template_family_name(ChatTemplateFamily family) {
  switch (family) {
    case ChatTemplateFamily::ChatML: return "chatml";
    case ChatTemplateFamily::Llama3: return "llama3";
    case ChatTemplateFamily::Raw: return "raw";
  }
  return "?";
}

ChatTemplate ChatTemplate::detect(const std::string& jinja, bool has_im_start, bool has_header_ids,
                                  const std::string& bos_token) {
  ChatTemplate t;
  t.bos_token_ = bos_token;
  t.warning_.clear();
  if (contains(jinja, "<|im_start|>")) {
    t.family_ = ChatTemplateFamily::ChatML;
    t.default_system_ = chatml_default_system(jinja);
    return t;
  }
  if (contains(jinja, "<|start_header_id|>")) {
    t.family_ = ChatTemplateFamily::Llama3;
    t.llama31_system_block_ = contains(jinja, "Cutting Knowledge Date");
    if (t.bos_token_.empty()) t.bos_token_ = "<|begin_of_text|>";
    return t;
  }
  const std::string what = jinja.empty() ? "the model has no chat template"
                                         : "the model's chat template is not a family qrt knows";
  if (has_im_start) {
    t.family_ = ChatTemplateFamily::ChatML;
    t.warning_ = what + "; using ChatML because the vocabulary has <|im_start|>";
  } else if (has_header_ids) {
    t.family_ = ChatTemplateFamily::Llama3;
    if (t.bos_token_.empty()) t.bos_token_ = "<|begin_of_text|>";
    t.warning_ = what + "; using the Llama-3 format because the vocabulary has <|start_header_id|>";
  } else {
    t.family_ = ChatTemplateFamily::Raw;
    t.warning_ = what + "; the prompt is the raw message text without chat markers";
  }
  return t;
}

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  switch (family_) {
    case ChatTemplateFamily::ChatML: {
      if (!default_system_.empty() && (messages.empty() || messages.front().role != "system") &&
          !messages.empty()) {
        out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
      }
      for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    }
    case ChatTemplateFamily::Llama3: {
      out += bos_token_;
      size_t first = 0;
      if (llama31_system_block_) {
        // Llama 3.1+: a system turn always comes first, with the template's default dates.
        std::string system;
        if (!messages.empty() && messages.front().role == "system") {
          system = trim(messages.front().content);
          first = 1;
        }
        out += "<|start_header_id|>system<|end_header_id|>\n\n";
        out += "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
        out += system + "<|eot_id|>";
      }
      for (size_t k = first; k < messages.size(); ++k) {
        const ChatMessage& m = messages[k];
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    }
    case ChatTemplateFamily::Raw: {
      for (size_t k = 0; k < messages.size(); ++k) {
        if (k) out += "\n\n";
        out += messages[k].content;
      }
      break;
    }
  }
  return out;
}

}  // namespace qrt
