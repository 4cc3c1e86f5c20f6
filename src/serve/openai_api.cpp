// Request checking and response objects of the OpenAI API (see openai_api.h).
#include "serve/openai_api.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace qrt::serve {

std::string served_model_id(const std::string& model_path, const std::string& name) {
  if (!name.empty()) return name;
  std::filesystem::path p = std::filesystem::path(model_path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // a folder written with a trailing slash
  std::error_code ec;
  std::string id = std::filesystem::is_directory(model_path, ec) ? p.filename().string() : p.stem().string();
  return id.empty() || id == "." || id == ".." ? "qrt" : id;
}

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

// Reads the fields of one request body; the first problem is kept in *error and every later read
// returns false.
class Fields {
 public:
  Fields(const json& body, ApiError* error) : body_(body), error_(error) {}
  bool failed() const { return failed_; }

  // The field, or nullptr when absent or null.
  const json* get(const char* name) const {
    auto it = body_.find(name);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool fail(const std::string& param, const std::string& message, int status = 400, const std::string& code = {}) {
    if (!failed_) {
      failed_ = true;
      error_->status = status;
      error_->param = param;
      error_->message = message;
      error_->code = code;
    }
    return false;
  }
  bool number(const char* name, double lo, double hi, bool lo_open, float* out) {
    const json* v = get(name);
    if (!v || failed_) return !failed_;
    if (!v->is_number()) return fail(name, fmt::format("'{}' must be a number, got {}", name, type_name(*v)));
    const double x = v->get<double>();
    if (!std::isfinite(x) || x > hi || x < lo || (lo_open && x == lo))
      return fail(name, fmt::format("'{}' is {}: expected a number in {}{}, {}]", name, x, lo_open ? "(" : "[", lo, hi));
    *out = static_cast<float>(x);
    return true;
  }
  bool integer(const char* name, int64_t lo, int64_t hi, int64_t* out, bool* given = nullptr) {
    const json* v = get(name);
    if (!v || failed_) return !failed_;
    if (!v->is_number_integer()) return fail(name, fmt::format("'{}' must be an integer, got {}", name, type_name(*v)));
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      return fail(name, fmt::format("'{}' is too large", name));
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) return fail(name, fmt::format("'{}' is {}: expected an integer in [{}, {}]", name, x, lo, hi));
    *out = x;
    if (given) *given = true;
    return true;
  }
  bool boolean(const char* name, bool* out) {
    const json* v = get(name);
    if (!v || failed_) return !failed_;
    if (!v->is_boolean()) return fail(name, fmt::format("'{}' must be a boolean, got {}", name, type_name(*v)));
    *out = v->get<bool>();
    return true;
  }
  bool string(const char* name, std::string* out) {
    const json* v = get(name);
    if (!v || failed_) return !failed_;
    if (!v->is_string()) return fail(name, fmt::format("'{}' must be a string, got {}", name, type_name(*v)));
    *out = v->get<std::string>();
    return true;
  }
  // A field qrt does not implement: accepted only at its "off" value.
  bool unsupported_unless(const char* name, bool off, const std::string& what) {
    const json* v = get(name);
    if (!v || failed_ || off) return !failed_;
    return fail(name, fmt::format("'{}' is not supported by this server ({})", name, what));
  }

 private:
  const json& body_;
  ApiError* error_;
  bool failed_ = false;
};

// A token id array: integers in int32 range (the vocabulary is checked at submission).
bool token_array(Fields& f, const json& a, std::vector<int32_t>* out) {
  for (const json& t : a) {
    if (!t.is_number_integer()) return f.fail("prompt", "'prompt' token arrays must hold integers");
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      return f.fail("prompt", fmt::format("'prompt' token id {} is out of range", id));
    out->push_back(static_cast<int32_t>(id));
  }
  return true;
}

bool parse_prompt(Fields& f, ParsedRequest* r) {
  const json* p = f.get("prompt");
  if (!p) return f.fail("prompt", "'prompt' is required");
  if (p->is_string()) {
    r->prompt_text = p->get<std::string>();
    return true;
  }
  if (!p->is_array() || p->empty())
    return f.fail("prompt", "'prompt' must be a string, an array of token ids, or an array of one of those");
  const json& first = (*p)[0];
  if (first.is_number_integer()) return token_array(f, *p, &r->prompt_tokens);
  if (p->size() > 1)
    return f.fail("prompt", "several prompts in one request are not supported: send one request per prompt");
  if (first.is_string()) {
    r->prompt_text = first.get<std::string>();
    return true;
  }
  if (first.is_array() && !first.empty()) return token_array(f, first, &r->prompt_tokens);
  return f.fail("prompt", "'prompt' must be a string, an array of token ids, or an array of one of those");
}

bool parse_messages(Fields& f, ParsedRequest* r) {
  const json* m = f.get("messages");
  if (!m) return f.fail("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) return f.fail("messages", "'messages' must be a non-empty array of messages");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!msg.is_object()) return f.fail(where, fmt::format("'{}' must be an object", where));
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) return f.fail(where + ".role", fmt::format("'{}.role' must be a string", where));
    std::string r_name = role->get<std::string>();
    if (r_name == "developer") r_name = "system";  // OpenAI's newer name for system instructions
    if (r_name != "system" && r_name != "user" && r_name != "assistant")
      return f.fail(where + ".role", fmt::format("'{}.role' is '{}': expected system, developer, user or assistant "
                                                 "(tool messages are not supported)",
                                                 where, role->get<std::string>()));
    ChatMessage cm;
    cm.role = r_name;
    auto content = msg.find("content");
    if (content == msg.end() || content->is_null()) {
      if (r_name != "assistant") return f.fail(where + ".content", fmt::format("'{}.content' is required", where));
    } else if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: text only, joined by newlines.
      for (size_t j = 0; j < content->size(); ++j) {
        const json& part = (*content)[j];
        const std::string pw = fmt::format("{}.content[{}]", where, j);
        auto type = part.is_object() ? part.find("type") : part.end();
        auto text = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || !type->is_string() || type->get<std::string>() != "text" || text == part.end() ||
            !text->is_string())
          return f.fail(pw, fmt::format("'{}' must be {{\"type\": \"text\", \"text\": ...}} (only text is supported)", pw));
        if (j) cm.content += "\n";
        cm.content += text->get<std::string>();
      }
    } else {
      return f.fail(where + ".content", fmt::format("'{}.content' must be a string or an array of text parts", where));
    }
    r->messages.push_back(std::move(cm));
  }
  return true;
}

