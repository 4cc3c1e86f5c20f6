// The OpenAI API of `qrt serve` without the HTTP: request bodies of /v1/completions and
// /v1/chat/completions checked field by field into a GenerationParams and a prompt, errors in
// OpenAI's shape ({"error": {"message", "type", "param", "code"}}), and the response and stream
// chunk objects. Unknown fields are ignored (clients send extensions); a known field of the wrong
// type or out of range, an unknown model, n > 1 and the features qrt does not implement (logprobs,
// echo, suffix, best_of > 1, logit_bias, tools, response formats other than text) are 400 / 404
// errors that name the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qrt/chat_template.h"
#include "serve/scheduler.h"

namespace qrt::serve {

using json = nlohmann::json;

struct ApiError {
  ApiError() = default;
  ApiError(int s, std::string m, std::string t = "invalid_request_error", std::string p = {}, std::string c = {})
      : status(s), message(std::move(m)), type(std::move(t)), param(std::move(p)), code(std::move(c)) {}
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" = null
  std::string code;   // "" = null
  json to_json() const;
};

// What the server allows (the limits of README's "qrt serve" section).
struct ApiLimits {
  std::string model_id;             // the one model name clients must ask for
  int64_t max_prompt_tokens = 0;    // longest prompt
  int64_t max_tokens = 0;           // largest max_tokens
  int64_t context = 0;              // prompt + max_tokens per sequence
  size_t max_stop_strings = 4;
  size_t max_stop_bytes = 256;
};

// The model id clients must ask for: `name` (--model-name) when given, else the model file's
// name without its extension, or a folder's own name; "qrt" when the path names neither.
std::string served_model_id(const std::string& model_path, const std::string& name);

// Sampling defaults when the request gives none: OpenAI's (temperature 1, top_p 1) unless the
// model's generation_config.json has its own.
struct SamplingDefaults {
  float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f, repetition_penalty = 1.0f;
  int top_k = 0;
};

enum class Endpoint { Completions, ChatCompletions };

// A checked request; the prompt is text (tokenized by the caller) or token ids (completions).
struct ParsedRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string prompt_text;
  std::vector<int32_t> prompt_tokens;     // non-empty: the client sent ids
  std::vector<ChatMessage> messages;      // chat
  GenerationParams params;
  bool max_tokens_given = false;          // else the default: 16 (completions), the rest of the context (chat)
  bool stream = false;
  bool include_usage = false;             // stream_options.include_usage
};

// Parses and checks a body. `seed` is used when the request has none (OpenAI's default is a
// random seed; the caller draws it).
std::optional<ParsedRequest> parse_request(Endpoint endpoint, const std::string& body, const ApiLimits& limits,
                                           const SamplingDefaults& defaults, uint64_t seed, ApiError* error);

// Checks the tokenized prompt against the limits and sets max_tokens when the request had none.
std::optional<ApiError> check_lengths(ParsedRequest& request, int64_t prompt_tokens, const ApiLimits& limits);

// Response objects. `id` is "cmpl-..." or "chatcmpl-...", `created` Unix seconds.
json completion_response(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& model,
                         const std::string& text, const std::string& finish_reason, int64_t prompt_tokens,
                         int64_t completion_tokens);
// A stream chunk with `text` (chat: the delta's content; `first` adds the assistant role) or, when
// finish_reason is set, the last chunk of the choice.
json stream_chunk(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& model,
                  const std::string& text, const std::string& finish_reason, bool first);
// The usage chunk of stream_options.include_usage (no choices).
json usage_chunk(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& model,
                 int64_t prompt_tokens, int64_t completion_tokens);
json models_response(const std::string& model, int64_t created);

// The wire text of a response: any ill-formed UTF-8 that reached a string (bytes of a refused
// request quoted in an error, a file name as the model id) becomes U+FFFD instead of an exception.
std::string json_text(const json& j);

}  // namespace qrt::serve
