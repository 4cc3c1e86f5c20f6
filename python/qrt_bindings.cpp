// The compiled part of the Python package (module qrt._qrt, nanobind): a model with one session
// behind a mutex, and a text stream that steps a generation. The GIL is released around every
// call that computes; errors are qrt.Error with the message `qrt` prints after "qrt: error: ".
// The Python-facing classes (qrt.Model, qrt.Tokenizer) are in qrt/__init__.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "qrt/error.h"
#include "qrt/session.h"
#include "qrt/version.h"

namespace nb = nanobind;

namespace {

// One model and the session its calls share. A stream holds the session until it ends or is
// closed; other calls meanwhile are refused rather than interleaved with its KV cache.
struct PyModel {
  std::shared_ptr<const qrt::Model> model;
  std::unique_ptr<qrt::Session> session;
  std::mutex mutex;
  bool streaming = false;

  // Call with `mutex` held.
  qrt::Session& idle_session() {
    if (streaming)
      throw qrt::invalid_input("the model is in the middle of a stream: read it to the end or close() it first");
    if (!session) session = std::make_unique<qrt::Session>(model);
    return *session;
  }
};

qrt::SamplingParams sampling(float temperature, int top_k, float top_p, uint64_t seed) {
  qrt::SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  return p;
}

class PyStream {
 public:
  PyStream(PyModel& owner, const std::string& prompt, int64_t max_new_tokens, const qrt::SamplingParams& params,
           bool chat)
      : owner_(owner) {
    std::lock_guard<std::mutex> lock(owner_.mutex);
    qrt::Session& session = owner_.idle_session();
    const std::vector<int32_t> tokens = session.model().prompt_tokens(prompt, chat);
    stream_.emplace(session, tokens, max_new_tokens, params);
    owner_.streaming = true;
  }
  ~PyStream() { close(); }

  // The next piece of text ("" never: tokens that complete no text are read past), or nullopt.
  std::optional<std::string> next() {
    std::lock_guard<std::mutex> lock(owner_.mutex);
    while (stream_) {
      std::optional<qrt::TextStream::Piece> piece = stream_->next();
      if (!piece) {
        release();
        break;
      }
      if (!piece->text.empty()) return std::move(piece->text);
    }
    return std::nullopt;
  }

  void close() {
    std::lock_guard<std::mutex> lock(owner_.mutex);
    release();
  }

 private:
  void release() {
    if (!stream_) return;
    stream_.reset();
    owner_.streaming = false;
  }
  PyModel& owner_;
  std::optional<qrt::TextStream> stream_;
};

}  // namespace

NB_MODULE(_qrt, m) {
  m.doc() = "qrt's compiled core; use the classes of the qrt package.";
  m.attr("__version__") = QRT_VERSION_STRING;
  nb::exception<qrt::Error>(m, "Error");

  nb::class_<PyStream>(m, "Stream")
      .def("__iter__", [](nb::handle self) { return self; })
      .def("__next__",
           [](PyStream& s) {
             std::optional<std::string> piece;
             {
               nb::gil_scoped_release release;
               piece = s.next();
             }
             if (!piece) throw nb::stop_iteration();
             return *piece;
           })
      .def("close", &PyStream::close, "Ends the generation; the model takes other calls again.");

  nb::class_<PyModel>(m, "Model")
      .def(
          "__init__",
          [](PyModel* self, const std::string& path, const std::string& device, const std::string& config_file,
             const std::string& config_json) {
            qrt::ModelOptions options;
            options.device = device;
            options.config_file = config_file;
            options.config_json = config_json;
            std::shared_ptr<const qrt::Model> model;
            {
              nb::gil_scoped_release release;
              model = qrt::Model::open(path, options);
            }
            new (self) PyModel();
            self->model = std::move(model);
          },
          nb::arg("path"), nb::arg("device"), nb::arg("config_file"), nb::arg("config_json"))
      .def("info_json", [](PyModel& s) { return s.model->info_json(); })
      .def("plan_json", [](PyModel& s) { return s.model->plan_json(); }, nb::call_guard<nb::gil_scoped_release>())
      .def("vocab_size", [](PyModel& s) { return s.model->weights().config.vocab_size; })
      .def(
          "encode",
          [](PyModel& s, const std::string& text, bool add_special) {
            return s.model->tokenizer().encode(text, add_special);
          },
          nb::arg("text"), nb::arg("add_special"), nb::call_guard<nb::gil_scoped_release>())
      .def(
          "decode",
          [](PyModel& s, const std::vector<int32_t>& ids, bool skip_special) {
            return s.model->tokenizer().decode(ids, skip_special);
          },
          nb::arg("ids"), nb::arg("skip_special"), nb::call_guard<nb::gil_scoped_release>())
      .def(
          "generate",
          [](PyModel& s, const std::string& prompt, int64_t max_new_tokens, float temperature, int top_k, float top_p,
             uint64_t seed, bool chat) {
            std::lock_guard<std::mutex> lock(s.mutex);
            qrt::Session& session = s.idle_session();
            std::string text;
            session.generate(session.model().prompt_tokens(prompt, chat), max_new_tokens,
                             sampling(temperature, top_k, top_p, seed), [&](int32_t, const std::string& piece) {
                               text += piece;
                               return true;
                             });
            return text;
          },
          nb::arg("prompt"), nb::arg("max_new_tokens"), nb::arg("temperature"), nb::arg("top_k"), nb::arg("top_p"),
          nb::arg("seed"), nb::arg("chat"), nb::call_guard<nb::gil_scoped_release>())
      .def(
          "stream",
          [](PyModel& s, const std::string& prompt, int64_t max_new_tokens, float temperature, int top_k, float top_p,
             uint64_t seed, bool chat) {
            nb::gil_scoped_release release;  // the constructor runs the prefill
            return new PyStream(s, prompt, max_new_tokens, sampling(temperature, top_k, top_p, seed), chat);
          },
          nb::arg("prompt"), nb::arg("max_new_tokens"), nb::arg("temperature"), nb::arg("top_k"), nb::arg("top_p"),
          nb::arg("seed"), nb::arg("chat"), nb::keep_alive<0, 1>(), nb::rv_policy::take_ownership)
      .def(
          "perplexity",
          [](PyModel& s, const std::string& text, int64_t ctx) {
            std::lock_guard<std::mutex> lock(s.mutex);
            return s.idle_session().perplexity(text, ctx).perplexity;
          },
          nb::arg("text"), nb::arg("ctx"), nb::call_guard<nb::gil_scoped_release>())
      .def(
          "logits",
          [](PyModel& s, const std::vector<int32_t>& tokens) {
            auto* rows = new std::vector<float>();
            int64_t vocab = 0;
            try {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(s.mutex);
              *rows = s.idle_session().score(tokens.data(), static_cast<int64_t>(tokens.size()));
              vocab = s.model->weights().config.vocab_size;
            } catch (...) {
              delete rows;
              throw;
            }
            nb::capsule owner(rows, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
            return nb::ndarray<nb::numpy, float, nb::ndim<2>>(rows->data(), {tokens.size(), static_cast<size_t>(vocab)},
                                                              owner);
          },
          nb::arg("tokens"));
}
