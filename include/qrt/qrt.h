/* qrt.h: the C API of qrt, for programs in C and for bindings from other languages.
 *
 * A qrt_model is a checkpoint opened for inference (weights, tokenizer, device, runtime config);
 * a qrt_session is a KV cache on it with the tokens it holds and a sampler. Typical use:
 *
 *   qrt_model* model;
 *   if (qrt_model_open("model.gguf", NULL, NULL, &model) != QRT_OK) {
 *     fprintf(stderr, "qrt: error: %s\n", qrt_last_error());
 *     return 2;
 *   }
 *   qrt_session* session;
 *   qrt_session_create(model, &session);
 *   qrt_generate(session, "Once upon a time", 32, 0, NULL, print_piece, NULL, NULL);
 *   qrt_session_free(session);
 *   qrt_model_free(model);
 *
 * Errors: every function that can fail returns a qrt_status; QRT_OK (0) is success. On failure
 * qrt_last_error() gives a one-line message for the calling thread, the same text `qrt` prints
 * after "qrt: error: " (naming the file, field or value at fault), and the out-parameters are left
 * untouched. No C++ exception crosses this interface: every entry point catches them.
 *
 * Memory: strings and arrays that qrt returns through a `char**`/`int32_t**` parameter belong to
 * the caller, who releases them with qrt_free(). Pointers qrt returns otherwise (qrt_version,
 * qrt_last_error, qrt_session_logits) stay owned by qrt and are valid as each says.
 *
 * Threads: a qrt_model is immutable once opened; it may be used by several threads at once, each
 * with its own sessions. A qrt_session must not be used by two threads at the same time.
 *
 * Versioning: qrt_version() is the version of the linked library; QRT_VERSION_STRING (qrt/version.h)
 * that of the headers compiled against. Before 1.0 the API may change between minor versions.
 */
#ifndef QRT_QRT_H
#define QRT_QRT_H

#include <stddef.h>
#include <stdint.h>

#include "qrt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qrt_status {
  QRT_OK = 0,
  QRT_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer or a value the function documents as an error */
  QRT_ERROR_INVALID_INPUT = 2,    /* a malformed file, config JSON or value (the command exits 2) */
  QRT_ERROR_UNSUPPORTED = 3,      /* well formed, but qrt cannot run it (architecture, method, dtype) */
  QRT_ERROR_NO_BACKEND = 4,       /* no kernel backend can run a layer under the config */
  QRT_ERROR_IO = 5,               /* a file cannot be opened, read or mapped */
  QRT_ERROR_OUT_OF_MEMORY = 6,    /* host or device memory ran out */
  QRT_ERROR_DEVICE = 7,           /* the device is missing or failed (CUDA, driver) */
  QRT_ERROR_INTERNAL = 8          /* a bug in qrt */
} qrt_status;

/* The version of the linked library, "MAJOR.MINOR.PATCH". Never NULL; static storage. */
const char* qrt_version(void);

/* A short name of a status ("ok", "invalid argument", "invalid input", ...). Never NULL. */
const char* qrt_status_name(qrt_status status);

/* The message of the last call on this thread that failed ("" when none has). Valid until the
 * next failing call on this thread. Never NULL. */
const char* qrt_last_error(void);

/* Releases a string or array that qrt returned to the caller. NULL is ignored. */
void qrt_free(void* pointer);

/* ---- models ---- */

typedef struct qrt_model qrt_model;

/* Opens a model: a Hugging Face folder (config.json, safetensors, tokenizer.json) or a .gguf file.
 *   path         the checkpoint; "" opens the default model (the file scripts/fetch-model.sh
 *                fetches), as `qrt run` without -m does. NULL is QRT_ERROR_INVALID_ARGUMENT.
 *   config_json  the runtime config as JSON text, the format of `qrt run --config FILE`
 *                (docs/CONFIG.md: backend, fallback, disabled, max_input_length, max_new_tokens,
 *                threads, kernel_params, layers, ...); NULL or "" for none. Malformed JSON, an
 *                unknown field or a bad value is QRT_ERROR_INVALID_INPUT naming the field.
 *   device       "auto" (the first CUDA GPU when one is present, else the CPU), "cpu" or "cuda:N";
 *                NULL means "auto".
 *   out_model    receives the model; NULL is QRT_ERROR_INVALID_ARGUMENT.
 * Loads every weight; sessions then prepare the kernels. */
qrt_status qrt_model_open(const char* path, const char* config_json, const char* device, qrt_model** out_model);

/* Releases a model. Sessions keep what they need of it, so they may be freed before or after.
 * NULL is ignored. */
void qrt_model_free(qrt_model* model);

/* What the model is and how it is set up, as a JSON object: path, architecture, model_type,
 * hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim, vocab_size,
 * context_length, quantization, device {id, description, chosen}, backend, max_input_length,
 * max_new_tokens, kv_cache, bos_token, eos_token, stop_tokens, warnings. Release with qrt_free. */
qrt_status qrt_model_info_json(const qrt_model* model, char** out_json);

/* The kernel plan of every quantized linear under the model's device and config: the JSON object
 * that `qrt plan MODEL --json` prints. Release with qrt_free. */
