// Chat templates without a Jinja engine: qrt recognizes the family of a model's template (its
// `tokenizer.chat_template` / tokenizer_config.json text and the special tokens it has) and renders
// that family in C++, reproducing Hugging Face apply_chat_template's output for it.
//
// Why not Jinja: the template is untrusted model metadata (templates have been used for code
// execution in engines that render them unsandboxed), and the families in use are few.
#pragma once

#include <string>
#include <vector>

namespace qrt {

struct ChatMessage {
  std::string role;      // "system", "user", "assistant"
  std::string content;
};

enum class ChatTemplateFamily {
  ChatML,   // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen2, ...)
  Llama3,   // <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  Raw,      // no template: message contents joined by blank lines, no markers
};
const char* chat_template_family_name(ChatTemplateFamily family);

class ChatTemplate {
 public:
  ChatTemplate() = default;
  // Chooses the family from the Jinja text; when the text is empty or unknown, from the special
  // tokens the vocabulary has (has_im_start: "<|im_start|>", has_header_ids: "<|start_header_id|>"),
  // else Raw. Any guess is explained in warning(). `bos_token` is the text a Llama-3 template
  // starts with ("<|begin_of_text|>").
  static ChatTemplate detect(const std::string& jinja_text, bool has_im_start, bool has_header_ids,
                             const std::string& bos_token);

  // The prompt text. It contains the special tokens as text: encode it with add_special = false.
  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const;

  ChatTemplateFamily family() const { return family_; }
  // The system prompt the template adds when the conversation has none ("" = none), e.g. SmolLM2's
  // "You are a helpful AI assistant named SmolLM, trained by Hugging Face".
  const std::string& default_system_prompt() const { return default_system_; }
  // Empty when the template was recognized; otherwise says what qrt does instead.
  const std::string& warning() const { return warning_; }

 private:
  ChatTemplateFamily family_ = ChatTemplateFamily::Raw;
  std::string default_system_;
  std::string bos_token_;
  bool llama31_system_block_ = false;   // Llama 3.1+: "Cutting Knowledge Date" system header always
  std::string warning_ = "no chat template: messages are joined as raw text";
};

}  // namespace qrt
