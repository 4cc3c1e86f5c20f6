/* The C API from a C program: opens the default model ($QRT_DEFAULT_MODEL), generates text with a
 * token callback, checks that stepping the same session by hand (feed, logits, sample) gives the
 * same greedy tokens, that a chat question is answered, and reads the info and plan JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capi_check.h"
#include "qrt/qrt.h"

enum { MAX_TOKENS = 64, MAX_TEXT = 4096 };

typedef struct {
  int32_t tokens[MAX_TOKENS];
  size_t count;
  char text[MAX_TEXT];
  size_t length;
  int stop_after; /* 0 = never */
} Collected;

static int collect(int32_t token, const char* text, size_t length, void* user_data) {
  Collected* c = (Collected*)user_data;
  if (token >= 0 && c->count < MAX_TOKENS) c->tokens[c->count++] = token;
  if (c->length + length < MAX_TEXT) {
    memcpy(c->text + c->length, text, length);
    c->length += length;
    c->text[c->length] = '\0';
  }
  return c->stop_after == 0 || (int)c->count < c->stop_after;
}

int main(void) {
  const char* path = getenv("QRT_DEFAULT_MODEL");
  qrt_model* model = NULL;
  qrt_session* session = NULL;
  const char* prompt = "The capital of France is";
  Collected c;
  char* text = NULL;
  int32_t* prompt_ids = NULL;
  size_t prompt_count = 0, i;
  char* json = NULL;

  if (path == NULL || path[0] == '\0') {
    printf("SKIP: QRT_DEFAULT_MODEL is not set (scripts/test.sh sets it once scripts/fetch-model.sh has the model)\n");
    return SKIP_EXIT_CODE;
  }
  printf("qrt %s, headers %s\n", qrt_version(), QRT_VERSION_STRING);
  CHECK(strcmp(qrt_version(), QRT_VERSION_STRING) == 0, "library and headers differ");

  CHECK_OK(qrt_model_open(path, "{\"max_input_length\": 128, \"max_new_tokens\": 32}", "cpu", &model));
  CHECK_OK(qrt_session_create(model, &session));

  /* Generation with a callback: the pieces add up to the returned text. */
  memset(&c, 0, sizeof c);
  CHECK_OK(qrt_generate(session, prompt, 12, 0, NULL, collect, &c, &text));
  printf("generated: %s|%s\n", prompt, text);
  CHECK(c.count > 0, "no token generated");
  CHECK(strlen(text) > 0, "no text generated");
  CHECK(strcmp(text, c.text) == 0, "the callback's pieces '%s' differ from the text '%s'", c.text, text);

  /* The same greedy tokens by hand: tokenize, feed, sample, feed back. */
  CHECK_OK(qrt_tokenize(model, prompt, 1, &prompt_ids, &prompt_count));
  CHECK(prompt_count > 1, "%zu prompt tokens", prompt_count);
  CHECK_OK(qrt_session_feed(session, prompt_ids, prompt_count));
  for (i = 0; i < c.count; ++i) {
    int32_t id = -1;
    const float* logits = NULL;
    size_t vocab = 0, position = 0;
    CHECK_OK(qrt_session_logits(session, &logits, &vocab));
    CHECK(vocab > 0 && logits != NULL, "no logits");
    CHECK_OK(qrt_session_sample(session, NULL, &id));
    CHECK(id == c.tokens[i], "step %zu: sampled %d, qrt_generate gave %d", i, (int)id, (int)c.tokens[i]);
    CHECK_OK(qrt_session_feed(session, &id, 1));
    CHECK_OK(qrt_session_position(session, &position, NULL));
    CHECK(position == prompt_count + i + 1, "position %zu after %zu tokens", position, prompt_count + i + 1);
  }
  {
    char* decoded = NULL;
    CHECK_OK(qrt_detokenize(model, c.tokens, c.count, 1, &decoded));
    CHECK(strcmp(decoded, text) == 0, "detokenized '%s' differs from '%s'", decoded, text);
    qrt_free(decoded);
  }

  /* The callback can stop generation. */
  memset(&c, 0, sizeof c);
  c.stop_after = 3;
  CHECK_OK(qrt_generate(session, prompt, 12, 0, NULL, collect, &c, NULL));
  CHECK(c.count == 3, "%zu tokens after the callback asked to stop at 3", c.count);

  /* A chat question, greedy: the model names the city. */
  qrt_free(text);
  text = NULL;
  CHECK_OK(qrt_generate(session, "What is the capital of France?", 16, 1, NULL, NULL, NULL, &text));
  printf("chat answer: %s\n", text);
  CHECK(strstr(text, "Paris") != NULL, "the answer does not name Paris");

  {
    size_t vocab = 0;
    char expected[64];
    CHECK_OK(qrt_model_vocab_size(model, &vocab));
    snprintf(expected, sizeof expected, "\"vocab_size\": %zu", vocab);
    CHECK_OK(qrt_model_info_json(model, &json));
    CHECK(vocab > 0 && strstr(json, expected) != NULL, "info has no %s: %s", expected, json);
    qrt_free(json);
  }
  CHECK_OK(qrt_model_plan_json(model, &json));
  CHECK(strstr(json, "\"layers\"") != NULL && strstr(json, "\"layers_without_backend\": 0") != NULL,
        "plan: %.300s", json);
  qrt_free(json);

  qrt_free(text);
  qrt_free(prompt_ids);
  qrt_session_free(session);
  qrt_model_free(model);
  printf("OK: capi_generate\n");
  return 0;
}