qrt_status qrt_model_plan_json(const qrt_model* model, char** out_json);

/* Number of token ids of the model's vocabulary (the length of a row of logits). */
qrt_status qrt_model_vocab_size(const qrt_model* model, size_t* out_vocab_size);

/* ---- tokenizer ---- */

/* The token ids of UTF-8 `text` (NULL is QRT_ERROR_INVALID_ARGUMENT). Special tokens written in
 * the text ("<|im_start|>") are recognized; add_special != 0 adds the BOS/EOS the tokenizer asks
 * for. *out_tokens (release with qrt_free) receives *out_count ids; an empty text gives count 0
 * and may give a NULL array. */
qrt_status qrt_tokenize(const qrt_model* model, const char* text, int add_special, int32_t** out_tokens,
                        size_t* out_count);

/* The UTF-8 text of `count` token ids (`tokens` may be NULL when count is 0); ids outside the
 * vocabulary are skipped, skip_special != 0 leaves out special tokens. Release with qrt_free. */
qrt_status qrt_detokenize(const qrt_model* model, const int32_t* tokens, size_t count, int skip_special,
                          char** out_text);

/* ---- sessions ---- */

typedef struct qrt_session qrt_session;

/* A session on `model`: prepares the kernels and allocates a KV cache of max_input_length +
 * max_new_tokens positions (the runtime config's). Each session holds its own prepared weights. */
qrt_status qrt_session_create(const qrt_model* model, qrt_session** out_session);

/* Releases a session. NULL is ignored. */
void qrt_session_free(qrt_session* session);

/* Forgets every token: the next feed starts at position 0. */
qrt_status qrt_session_reset(qrt_session* session);

/* Appends `count` >= 1 tokens at the session's position and computes the logits after the last
 * one. Count 0, a token outside the vocabulary, or more tokens than the KV cache has room for is
 * an error that leaves the session unchanged. */
qrt_status qrt_session_feed(qrt_session* session, const int32_t* tokens, size_t count);

/* The tokens the session holds (*out_position) and the most it can hold (*out_capacity); either
 * pointer may be NULL. */
qrt_status qrt_session_position(const qrt_session* session, size_t* out_position, size_t* out_capacity);

/* The next-token logits after the last fed token: *out_logits points at *out_vocab_size floats
 * owned by the session, valid until the next call on it. Nothing fed since the last reset is
 * QRT_ERROR_INVALID_INPUT. */
qrt_status qrt_session_logits(const qrt_session* session, const float** out_logits, size_t* out_vocab_size);

/* How to pick a token from logits. Start from qrt_sampling_default() and change fields. */
typedef struct qrt_sampling {
  float temperature;        /* 0: greedy (argmax); negative is an error */
  int32_t top_k;            /* keep the k most likely tokens; 0 = off */
  float top_p;              /* nucleus threshold in (0, 1]; 1 = off */
  float min_p;              /* drop tokens below min_p x the top probability; 0 = off */
  float repetition_penalty; /* > 0; 1 = off */
  uint64_t seed;            /* the random stream's seed */
} qrt_sampling;

/* Greedy decoding: temperature 0, top_k 0, top_p 1, min_p 0, repetition_penalty 1, seed 0. */
qrt_sampling qrt_sampling_default(void);

/* Picks a token from qrt_session_logits() (sampling NULL = greedy), the held tokens being the
 * repetition penalty's history. The session's random stream restarts from sampling->seed after a
 * reset or when the parameters change. Out-of-range parameters are QRT_ERROR_INVALID_INPUT. The
 * token is not fed: pass it to qrt_session_feed to continue. */
qrt_status qrt_session_sample(qrt_session* session, const qrt_sampling* sampling, int32_t* out_token);

/* Called by qrt_generate for every generated token with the UTF-8 text it completes (text_length
 * may be 0: a character split across tokens, or a special token), and once more with token -1 if
 * text was held back at the end. `text` is valid during the call only and is not NUL-terminated
 * in general. Return non-zero to go on, 0 to stop generation. */
typedef int (*qrt_token_callback)(int32_t token, const char* text, size_t text_length, void* user_data);

/* Generates a continuation of `prompt` (UTF-8, not empty) on an empty KV cache: what the session
 * held is forgotten, and it is reset again afterwards. Ends at a stop token of the model (not
 * emitted), after max_new_tokens (>= 0) tokens, at the end of the KV cache, or when the callback
 * returns 0.
 *   chat         non-zero: the prompt is a user message put through the model's chat template
 *   sampling     NULL = greedy
 *   callback     may be NULL
 *   out_text     if not NULL, receives the whole generated text (release with qrt_free)
 * A prompt longer than max_input_length is QRT_ERROR_INVALID_INPUT, never truncated. */
qrt_status qrt_generate(qrt_session* session, const char* prompt, int32_t max_new_tokens, int chat,
                        const qrt_sampling* sampling, qrt_token_callback callback, void* user_data,
                        char** out_text);

#ifdef __cplusplus
}
#endif

#endif /* QRT_QRT_H */
