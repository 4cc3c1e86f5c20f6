// Model and Session (qrt/session.h): what `qrt run` and `qrt perplexity` set up from their flags,
// set up from a path, a device name and a runtime config JSON text.
#include "qrt/session.h"

#include <algorithm>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "qrt/error.h"
#include "qrt/plan_report.h"
#include "qrt/runtime_config.h"

namespace qrt {
namespace {

GenerationOptions generation_options(const Model& model, int64_t max_new_tokens, const SamplingParams& sampling) {
  GenerationOptions go;
  go.max_new_tokens = max_new_tokens;
  go.max_input_length = model.engine_options().runtime.max_input_length;
  go.sampling = sampling;
  go.stop_tokens = model.stop_tokens();
  go.sample_vocab = model.tokenizer().vocab_size();   // ids past the tokenizer are padding rows
  return go;
}

// A stream starts on an empty cache: the session is reset before the prefill.
Session& reset_first(Session& session) {
  session.reset();
  return session;
}

}  // namespace

std::shared_ptr<const Model> Model::open(const std::string& path, const ModelOptions& options) {
  std::shared_ptr<Model> m(new Model());
  m->path_ = resolve_model_path(path);
  m->checkpoint_ = open_checkpoint(m->path_);
  // What `qrt run` decides from its flags, here from the options: the config (the checkpoint's
  // hints, QRT_DISABLE_BACKENDS, the config file and text), the device, the tuning cache, the plan.
  SetupRequest request;
  request.config_file = options.config_file;
  request.config_json = options.config_json;
  request.device = options.device;
  m->setup_ = resolve_setup(*m->checkpoint_, request);
  m->engine_options_ = m->setup_.engine_options();
  m->engine_options_.validate_lengths();
  m->engine_options_.kv_dtype = options.kv_cache;
  m->engine_options_.log = options.log;
  if (options.log)
    for (const auto& w : m->setup_.warnings) options.log("warning: " + w);

  m->weights_ = load_model(m->path_, request.load);
  m->tokenizer_.emplace(load_tokenizer(m->path_));
  m->stop_tokens_ = stop_tokens_for(m->weights_->config, *m->tokenizer_);
  return m;
}

std::vector<int32_t> Model::prompt_tokens(const std::string& text, bool chat) const {
  if (text.empty()) throw invalid_input("the prompt is empty: nothing to generate from");
  if (!chat) return tokenizer_->encode(text, /*add_special=*/true);
  // The rendered template holds its special tokens already.
  const std::string& warning = tokenizer_->chat_template().warning();
  if (!warning.empty() && engine_options_.log) engine_options_.log("warning: " + warning);
  return tokenizer_->encode(tokenizer_->apply_chat_template({{"user", text}}, true), /*add_special=*/false);
}

std::string Model::info_json() const {
  const ModelConfig& c = weights_->config;
  const RuntimeConfig& r = engine_options_.runtime;
  const DeviceInfo& d = engine_options_.device;
  nlohmann::ordered_json j;
  j["path"] = path_;
  j["architecture"] = c.architecture;
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["context_length"] = c.max_position_embeddings;
  j["quantization"] = weights_->quantization;
  j["device"] = {{"id", d.id}, {"description", d.describe()}, {"chosen", setup_.device_why}};
  j["backend"] = r.backend;
  j["max_input_length"] = r.max_input_length;
  j["max_new_tokens"] = r.max_new_tokens;
  j["kv_cache"] = engine_options_.kv_dtype == KvCacheDType::F16 ? "f16" : "f32";
  j["bos_token"] = tokenizer_->bos_id();
  j["eos_token"] = tokenizer_->eos_id();
  j["stop_tokens"] = stop_tokens_;
  j["warnings"] = setup_.warnings;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Model::plan_json() const { return plan_report_json(path_, *checkpoint_, setup_); }

Session::Session(std::shared_ptr<const Model> model) : model_(std::move(model)) {
  if (!model_) throw invalid_input("a session needs a model");
  engine_ = make_engine(model_->shared_weights(), model_->engine_options());
}

void Session::reset() {
  tokens_.clear();
  logits_.clear();
  sampler_.reset();
}

void Session::feed(const int32_t* tokens, int64_t n) {
  if (n < 1 || tokens == nullptr) throw invalid_input(fmt::format("feed: {} tokens, expected at least 1", n));
  if (n > capacity() - position())
    throw invalid_input(fmt::format("feed: {} tokens at position {} do not fit the KV cache of {} positions "
                                    "(raise max_input_length or max_new_tokens in the config)",
                                    n, position(), capacity()));
  std::vector<float> out(static_cast<size_t>(model_->weights().config.vocab_size));
  engine_->forward(tokens, n, position(), out.data());  // checks the ids before touching the cache
  tokens_.insert(tokens_.end(), tokens, tokens + n);
  logits_ = std::move(out);
}

const std::vector<float>& Session::logits() const {
  if (logits_.empty()) throw invalid_input("no logits: feed tokens to the session first");
  return logits_;
}

int32_t Session::sample(const SamplingParams& params) {
  const std::vector<float>& row = logits();
  if (!sampler_ || !(sampler_->params() == params)) sampler_.emplace(params);  // validates params
  // Ids past the tokenizer (a vocabulary padded for alignment) have no text: never sampled.
  const int64_t vocab = std::min<int64_t>(static_cast<int64_t>(row.size()), model_->tokenizer().vocab_size());
  return sampler_->sample(row.data(), vocab, tokens_);
}

std::vector<float> Session::score(const int32_t* tokens, int64_t n) {
  if (n < 1 || tokens == nullptr) throw invalid_input(fmt::format("score: {} tokens, expected at least 1", n));
  if (n > capacity())
    throw invalid_input(fmt::format("score: {} tokens do not fit the KV cache of {} positions", n, capacity()));
  reset();
  std::vector<float> out(static_cast<size_t>(n * model_->weights().config.vocab_size));
  engine_->forward(tokens, n, 0, out.data(), /*all_logits=*/true);
  return out;
}

GenerationResult Session::generate(const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                                   const SamplingParams& sampling,
                                   const std::function<bool(int32_t, const std::string&)>& on_piece) {
  TextStream stream(*this, prompt, max_new_tokens, sampling);
  while (const std::optional<TextStream::Piece> piece = stream.next()) {
    if (on_piece && !on_piece(piece->token, piece->text)) {
      stream.stop();
      break;
    }
  }
  return stream.result();
}

PerplexityResult Session::perplexity(std::string_view text, int64_t ctx, const std::string& origin) {
  reset();
  return qrt::perplexity(*engine_, model_->tokenizer(), text, origin, ctx);
}

TextStream::TextStream(Session& session, const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                       const SamplingParams& sampling)
    : session_(reset_first(session)),
      stream_(session.engine(), prompt, generation_options(session.model(), max_new_tokens, sampling)),
      decoder_(session.model().tokenizer(), /*skip_special=*/true) {}

std::optional<TextStream::Piece> TextStream::next() {
  if (const std::optional<int32_t> id = stream_.next()) return Piece{*id, decoder_.push(*id)};
  if (flushed_) return std::nullopt;
  flushed_ = true;
  std::string rest = decoder_.finish();
  if (rest.empty()) return std::nullopt;
  return Piece{-1, std::move(rest)};
}

void TextStream::stop() {
  stream_.stop();
  flushed_ = true;
}

}  // namespace qrt
