/* The C API given what it must refuse: NULL pointers where qrt.h calls them errors, missing and
 * malformed model files, malformed config JSON, unknown devices and, with the default model
 * ($QRT_DEFAULT_MODEL), bad tokens, prompts and sampling parameters. Every call must return its
 * documented status with a message, leave the out-parameters alone and not crash or leak (this
 * program also runs under AddressSanitizer).
 *   capi_bad_inputs <tests/data> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capi_check.h"
#include "qrt/qrt.h"

static int checks = 0;

/* `status` must be `expected` and the thread's message must contain `needle`. */
static void expect_error(int line, qrt_status status, qrt_status expected, const char* needle) {
  const char* message = qrt_last_error();
  ++checks;
  if (status != expected) {
    fprintf(stderr, "line %d: status '%s', expected '%s' (message: %s)\n", line, qrt_status_name(status),
            qrt_status_name(expected), message);
    exit(1);
  }
  if (message == NULL || strstr(message, needle) == NULL) {
    fprintf(stderr, "line %d: message '%s' does not contain '%s'\n", line, message ? message : "(null)", needle);
    exit(1);
  }
}
#define EXPECT_ERROR(call, expected, needle) expect_error(__LINE__, (call), (expected), (needle))

/* Any failing status, with a message that contains `needle`. */
static void expect_failure(int line, qrt_status status, const char* needle) {
  if (status == QRT_OK) {
    fprintf(stderr, "line %d: succeeded, expected a failure\n", line);
    exit(1);
  }
  expect_error(line, status, status, needle);
}
#define EXPECT_FAILURE(call, needle) expect_failure(__LINE__, (call), (needle))

static void without_a_model(const char* data_dir) {
  qrt_model* model = (qrt_model*)&checks; /* a sentinel: failing calls must not write it */
  qrt_session* session = NULL;
  char path[4096];
  size_t i;
  const char* bad_files[] = {"gguf_truncated.gguf", "gguf_bad_magic.gguf", "gguf_huge_tensor_count.gguf",
                             "gguf_huge_string_length.gguf", "gguf_overflowing_dims.gguf"};

  EXPECT_ERROR(qrt_model_open(NULL, NULL, NULL, &model), QRT_ERROR_INVALID_ARGUMENT, "path is NULL");
  EXPECT_ERROR(qrt_model_open("model.gguf", NULL, NULL, NULL), QRT_ERROR_INVALID_ARGUMENT, "out_model is NULL");
  EXPECT_FAILURE(qrt_model_open("/nonexistent/model.gguf", NULL, NULL, &model), "/nonexistent/model.gguf");
  snprintf(path, sizeof path, "%s/text/kjv_ruth_jonah.txt", data_dir);
  EXPECT_FAILURE(qrt_model_open(path, NULL, NULL, &model), "kjv_ruth_jonah.txt");
  snprintf(path, sizeof path, "%s/text", data_dir);
  EXPECT_FAILURE(qrt_model_open(path, NULL, NULL, &model), "config.json");
  for (i = 0; i < sizeof bad_files / sizeof bad_files[0]; ++i) {
    snprintf(path, sizeof path, "%s/bad/%s", data_dir, bad_files[i]);
    EXPECT_FAILURE(qrt_model_open(path, NULL, "cpu", &model), bad_files[i]);
  }
  CHECK(model == (qrt_model*)&checks, "a failed qrt_model_open wrote its out-parameter");

  EXPECT_ERROR(qrt_session_create(NULL, &session), QRT_ERROR_INVALID_ARGUMENT, "model is NULL");
  EXPECT_ERROR(qrt_session_feed(NULL, NULL, 0), QRT_ERROR_INVALID_ARGUMENT, "session is NULL");
  EXPECT_ERROR(qrt_generate(NULL, "x", 1, 0, NULL, NULL, NULL, NULL), QRT_ERROR_INVALID_ARGUMENT, "session is NULL");
  EXPECT_ERROR(qrt_tokenize(NULL, "x", 0, NULL, NULL), QRT_ERROR_INVALID_ARGUMENT, "model is NULL");
  EXPECT_ERROR(qrt_model_plan_json(NULL, NULL), QRT_ERROR_INVALID_ARGUMENT, "model is NULL");
  CHECK(session == NULL, "a failed qrt_session_create wrote its out-parameter");

  /* Releasing nothing is allowed. */
  qrt_free(NULL);
  qrt_model_free(NULL);
  qrt_session_free(NULL);
  for (i = 0; i <= QRT_ERROR_INTERNAL; ++i) CHECK(strlen(qrt_status_name((qrt_status)i)) > 0, "status %zu", i);
}