bool parse_stop(Fields& f, const ApiLimits& limits, std::vector<std::string>* out) {
  const json* s = f.get("stop");
  if (!s) return true;
  std::vector<std::string> stops;
  if (s->is_string()) {
    stops.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    for (const json& x : *s) {
      if (!x.is_string()) return f.fail("stop", "'stop' must be a string or an array of strings");
      stops.push_back(x.get<std::string>());
    }
  } else {
    return f.fail("stop", fmt::format("'stop' must be a string or an array of strings, got {}", type_name(*s)));
  }
  if (stops.size() > limits.max_stop_strings)
    return f.fail("stop", fmt::format("'stop' has {} strings: at most {}", stops.size(), limits.max_stop_strings));
  for (const std::string& x : stops) {
    if (x.empty()) return f.fail("stop", "'stop' strings must not be empty");
    if (x.size() > limits.max_stop_bytes)
      return f.fail("stop", fmt::format("'stop' strings must be at most {} bytes", limits.max_stop_bytes));
  }
  *out = std::move(stops);
  return true;
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json reason_json(const std::string& finish_reason) { return finish_reason.empty() ? json(nullptr) : json(finish_reason); }

// Where `s` stops being well-formed UTF-8 (shortest forms, no surrogates, at most U+10FFFF), or
// npos. JSON text is UTF-8 (RFC 8259); checked before parsing, because the parser passes such
// bytes through into strings.
size_t invalid_utf8_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return i;
    i += len;
  }
  return std::string::npos;
}

// `s` with every byte that is not part of well-formed UTF-8 written as \xNN.
std::string escape_invalid_utf8(std::string s) {
  std::string out;
  for (size_t bad; (bad = invalid_utf8_at(s)) != std::string::npos;) {
    out += s.substr(0, bad);
    out += fmt::format("\\x{:02X}", static_cast<unsigned char>(s[bad]));
    s.erase(0, bad + 1);
  }
  return out + s;
}

}  // namespace

