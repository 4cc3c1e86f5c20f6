// `qrt chat`: a multi-turn conversation with a model through its chat template. Each line of
// standard input is a user message; the reply streams to standard output. The conversation is kept
// within the context: when the next prompt would not leave room for a reply, the oldest turns are
// dropped (the system message stays). The KV cache keeps what the previous turns computed, so a
// turn prefills only its new tokens. /reset forgets the conversation, /exit (or end of input) ends
// it, Ctrl-C stops a reply (a second one at the prompt ends the chat, exit 130).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/chat_loop.h"
#include "cli/interrupt.h"
#include "qrt/error.h"
#include "qrt/plural.h"

namespace qrt::cli {
namespace {

// Lines of standard input read with read(2), so that Ctrl-C interrupts a waiting read (the C++
// streams retry on EINTR) and the chat can end.
class LineReader {
 public:
  explicit LineReader(const InterruptGuard& interrupt) : interrupt_(interrupt) {}
  // False at end of input or when interrupted while waiting.
  bool next(std::string* line) {
    line->clear();
    for (;;) {
      if (pos_ == end_) {
        const ssize_t got = ::read(0, buf_, sizeof buf_);
        if (got < 0 && errno == EINTR && !interrupt_.interrupted()) continue;
        if (got <= 0) return !line->empty();
        pos_ = 0;
        end_ = static_cast<size_t>(got);
      }
      const char c = buf_[pos_++];
      if (c == '\n') break;
      line->push_back(c);
    }
    if (!line->empty() && line->back() == '\r') line->pop_back();
    return true;
  }

 private:
  const InterruptGuard& interrupt_;
  char buf_[4096];
  size_t pos_ = 0, end_ = 0;
};

bool blank(const std::string& s) { return s.find_first_not_of(" \t") == std::string::npos; }

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace

int chat_loop(const GenerateCliOptions& o) {
  GenerationSession s = open_generation_session(o);
  const Tokenizer& tokenizer = *s.tokenizer;
  if (!tokenizer.chat_template().warning().empty())
    std::fprintf(stderr, "qrt: warning: %s\n", escape_message(tokenizer.chat_template().warning()).c_str());
  const bool terminal = isatty(0) != 0;
  if (terminal)
    std::fprintf(stderr, "qrt chat: one message per line; /reset forgets the conversation, /exit or Ctrl-D ends it\n");

  InterruptGuard interrupt;
  LineReader input(interrupt);
  Generator gen(*s.engine);
  GenerationOptions base = s.generation_options(o.ignore_eos);
  base.interrupt = interrupt.flag();
  const int64_t max_prompt = base.max_input_length;

  std::vector<ChatMessage> turns;   // user / assistant, oldest first
  std::vector<int32_t> cached;      // what the KV cache holds, from position 0
  int64_t turn_count = 0, prompt_tokens = 0, decode_steps = 0, generated = 0;
  double prompt_seconds = 0, decode_seconds = 0;
  bool ended_by_interrupt = false;
  std::string line;
  for (;;) {
    if (terminal) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!input.next(&line)) {
      ended_by_interrupt = interrupt.interrupted();
      if (terminal) std::fputc('\n', stdout);
      break;
    }
    if (blank(line)) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      turns.clear();
      cached.clear();
      std::fprintf(stderr, "qrt: conversation reset\n");
      continue;
    }
    if (line == "/help") {
      std::fprintf(stderr, "qrt: /reset forgets the conversation; /exit, /quit or end of input ends it\n");
      continue;
    }

    // The whole conversation through the template; the oldest turns go while the prompt would not
    // leave the reply its room.
    turns.push_back({"user", line});
    std::vector<int32_t> prompt;
    int64_t dropped = 0;
    for (;;) {
      std::vector<ChatMessage> messages;
      if (!o.system.empty()) messages.push_back({"system", o.system});
      messages.insert(messages.end(), turns.begin(), turns.end());
      prompt = tokenizer.encode(tokenizer.apply_chat_template(messages, true), /*add_special=*/false);
      if (static_cast<int64_t>(prompt.size()) <= max_prompt || turns.size() <= 1) break;
      turns.erase(turns.begin(), turns.begin() + 2);  // a user message and its reply
      ++dropped;
    }
    if (dropped)
      std::fprintf(stderr, "qrt: the context is full: dropped the %s of the conversation\n",
                   dropped == 1 ? "oldest turn" : (std::to_string(dropped) + " oldest turns").c_str());
    if (static_cast<int64_t>(prompt.size()) > max_prompt) {
      std::fprintf(stderr, "qrt: error: this message takes %s with the template, more than the %lld a prompt may "
                   "have (raise -c or --max-input-length)\n",
                   count_of(static_cast<int64_t>(prompt.size()), "token").c_str(), static_cast<long long>(max_prompt));
      turns.pop_back();
      continue;
    }

    GenerationOptions go = base;
    go.cached_prefix = static_cast<int64_t>(common_prefix(cached, prompt));
    std::string reply;
    const GenerationResult r = gen.generate_text(tokenizer, prompt, go, [&](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      reply += piece;
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    turns.push_back({"assistant", reply});
    cached = prompt;
    cached.insert(cached.end(), r.tokens.begin(), r.tokens.begin() + r.decode_steps);
    ++turn_count;
    prompt_tokens += r.prompt_tokens;
    prompt_seconds += r.prompt_seconds;
    decode_steps += r.decode_steps;
    decode_seconds += r.decode_seconds;
    generated += static_cast<int64_t>(r.tokens.size());
    if (o.verbose)
      std::fprintf(stderr, "qrt: turn %lld: prompt %s (%lld reused from the cache), %zu generated, stopped: %s\n",
                   static_cast<long long>(turn_count), count_of(static_cast<int64_t>(prompt.size()), "token").c_str(),
                   static_cast<long long>(go.cached_prefix), r.tokens.size(), r.stop_reason.c_str());
    if (interrupt.interrupted()) {
      std::fprintf(stderr, "qrt: reply interrupted (Ctrl-C again at the prompt ends the chat)\n");
      interrupt.rearm();
    }
  }

  print_session_summary(s);
  std::fprintf(stderr, "qrt: chat: %s, %s generated; prompt %s in %.3f s, decode %s in %.3f s (%.1f tokens/s)\n",
               count_of(turn_count, "turn").c_str(), count_of(generated, "token").c_str(),
               count_of(prompt_tokens, "token").c_str(), prompt_seconds, count_of(decode_steps, "token").c_str(),
               decode_seconds, decode_seconds > 0 ? decode_steps / decode_seconds : 0.0);
  return ended_by_interrupt ? kInterruptedExit : 0;
}

namespace {
const CommandRegistrar registrar(
    "chat", "Talk with a model: one message per line of standard input, replies through its chat template",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<GenerateCliOptions>();
      o->add_to(app);
      app.footer("In the chat: /reset forgets the conversation, /exit (or end of input) ends it. When the context "
                 "(-c) fills, the oldest turns are dropped.");
      return [o] { return chat_loop(*o); };
    });
}  // namespace

}  // namespace qrt::cli