static void with_the_default_model(const char* path) {
  qrt_model* model = NULL;
  qrt_session* session = NULL;
  const float* logits = NULL;
  size_t vocab = 0, position = 1;
  int32_t token = -1;
  int32_t ids[3] = {1, 2, 3};
  char* text = NULL;
  qrt_sampling sampling = qrt_sampling_default();
  char long_prompt[400];

  /* Config JSON and device: refused before any weight is read. */
  EXPECT_ERROR(qrt_model_open(path, "{\"backend\": ", NULL, &model), QRT_ERROR_INVALID_INPUT, "malformed JSON");
  EXPECT_ERROR(qrt_model_open(path, "[1, 2]", NULL, &model), QRT_ERROR_INVALID_INPUT, "JSON object");
  EXPECT_ERROR(qrt_model_open(path, "{\"no_such_field\": 1}", NULL, &model), QRT_ERROR_INVALID_INPUT,
               "no_such_field");
  EXPECT_ERROR(qrt_model_open(path, "{\"max_input_length\": -5}", NULL, &model), QRT_ERROR_INVALID_INPUT,
               "max_input_length");
  EXPECT_FAILURE(qrt_model_open(path, "{\"backend\": \"no_such_backend\"}", NULL, &model), "no_such_backend");
  EXPECT_ERROR(qrt_model_open(path, NULL, "tpu:0", &model), QRT_ERROR_INVALID_INPUT, "tpu:0");
  CHECK(model == NULL, "a failed qrt_model_open wrote its out-parameter");

  CHECK_OK(qrt_model_open(path, "{\"max_input_length\": 16, \"max_new_tokens\": 4, \"threads\": 2}", "cpu", &model));
  CHECK_OK(qrt_session_create(model, &session));
  CHECK_OK(qrt_model_vocab_size(model, &vocab));

  EXPECT_ERROR(qrt_session_logits(session, &logits, &vocab), QRT_ERROR_INVALID_INPUT, "feed");
  EXPECT_ERROR(qrt_session_sample(session, NULL, &token), QRT_ERROR_INVALID_INPUT, "feed");
  EXPECT_ERROR(qrt_session_feed(session, ids, 0), QRT_ERROR_INVALID_INPUT, "0 tokens");
  EXPECT_ERROR(qrt_session_feed(session, NULL, 2), QRT_ERROR_INVALID_ARGUMENT, "tokens is NULL");
  ids[1] = (int32_t)vocab;
  EXPECT_FAILURE(qrt_session_feed(session, ids, 3), "vocab");
  ids[1] = -1;
  EXPECT_FAILURE(qrt_session_feed(session, ids, 3), "vocab");
  CHECK_OK(qrt_session_position(session, &position, NULL));
  CHECK(position == 0, "a refused feed moved the session to position %zu", position);
  {
    int32_t many[21] = {0};
    EXPECT_ERROR(qrt_session_feed(session, many, 21), QRT_ERROR_INVALID_INPUT, "KV cache");
  }
  ids[1] = 2;
  CHECK_OK(qrt_session_feed(session, ids, 3));
  EXPECT_ERROR(qrt_session_logits(session, NULL, &vocab), QRT_ERROR_INVALID_ARGUMENT, "out_logits is NULL");
  sampling.top_p = 2.0f;
  EXPECT_ERROR(qrt_session_sample(session, &sampling, &token), QRT_ERROR_INVALID_INPUT, "top-p 2");
  sampling = qrt_sampling_default();
  sampling.temperature = 0.7f;
  sampling.top_k = -3;
  EXPECT_ERROR(qrt_session_sample(session, &sampling, &token), QRT_ERROR_INVALID_INPUT, "top-k");
  CHECK(token == -1, "a failed qrt_session_sample wrote its out-parameter");

  EXPECT_ERROR(qrt_generate(session, NULL, 4, 0, NULL, NULL, NULL, &text), QRT_ERROR_INVALID_ARGUMENT,
               "prompt is NULL");
  EXPECT_ERROR(qrt_generate(session, "", 4, 0, NULL, NULL, NULL, &text), QRT_ERROR_INVALID_INPUT, "empty");
  EXPECT_ERROR(qrt_generate(session, "Hello", -1, 0, NULL, NULL, NULL, &text), QRT_ERROR_INVALID_INPUT,
               "max_new_tokens");
  memset(long_prompt, 'a', sizeof long_prompt - 1);
  long_prompt[sizeof long_prompt - 1] = '\0';
  {
    size_t i;
    for (i = 1; i < sizeof long_prompt - 1; i += 2) long_prompt[i] = ' ';
  }
  EXPECT_ERROR(qrt_generate(session, long_prompt, 4, 0, NULL, NULL, NULL, &text), QRT_ERROR_INVALID_INPUT,
               "max_input_length");
  CHECK(text == NULL, "a failed qrt_generate wrote its out-parameter");
  /* The session still works after all that. */
  CHECK_OK(qrt_generate(session, "Hello", 2, 0, NULL, NULL, NULL, &text));
  qrt_free(text);

  qrt_session_free(session);
  qrt_model_free(model);
}

int main(int argc, char** argv) {
  const char* model = getenv("QRT_DEFAULT_MODEL");
  if (argc != 2) {
    fprintf(stderr, "usage: capi_bad_inputs <tests/data>\n");
    return 2;
  }
  without_a_model(argv[1]);
  if (model != NULL && model[0] != '\0')
    with_the_default_model(model);
  else
    printf("SKIP (part): QRT_DEFAULT_MODEL is not set: the checks that need the default model did not run\n");
  printf("OK: capi_bad_inputs (%d checks)\n", checks);
  return 0;
}