json ApiError::to_json() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

std::optional<ParsedRequest> parse_request(Endpoint endpoint, const std::string& body, const ApiLimits& limits,
                                           const SamplingDefaults& defaults, uint64_t seed, ApiError* error) {
  if (const size_t bad = invalid_utf8_at(body); bad != std::string::npos) {
    *error = {400, fmt::format("the request body is not valid UTF-8 (byte {})", bad)};
    return std::nullopt;
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // The parser's message quotes the bytes it last read, which can end inside a multi-byte
    // character: escaped, so the error body is well-formed UTF-8 as JSON must be.
    *error = {400, "the request body is not valid JSON: " + escape_invalid_utf8(e.what())};
    return std::nullopt;
  }
  if (!j.is_object()) {
    *error = {400, std::string("the request body must be a JSON object, got ") + type_name(j)};
    return std::nullopt;
  }
  ParsedRequest r;
  r.endpoint = endpoint;
  Fields f(j, error);
  const bool chat = endpoint == Endpoint::ChatCompletions;

  std::string model;
  if (!f.get("model")) f.fail("model", "'model' is required");
  f.string("model", &model);
  if (!f.failed() && model != limits.model_id)
    f.fail("model", fmt::format("The model '{}' does not exist; this server serves '{}'", model, limits.model_id), 404,
           "model_not_found");
  if (chat) parse_messages(f, &r);
  else if (!f.failed()) parse_prompt(f, &r);

  int64_t n = 1;
  f.integer("n", 1, std::numeric_limits<int32_t>::max(), &n);
  if (!f.failed() && n != 1) f.fail("n", fmt::format("'n' is {}: only n = 1 is supported", n));
  if (!chat) {
    int64_t best_of = 1;
    f.integer("best_of", 1, std::numeric_limits<int32_t>::max(), &best_of);
    if (!f.failed() && best_of != 1) f.fail("best_of", "'best_of' > 1 is not supported");
  }

  GenerationParams& p = r.params;
  SamplingParams& s = p.sampling;
  s.temperature = defaults.temperature;
  s.top_p = defaults.top_p;
  s.top_k = defaults.top_k;
  s.min_p = defaults.min_p;
  s.repetition_penalty = defaults.repetition_penalty;
  s.repetition_last_n = -1;  // the whole history, as OpenAI-compatible servers apply it
  s.seed = seed;
  int64_t max_tokens = 0;
  f.integer("max_tokens", 1, INT64_MAX, &max_tokens, &r.max_tokens_given);
  if (chat) f.integer("max_completion_tokens", 1, INT64_MAX, &max_tokens, &r.max_tokens_given);
  if (!f.failed() && r.max_tokens_given && max_tokens > limits.max_tokens)
    f.fail(chat && f.get("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
           fmt::format("max_tokens is {}: this server allows at most {}", max_tokens, limits.max_tokens));
  p.max_tokens = max_tokens;
  f.number("temperature", 0, 2, false, &s.temperature);
  f.number("top_p", 0, 1, true, &s.top_p);
  int64_t top_k = s.top_k;
  f.integer("top_k", -1, std::numeric_limits<int32_t>::max(), &top_k);  // -1 = off, as in vLLM
  s.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
  f.number("min_p", 0, 1, false, &s.min_p);
  f.number("repetition_penalty", 0, 10, true, &s.repetition_penalty);
  f.number("presence_penalty", -2, 2, false, &p.presence_penalty);
  f.number("frequency_penalty", -2, 2, false, &p.frequency_penalty);
  int64_t seed_value = 0;
  bool seed_given = false;
  f.integer("seed", INT64_MIN, INT64_MAX, &seed_value, &seed_given);
  if (seed_given) s.seed = static_cast<uint64_t>(seed_value);
  parse_stop(f, limits, &p.stop);
  f.boolean("ignore_eos", &p.ignore_eos);
  f.boolean("stream", &r.stream);
  if (const json* so = f.get("stream_options"); so && !f.failed()) {
    if (!so->is_object()) {
      f.fail("stream_options", "'stream_options' must be an object");
    } else if (auto iu = so->find("include_usage"); iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) f.fail("stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
      else r.include_usage = iu->get<bool>();
    }
  }
  std::string user;
  f.string("user", &user);

  // What qrt does not implement: accepted only when it asks for nothing.
  auto is_false = [&](const char* name) {
    const json* v = f.get(name);
    return !v || (v->is_boolean() && !v->get<bool>()) || (v->is_number_integer() && v->get<int64_t>() == 0);
  };
  auto is_empty = [&](const char* name) {
    const json* v = f.get(name);
    return !v || ((v->is_object() || v->is_array() || v->is_string()) && v->empty());
  };
  f.unsupported_unless("logprobs", is_false("logprobs"), "no log probabilities");
  f.unsupported_unless("top_logprobs", is_false("top_logprobs"), "no log probabilities");
  f.unsupported_unless("echo", is_false("echo"), "the prompt is not echoed");
  f.unsupported_unless("suffix", is_empty("suffix"), "no insertion");
  f.unsupported_unless("logit_bias", is_empty("logit_bias"), "no logit bias");
  f.unsupported_unless("tools", is_empty("tools"), "no tool calls");
  f.unsupported_unless("functions", is_empty("functions"), "no function calls");
  const json* rf = f.get("response_format");
  const bool text_format = !rf || (rf->is_object() && rf->value("type", json()) == "text");
  f.unsupported_unless("response_format", text_format, "only {\"type\": \"text\"}");
  if (f.failed()) return std::nullopt;
  return r;
}

std::optional<ApiError> check_lengths(ParsedRequest& r, int64_t prompt_tokens, const ApiLimits& limits) {
  if (prompt_tokens < 1) return ApiError{400, "the prompt is empty: nothing to generate from", "invalid_request_error",
                                         r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt"};
  if (prompt_tokens > limits.max_prompt_tokens)
    return ApiError{400,
                    fmt::format("the prompt has {} tokens: this server accepts at most {}", prompt_tokens,
                                limits.max_prompt_tokens),
                    "invalid_request_error", r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt",
                    "context_length_exceeded"};
  const int64_t room = std::min(limits.context - prompt_tokens, limits.max_tokens);
  if (!r.max_tokens_given) {
    // OpenAI's defaults: 16 for completions, the rest of the context for chat.
    r.params.max_tokens = r.endpoint == Endpoint::Completions ? std::min<int64_t>(16, room) : room;
    if (r.params.max_tokens < 1)
      return ApiError{400,
                      fmt::format("This model's maximum context length is {} tokens and the prompt has {}: no room "
                                  "for a completion",
                                  limits.context, prompt_tokens),
                      "invalid_request_error", "messages", "context_length_exceeded"};
  } else if (prompt_tokens + r.params.max_tokens > limits.context) {
    return ApiError{400,
                    fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens "
                                "({} in the prompt, {} for the completion). Reduce the prompt or max_tokens.",
                                limits.context, prompt_tokens + r.params.max_tokens, prompt_tokens,
                                r.params.max_tokens),
                    "invalid_request_error", "max_tokens", "context_length_exceeded"};
  }
  return std::nullopt;
}

json completion_response(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& model,
                         const std::string& text, const std::string& finish_reason, int64_t prompt_tokens,
                         int64_t completion_tokens) {
  json choice;
  if (r.endpoint == Endpoint::ChatCompletions)
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"logprobs", nullptr},
              {"finish_reason", reason_json(finish_reason)}};
  else
    choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  return {{"id", id},
          {"object", r.endpoint == Endpoint::ChatCompletions ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})},
          {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json stream_chunk(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& model,
                  const std::string& text, const std::string& finish_reason, bool first) {
  json choice;
  if (r.endpoint == Endpoint::ChatCompletions) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish_reason.empty())) delta["content"] = text;
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  } else {
    choice = {{"text", text}, {"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason_json(finish_reason)}};
  }
  return {{"id", id},
          {"object", r.endpoint == Endpoint::ChatCompletions ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({choice})}};
}

json usage_chunk(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& model,
                 int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"id", id},
          {"object", r.endpoint == Endpoint::ChatCompletions ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json models_response(const std::string& model, int64_t created) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "qrt"}}})}};
}

std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace qrt::serve
