// Request checking of the OpenAI API (serve/openai_api.h): what is accepted and how it maps onto
// GenerationParams, and every rejection as a 4xx in OpenAI's error shape naming the field.
#include <gtest/gtest.h>

#include "serve/openai_api.h"

#include <filesystem>

namespace qrt::serve {
namespace {

ApiLimits limits() {
  ApiLimits l;
  l.model_id = "tiny";
  l.max_prompt_tokens = 100;
  l.max_tokens = 50;
  l.context = 120;
  return l;
}

std::optional<ParsedRequest> parse(Endpoint e, const std::string& body, ApiError* err) {
  return parse_request(e, body, limits(), SamplingDefaults{}, 42, err);
}

// The request is refused with `status`, naming `param` (when given).
void expect_rejected(Endpoint e, const std::string& body, int status, const std::string& param = "") {
  ApiError err;
  EXPECT_FALSE(parse(e, body, &err)) << body;
  EXPECT_EQ(err.status, status) << body << ": " << err.message;
  if (!param.empty()) {
    EXPECT_EQ(err.param, param) << body << ": " << err.message;
  }
  const json j = err.to_json();
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  EXPECT_TRUE(j["error"].contains("param"));
  EXPECT_TRUE(j["error"].contains("code"));
  EXPECT_NO_THROW((void)j.dump()) << body;  // well-formed UTF-8 throughout (a strict dump)
}

TEST(OpenAiApi, CompletionFieldsMapOntoTheGenerationParams) {
  ApiError err;
  auto r = parse(Endpoint::Completions,
                 R"({"model":"tiny","prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":-1,
                     "seed":-3,"stop":["a","bc"],"presence_penalty":0.5,"frequency_penalty":-1,"stream":true,
                     "stream_options":{"include_usage":true},"n":1,"logprobs":null,"echo":false,"user":"u",
                     "unknown_extension":{"x":1}})",
                 &err);
  ASSERT_TRUE(r) << err.message;
  EXPECT_EQ(r->prompt_text, "hi");
  EXPECT_EQ(r->params.max_tokens, 7);
  EXPECT_TRUE(r->max_tokens_given);
  EXPECT_FLOAT_EQ(r->params.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r->params.sampling.top_p, 0.9f);
  EXPECT_EQ(r->params.sampling.top_k, 0);
  EXPECT_EQ(r->params.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_FLOAT_EQ(r->params.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r->params.frequency_penalty, -1.0f);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);

  // Defaults: OpenAI's temperature 1, the caller's seed, max_tokens 16 once the prompt is known.
  r = parse(Endpoint::Completions, R"({"model":"tiny","prompt":[1,2,3]})", &err);
  ASSERT_TRUE(r) << err.message;
  EXPECT_EQ(r->prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FLOAT_EQ(r->params.sampling.temperature, 1.0f);
  EXPECT_EQ(r->params.sampling.seed, 42u);
  EXPECT_FALSE(check_lengths(*r, 3, limits()));
  EXPECT_EQ(r->params.max_tokens, 16);
  r = parse(Endpoint::Completions, R"({"model":"tiny","prompt":[[4,5]]})", &err);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->prompt_tokens, (std::vector<int32_t>{4, 5}));
  r = parse(Endpoint::Completions, R"({"model":"tiny","prompt":["one"],"stop":"\n"})", &err);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->prompt_text, "one");
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"\n"}));
}

TEST(OpenAiApi, ChatMessagesAndTheirContentParts) {
  ApiError err;
  auto r = parse(Endpoint::ChatCompletions,
                 R"({"model":"tiny","messages":[{"role":"developer","content":"be brief"},
                     {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                     {"role":"assistant","content":null},{"role":"user","content":"c","name":"x"}],
                     "max_completion_tokens":5})",
                 &err);
  ASSERT_TRUE(r) << err.message;
  ASSERT_EQ(r->messages.size(), 4u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "a\nb");
  EXPECT_EQ(r->messages[2].content, "");
  EXPECT_EQ(r->params.max_tokens, 5);
  // Without max_tokens a chat completion may use the rest of the context (up to the limit).
  r = parse(Endpoint::ChatCompletions, R"({"model":"tiny","messages":[{"role":"user","content":"hi"}]})", &err);
  ASSERT_TRUE(r);
  EXPECT_FALSE(check_lengths(*r, 90, limits()));
  EXPECT_EQ(r->params.max_tokens, 30);
  EXPECT_FALSE(check_lengths(*r, 10, limits()));
  EXPECT_EQ(r->params.max_tokens, 50);
}

