// libFuzzer target: the request bodies of `qrt serve` (/v1/completions, /v1/chat/completions).
// Any input must be accepted or refused with an ApiError (never an exception or a crash); an
// accepted request must pass the length checks or be refused by them, and every response object
// built from it must serialize as the server writes it (json_text).
// Seeds: tests/data/fuzz_seeds/fuzz_openai_request/.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serve/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  const std::string body(reinterpret_cast<const char*>(data), size);
  qrt::serve::ApiLimits limits;
  limits.model_id = "m";
  limits.max_prompt_tokens = 100;
  limits.max_tokens = 50;
  limits.context = 120;
  for (auto endpoint : {qrt::serve::Endpoint::Completions, qrt::serve::Endpoint::ChatCompletions}) {
    qrt::serve::ApiError error;
    auto r = qrt::serve::parse_request(endpoint, body, limits, qrt::serve::SamplingDefaults{}, 1, &error);
    if (!r) {
      if (error.status < 400 || error.status > 499 || error.message.empty()) std::abort();
      (void)qrt::serve::json_text(error.to_json());
      continue;
    }
    for (int64_t prompt : {int64_t{0}, int64_t{1}, int64_t{100}, int64_t{101}}) {
      qrt::serve::ParsedRequest copy = *r;
      if (!qrt::serve::check_lengths(copy, prompt, limits) &&
          (copy.params.max_tokens < 1 || prompt + copy.params.max_tokens > limits.context))
        std::abort();  // accepted lengths must fit the context
    }
    (void)qrt::serve::json_text(qrt::serve::completion_response(*r, "id", 0, "m", "text", "stop", 1, 1));
    (void)qrt::serve::json_text(qrt::serve::stream_chunk(*r, "id", 0, "m", "text", "", true));
  }
  return 0;
}
