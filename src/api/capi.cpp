// The C API (qrt/qrt.h) over Model and Session (qrt/session.h). Every entry point catches every
// exception and turns it into a status plus a thread-local message: nothing unwinds into C.
#include "qrt/qrt.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "qrt/error.h"
#include "qrt/session.h"

struct qrt_model {
  std::shared_ptr<const qrt::Model> model;
};

struct qrt_session {
  std::unique_ptr<qrt::Session> session;
};

namespace {

thread_local std::string last_error;

qrt_status fail(qrt_status status, const char* message) noexcept {
  try {
    last_error = message;
  } catch (...) {
    last_error.clear();  // no memory for the message: the status still tells
  }
  return status;
}

qrt_status status_of(qrt::ErrorKind kind) {
  switch (kind) {
    case qrt::ErrorKind::InvalidInput: return QRT_ERROR_INVALID_INPUT;
    case qrt::ErrorKind::Unsupported: return QRT_ERROR_UNSUPPORTED;
    case qrt::ErrorKind::NoBackend: return QRT_ERROR_NO_BACKEND;
    case qrt::ErrorKind::Io: return QRT_ERROR_IO;
    case qrt::ErrorKind::OutOfMemory: return QRT_ERROR_OUT_OF_MEMORY;
    case qrt::ErrorKind::Device: return QRT_ERROR_DEVICE;
    case qrt::ErrorKind::Internal: return QRT_ERROR_INTERNAL;
  }
  return QRT_ERROR_INTERNAL;
}

// Runs `body` (which returns QRT_OK or an argument error) and maps whatever it throws.
template <class Body>
qrt_status guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (const qrt::Error& e) {
    return fail(status_of(e.kind()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(QRT_ERROR_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    return fail(QRT_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail(QRT_ERROR_INTERNAL, "an unknown exception inside qrt");
  }
}

qrt_status null_argument(const char* function, const char* parameter) {
  return fail(QRT_ERROR_INVALID_ARGUMENT, (std::string(function) + ": " + parameter + " is NULL").c_str());
}

// A copy the caller releases with qrt_free (malloc, so that qrt_free is free()).
char* copy_out(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

qrt::SamplingParams sampling_params(const qrt_sampling* s) {
  qrt::SamplingParams p;
  if (!s) return p;
  p.temperature = s->temperature;
  p.top_k = s->top_k;
  p.top_p = s->top_p;
  p.min_p = s->min_p;
  p.repetition_penalty = s->repetition_penalty;
  p.seed = s->seed;
  return p;
}

}  // namespace

extern "C" {

const char* qrt_version(void) { return QRT_VERSION_STRING; }

const char* qrt_status_name(qrt_status status) {
  switch (status) {
    case QRT_OK: return "ok";
    case QRT_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case QRT_ERROR_INVALID_INPUT: return "invalid input";
    case QRT_ERROR_UNSUPPORTED: return "unsupported";
    case QRT_ERROR_NO_BACKEND: return "no backend";
    case QRT_ERROR_IO: return "i/o error";
    case QRT_ERROR_OUT_OF_MEMORY: return "out of memory";
    case QRT_ERROR_DEVICE: return "device error";
    case QRT_ERROR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char* qrt_last_error(void) { return last_error.c_str(); }

void qrt_free(void* pointer) { std::free(pointer); }

qrt_status qrt_model_open(const char* path, const char* config_json, const char* device, qrt_model** out_model) {
  if (!path) return null_argument("qrt_model_open", "path");
  if (!out_model) return null_argument("qrt_model_open", "out_model");
  return guarded([&] {
    qrt::ModelOptions options;
    if (config_json) options.config_json = config_json;
    if (device) options.device = device;
    auto handle = std::make_unique<qrt_model>();
    handle->model = qrt::Model::open(path, options);
    *out_model = handle.release();
    return QRT_OK;
  });
}

void qrt_model_free(qrt_model* model) { delete model; }

qrt_status qrt_model_info_json(const qrt_model* model, char** out_json) {
  if (!model) return null_argument("qrt_model_info_json", "model");
  if (!out_json) return null_argument("qrt_model_info_json", "out_json");
  return guarded([&] {
    *out_json = copy_out(model->model->info_json());
    return QRT_OK;
  });
}

qrt_status qrt_model_plan_json(const qrt_model* model, char** out_json) {
  if (!model) return null_argument("qrt_model_plan_json", "model");
  if (!out_json) return null_argument("qrt_model_plan_json", "out_json");
  return guarded([&] {
    *out_json = copy_out(model->model->plan_json());
    return QRT_OK;
  });
}

qrt_status qrt_model_vocab_size(const qrt_model* model, size_t* out_vocab_size) {
  if (!model) return null_argument("qrt_model_vocab_size", "model");
  if (!out_vocab_size) return null_argument("qrt_model_vocab_size", "out_vocab_size");
  *out_vocab_size = static_cast<size_t>(model->model->weights().config.vocab_size);
  return QRT_OK;
}

qrt_status qrt_tokenize(const qrt_model* model, const char* text, int add_special, int32_t** out_tokens,
                        size_t* out_count) {
  if (!model) return null_argument("qrt_tokenize", "model");
  if (!text) return null_argument("qrt_tokenize", "text");
  if (!out_tokens) return null_argument("qrt_tokenize", "out_tokens");
  if (!out_count) return null_argument("qrt_tokenize", "out_count");
  return guarded([&] {
    const std::vector<int32_t> ids = model->model->tokenizer().encode(text, add_special != 0);
    int32_t* array = nullptr;
    if (!ids.empty()) {
      array = static_cast<int32_t*>(std::malloc(ids.size() * sizeof(int32_t)));
      if (!array) throw std::bad_alloc();
      std::memcpy(array, ids.data(), ids.size() * sizeof(int32_t));
    }
    *out_tokens = array;
    *out_count = ids.size();
    return QRT_OK;
  });
}

qrt_status qrt_detokenize(const qrt_model* model, const int32_t* tokens, size_t count, int skip_special,
                          char** out_text) {
  if (!model) return null_argument("qrt_detokenize", "model");
  if (!tokens && count > 0) return null_argument("qrt_detokenize", "tokens");
  if (!out_text) return null_argument("qrt_detokenize", "out_text");
  return guarded([&] {
    const std::vector<int32_t> ids(tokens, tokens + count);
    *out_text = copy_out(model->model->tokenizer().decode(ids, skip_special != 0));
    return QRT_OK;
  });
}

qrt_status qrt_session_create(const qrt_model* model, qrt_session** out_session) {
  if (!model) return null_argument("qrt_session_create", "model");
  if (!out_session) return null_argument("qrt_session_create", "out_session");
  return guarded([&] {
    auto handle = std::make_unique<qrt_session>();
    handle->session = std::make_unique<qrt::Session>(model->model);
    *out_session = handle.release();
    return QRT_OK;
  });
}

void qrt_session_free(qrt_session* session) { delete session; }

qrt_status qrt_session_reset(qrt_session* session) {
  if (!session) return null_argument("qrt_session_reset", "session");
  return guarded([&] {
    session->session->reset();
    return QRT_OK;
  });
}

qrt_status qrt_session_feed(qrt_session* session, const int32_t* tokens, size_t count) {
  if (!session) return null_argument("qrt_session_feed", "session");
  if (!tokens && count > 0) return null_argument("qrt_session_feed", "tokens");
  return guarded([&] {
    if (count > static_cast<size_t>(INT64_MAX)) throw qrt::invalid_input("qrt_session_feed: count is too large");
    session->session->feed(tokens, static_cast<int64_t>(count));
    return QRT_OK;
  });
}

qrt_status qrt_session_position(const qrt_session* session, size_t* out_position, size_t* out_capacity) {
  if (!session) return null_argument("qrt_session_position", "session");
  if (out_position) *out_position = static_cast<size_t>(session->session->position());
  if (out_capacity) *out_capacity = static_cast<size_t>(session->session->capacity());
  return QRT_OK;
}

qrt_status qrt_session_logits(const qrt_session* session, const float** out_logits, size_t* out_vocab_size) {
  if (!session) return null_argument("qrt_session_logits", "session");
  if (!out_logits) return null_argument("qrt_session_logits", "out_logits");
  if (!out_vocab_size) return null_argument("qrt_session_logits", "out_vocab_size");
  return guarded([&] {
    const std::vector<float>& logits = static_cast<const qrt::Session&>(*session->session).logits();
    *out_logits = logits.data();
    *out_vocab_size = logits.size();
    return QRT_OK;
  });
}

qrt_sampling qrt_sampling_default(void) {
  const qrt::SamplingParams p;
  return qrt_sampling{p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty, p.seed};
}

qrt_status qrt_session_sample(qrt_session* session, const qrt_sampling* sampling, int32_t* out_token) {
  if (!session) return null_argument("qrt_session_sample", "session");
  if (!out_token) return null_argument("qrt_session_sample", "out_token");
  return guarded([&] {
    *out_token = session->session->sample(sampling_params(sampling));
    return QRT_OK;
  });
}

qrt_status qrt_generate(qrt_session* session, const char* prompt, int32_t max_new_tokens, int chat,
                        const qrt_sampling* sampling, qrt_token_callback callback, void* user_data,
                        char** out_text) {
  if (!session) return null_argument("qrt_generate", "session");
  if (!prompt) return null_argument("qrt_generate", "prompt");
  return guarded([&] {
    qrt::Session& s = *session->session;
    const std::vector<int32_t> tokens = s.model().prompt_tokens(prompt, chat != 0);
    std::string text;
    s.generate(tokens, max_new_tokens, sampling_params(sampling), [&](int32_t token, const std::string& piece) {
      if (out_text) text += piece;
      return callback == nullptr || callback(token, piece.data(), piece.size(), user_data) != 0;
    });
    if (out_text) *out_text = copy_out(text);
    return QRT_OK;
  });
}

}  // extern "C"
