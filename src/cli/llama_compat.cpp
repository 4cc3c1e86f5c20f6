// See llama_compat.h. The tables below are the whole policy: a rewrite is a spelling, a refusal
// names what qrt does instead; nothing here changes what a qrt flag means.
#include "cli/llama_compat.h"

#include <algorithm>
#include <array>
#include <string_view>

namespace qrt::cli {
namespace {

struct Refusal {
  std::string_view flags;   // space-separated spellings
  std::string_view what;    // what the flag does in llama.cpp
  std::string_view instead;
};

constexpr std::array kRefusals = {
    Refusal{"-ngl --n-gpu-layers --gpu-layers", "layers to offload to the GPU",
            "use --device cuda (or cuda:N) to run the whole model on a GPU, --device cpu for the CPU"},
    Refusal{"-sm --split-mode -ts --tensor-split -mg --main-gpu", "splitting a model over GPUs",
            "use --device cuda:N to run the model on GPU N"},
    Refusal{"-fa --flash-attn", "flash attention", "nothing to switch: attention always runs qrt's fused kernels"},
    Refusal{"-b --batch-size -ub --ubatch-size", "the prompt batch size",
            "nothing to set: the prompt is processed in steps of 128 tokens"},
    Refusal{"-ctk --cache-type-k -ctv --cache-type-v", "the KV cache type",
            "use --kv-cache f16|f32 (keys and values together)"},
    Refusal{"--mlock --no-mmap --numa", "memory placement", "nothing to set: weights are memory-mapped and packed at load"},
    Refusal{"-hf --hf-repo -hff --hf-file -mu --model-url", "downloading a model",
            "use -m with a local Hugging Face folder or .gguf file (scripts/fetch-model.sh fetches the default one)"},
    Refusal{"--chat-template --jinja", "the chat template",
            "use qrt chat or qrt run --chat: qrt recognizes the model's own template"},
    Refusal{"-r --reverse-prompt -ins --instruct -mli --multiline-input", "interactive-mode prompts",
            "use qrt chat: each reply stops at the model's end-of-turn token"},
    Refusal{"--lora --lora-scaled --control-vector", "adapters", "merge the adapter into the checkpoint first"},
    Refusal{"-e --escape --no-escape", "escape processing", "use -f FILE for multi-line text: prompts are taken as written"},
};

// llama-bench's flags mean something else than qrt bench's.
constexpr std::array kBenchRefusals = {
    Refusal{"-p --n-prompt -n --n-gen -pg -r --repetitions", "llama-bench's prompt / generation lengths",
            "use --batch for the row counts qrt bench times its quantized layers at; qrt run -n N prints prompt and "
            "decode tokens/s, and bench/cpu_decode_vs_llamacpp.sh runs qrt next to llama-bench"},
};

bool listed(std::string_view flags, std::string_view arg) {
  size_t start = 0;
  while (start < flags.size()) {
    size_t end = flags.find(' ', start);
    if (end == std::string_view::npos) end = flags.size();
    if (flags.substr(start, end - start) == arg) return true;
    start = end + 1;
  }
  return false;
}

// Options whose value may itself look like a flag ("-p -ngl" is a prompt).
bool takes_text_value(const std::string& arg) {
  static const char* const kText[] = {"-p", "--prompt", "--system", "--system-prompt", "-f", "--file", "-m", "--model"};
  return std::find(std::begin(kText), std::end(kText), arg) != std::end(kText);
}

}  // namespace

std::string adapt_llama_flags(const std::string& command, std::vector<std::string>* args) {
  const bool generates = command == "run" || command == "chat";
  std::vector<std::string> out;
  for (size_t i = 0; i < args->size(); ++i) {
    std::string a = (*args)[i];
    // "--flag=value" is refused or rewritten by its flag.
    const std::string flag = a.rfind("--", 0) == 0 ? a.substr(0, a.find('=')) : a;
    if (generates && (flag == "-sys" || flag == "--system-prompt")) a = "--system" + a.substr(flag.size());
    if (command == "run" && (flag == "-cnv" || flag == "-i" || flag == "--interactive")) a = "--conversation";
    if (command == "chat" && (flag == "-cnv" || flag == "-i" || flag == "--interactive" || flag == "--conversation"))
      continue;  // chat is the conversation
    if (generates && (flag == "-no-cnv" || flag == "--no-conversation")) {
      if (command == "chat") return "qrt chat is always a conversation: use qrt run for one prompt";
      continue;  // run's default
    }
    if (command == "bench")
      for (const Refusal& r : kBenchRefusals)
        if (listed(r.flags, flag))
          return "qrt bench has no " + flag + " (" + std::string(r.what) + "): " + std::string(r.instead);
    for (const Refusal& r : kRefusals)
      if (listed(r.flags, flag)) return "qrt has no " + flag + " (" + std::string(r.what) + "): " + std::string(r.instead);
    out.push_back(a);
    if (takes_text_value(flag) && flag == a && i + 1 < args->size()) out.push_back((*args)[++i]);
  }
  *args = std::move(out);
  return "";
}

}  // namespace qrt::cli
