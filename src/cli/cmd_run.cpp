// `qrt run`: load a model (default: the SmolLM2 GGUF fetched by scripts/fetch-model.sh), plan a
// backend for every quantized layer, and stream a completion of the prompt (raw or through the
// model's chat template). The prompt comes from -p, -f or standard input (prompt_input.h). Ends
// with load time, prompt and decode speed and the backends used -- also after Ctrl-C, which stops
// generation and exits 130. -i / -cnv / --conversation run `qrt chat` instead.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/chat_loop.h"
#include "cli/command.h"
#include "cli/generate_cli.h"
#include "cli/interrupt.h"
#include "cli/prompt_input.h"
#include "qrt/error.h"
#include "qrt/plural.h"

namespace qrt::cli {
namespace {

struct RunOptions {
  GenerateCliOptions gen;
  std::string prompt, file;
  bool chat = false, conversation = false;
  CLI::Option *o_prompt = nullptr, *o_file = nullptr;
};

int run_command(const RunOptions& o) {
  if (o.conversation) {
    if (o.o_prompt->count() || o.o_file->count())
      throw invalid_input("-i / -cnv start a conversation on standard input: leave out -p and -f (qrt chat)");
    return chat_loop(o.gen);
  }
  const std::string text = read_prompt(o.prompt, o.o_prompt->count() > 0, o.file, o.o_file->count() > 0);
  if (text.empty()) throw invalid_input("the prompt is empty (-p): nothing to generate from");
  GenerationSession s = open_generation_session(o.gen);
  const Tokenizer& tokenizer = *s.tokenizer;

  // The prompt: through the chat template (special tokens already in the text) or raw.
  std::vector<int32_t> prompt;
  if (o.chat) {
    std::vector<ChatMessage> messages;
    if (!o.gen.system.empty()) messages.push_back({"system", o.gen.system});
    messages.push_back({"user", text});
    if (!tokenizer.chat_template().warning().empty())
      std::fprintf(stderr, "qrt: warning: %s\n", escape_message(tokenizer.chat_template().warning()).c_str());
    prompt = tokenizer.encode(tokenizer.apply_chat_template(messages, true), /*add_special=*/false);
  } else {
    if (!o.gen.system.empty()) std::fprintf(stderr, "qrt: warning: --system is only used with --chat\n");
    prompt = tokenizer.encode(text, /*add_special=*/true);
  }

  InterruptGuard interrupt;
  GenerationOptions go = s.generation_options(o.gen.ignore_eos);
  go.interrupt = interrupt.flag();
  Generator gen(*s.engine);
  GenerationResult r = gen.generate_text(tokenizer, prompt, go, [](const std::string& piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);

  print_session_summary(s);
  std::fprintf(stderr, "qrt: prompt: %s in %.3f s (%.1f tokens/s)\n", count_of(r.prompt_tokens, "token").c_str(),
               r.prompt_seconds, r.prompt_tokens_per_second());
  std::fprintf(stderr, "qrt: decode: %s in %.3f s (%.1f tokens/s), %zu generated, stopped: %s\n",
               count_of(r.decode_steps, "token").c_str(), r.decode_seconds, r.decode_tokens_per_second(),
               r.tokens.size(), r.stop_reason.c_str());
  return interrupt.interrupted() ? kInterruptedExit : 0;
}

const CommandRegistrar registrar(
    "run", "Generate text from a prompt (-p, -f or stdin) with a model (default: the SmolLM2 GGUF of "
           "scripts/fetch-model.sh)",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<RunOptions>();
      o->o_prompt = app.add_option("-p,--prompt", o->prompt, "Prompt text ('-' reads standard input)");
      o->o_file = app.add_option("-f,--file", o->file, "Read the prompt from a file ('-' = standard input)");
      app.add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template as a user message");
      app.add_flag("--conversation", o->conversation,
                   "Chat on standard input, as qrt chat (also -i, -cnv, --interactive)");
      o->gen.add_to(app, /*takes_prompt=*/true);
      app.footer("Without -p or -f the prompt is read from standard input when it is not a terminal.");
      return [o] { return run_command(*o); };
    });

}  // namespace
}  // namespace qrt::cli