TEST(OpenAiApi, BadBodiesAreErrorsNamingTheField) {
  const Endpoint C = Endpoint::Completions, Chat = Endpoint::ChatCompletions;
  expect_rejected(C, "{", 400);
  // Valid UTF-8 that the JSON parser stops inside of (its message quotes a lone lead byte).
  const char stops_inside[] = "{\xDE\x9C" "odel\":\"\0\0\0\0\0\0\0{\"";
  expect_rejected(C, std::string(stops_inside, sizeof(stops_inside) - 1), 400);
  expect_rejected(C, "{\"model\":\"tiny\",\"prompt\":\"x\", \xE2\x82\xAC}", 400);
  expect_rejected(C, "[1, 2]", 400);
  // Ill-formed UTF-8: a bad continuation, an overlong form, a surrogate, past U+10FFFF, truncated.
  for (const char* bad : {"\xC3\x28", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\xFF"})
    expect_rejected(C, std::string("{\"model\":\"tiny\",\"prompt\":\"") + bad + "\"}", 400);
  ApiError ok;
  EXPECT_TRUE(parse(C, "{\"model\":\"tiny\",\"prompt\":\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"}", &ok)) << ok.message;
  expect_rejected(C, R"({"prompt":"x"})", 400, "model");
  expect_rejected(C, R"({"model":"gpt-4","prompt":"x"})", 404, "model");
  expect_rejected(C, R"({"model":7,"prompt":"x"})", 400, "model");
  expect_rejected(C, R"({"model":"tiny"})", 400, "prompt");
  expect_rejected(C, R"({"model":"tiny","prompt":["a","b"]})", 400, "prompt");
  expect_rejected(C, R"({"model":"tiny","prompt":[1,"a"]})", 400, "prompt");
  expect_rejected(C, R"({"model":"tiny","prompt":[]})", 400, "prompt");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","max_tokens":"5"})", 400, "max_tokens");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","max_tokens":5.5})", 400, "max_tokens");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","max_tokens":0})", 400, "max_tokens");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","max_tokens":51})", 400, "max_tokens");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","temperature":"hot"})", 400, "temperature");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","temperature":2.5})", 400, "temperature");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","top_p":0})", 400, "top_p");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","n":2})", 400, "n");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","best_of":3})", 400, "best_of");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","stream":"yes"})", 400, "stream");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","stop":["a","b","c","d","e"]})", 400, "stop");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","stop":[""]})", 400, "stop");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","stop":3})", 400, "stop");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","logprobs":2})", 400, "logprobs");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","echo":true})", 400, "echo");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","logit_bias":{"1":5}})", 400, "logit_bias");
  expect_rejected(C, R"({"model":"tiny","prompt":"x","seed":1e30})", 400, "seed");
  expect_rejected(Chat, R"({"model":"tiny","messages":[]})", 400, "messages");
  expect_rejected(Chat, R"({"model":"tiny","messages":"hi"})", 400, "messages");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"role":"tool","content":"x"}]})", 400, "messages[0].role");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"content":"x"}]})", 400, "messages[0].role");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"role":"user"}]})", 400, "messages[0].content");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"role":"user","content":5}]})", 400, "messages[0].content");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]})", 400,
                  "messages[0].content[0]");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true})", 400,
                  "logprobs");
  expect_rejected(Chat, R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})",
                  400, "tools");
  expect_rejected(Chat,
                  R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})",
                  400, "response_format");
  // A deeply nested body is an ordinary parse (no stack overflow) and an ordinary error.
  expect_rejected(C, std::string(100000, '[') + std::string(100000, ']'), 400);
}

TEST(OpenAiApi, LengthLimits) {
  ApiError err;
  auto r = parse(Endpoint::Completions, R"({"model":"tiny","prompt":"x","max_tokens":50})", &err);
  ASSERT_TRUE(r);
  EXPECT_FALSE(check_lengths(*r, 70, limits()));
  auto e = check_lengths(*r, 71, limits());  // 71 + 50 > 120
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "context_length_exceeded");
  e = check_lengths(*r, 101, limits());  // longer than max_prompt_tokens
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "prompt");
  EXPECT_TRUE(check_lengths(*r, 0, limits()));
  r = parse(Endpoint::Completions, R"({"model":"tiny","prompt":"x"})", &err);
  ApiLimits short_context = limits();
  short_context.context = 110;
  EXPECT_FALSE(check_lengths(*r, 100, short_context));
  EXPECT_EQ(r->params.max_tokens, 10);  // the default 16, cut to what the context has left
}

TEST(OpenAiApi, ResponseShapes) {
  ParsedRequest chat;
  chat.endpoint = Endpoint::ChatCompletions;
  json j = completion_response(chat, "chatcmpl-1", 5, "tiny", "hello", "stop", 3, 1);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["usage"]["total_tokens"], 4);
  j = stream_chunk(chat, "chatcmpl-1", 5, "tiny", "", "", true);
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  j = stream_chunk(chat, "chatcmpl-1", 5, "tiny", "", "length", false);
  EXPECT_TRUE(j["choices"][0]["delta"].empty());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  ParsedRequest completion;
  j = stream_chunk(completion, "cmpl-1", 5, "tiny", "x", "", false);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "x");
  j = usage_chunk(completion, "cmpl-1", 5, "tiny", 2, 3);
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  j = models_response("tiny", 5);
  EXPECT_EQ(j["data"][0]["id"], "tiny");
}

}  // namespace

TEST(ServedModelId, NameGivenWinsOverFileAndFolder) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "qrt-served-id-folder";
  std::filesystem::create_directories(dir);
  // A folder model with --model-name: clients ask for the name (it was the folder's before).
  EXPECT_EQ(served_model_id(dir.string(), "bench"), "bench");
  EXPECT_EQ(served_model_id("/m/SmolLM2.Q4_1.gguf", "bench"), "bench");
  // Without one: the folder's own name (with or without a trailing slash), the file's stem.
  EXPECT_EQ(served_model_id(dir.string(), ""), "qrt-served-id-folder");
  EXPECT_EQ(served_model_id(dir.string() + "/", ""), "qrt-served-id-folder");
  EXPECT_EQ(served_model_id("/m/SmolLM2.Q4_1.gguf", ""), "SmolLM2.Q4_1");
  EXPECT_EQ(served_model_id("/", ""), "qrt");
  std::filesystem::remove_all(dir);
}
}  // namespace qrt::serve
