// `qrt inspect PATH [--json]`: what a checkpoint holds, read straight from the files (a GGUF file, a
// Hugging Face folder with config.json + safetensors, or a single .safetensors file): architecture,
// dims, quantization method and config, a per-tensor table and the total size. Every reader
// validates the whole file first, so this is also the way to check a file is well formed.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/text_escape.h"
#include "io/bounded_read.h"
#include "io/json_strict.h"
#include "qrt/error.h"
#include "qrt/checkpoint.h"
#include "qrt/gguf.h"
#include "qrt/quant_config.h"
#include "qrt/safetensors.h"

namespace qrt::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

struct Options {
  std::string path;
  bool json = false;
  bool no_tensors = false;
  bool metadata = false;
};

// One row of the tensor table.
struct Row {
  std::string name, type;
  std::vector<int64_t> shape;
  uint64_t bytes = 0;
};

// Everything `inspect` prints, gathered first so text and JSON show the same facts.
struct Report {
  std::string path, format;  // "gguf v3", "safetensors", "hf folder"
  uint64_t file_bytes = 0;
  std::vector<std::pair<std::string, std::string>> model;  // label -> value (architecture, dims)
  ordered_json dims = ordered_json::object();
  std::string quant_method;  // "none", "gguf", "gptq", ...
  std::vector<std::pair<std::string, std::string>> quant_lines;
  ordered_json quant_json = ordered_json::object();
  std::map<std::string, std::pair<int64_t, uint64_t>> type_histogram;  // type -> (count, bytes)
  std::vector<Row> rows;
  uint64_t total_bytes = 0;
  std::vector<std::pair<std::string, std::string>> metadata;
  ordered_json metadata_json = ordered_json::object();
  // Things qrt run would refuse that inspect can still describe (an architecture qrt does not run,
  // a quant_method it does not know): printed as "qrt: warning: ..." lines on stderr.
  std::vector<std::string> warnings;
};

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Printable form of untrusted text (a name or value read from the file) for the terminal: escape
// sequences, controls and bidirectional overrides escaped, no quotes (core/text_escape.h).
std::string printable(const std::string& s, size_t max = 500) { return escape_untrusted(s, max); }

bool use_color() { return ::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr; }

void add_dim(Report& r, const std::string& label, const std::string& json_key, std::optional<int64_t> v) {
  if (!v) return;
  r.model.emplace_back(label, fmt::format("{}", *v));
  r.dims[json_key] = *v;
}

// ---- GGUF ----

const char* gguf_file_type_name(int64_t ft) {
  switch (ft) {
    case 0: return "ALL_F32";
    case 1: return "MOSTLY_F16";
    case 2: return "MOSTLY_Q4_0";
    case 3: return "MOSTLY_Q4_1";
    case 7: return "MOSTLY_Q8_0";
    case 8: return "MOSTLY_Q5_0";
    case 9: return "MOSTLY_Q5_1";
    case 10: return "MOSTLY_Q2_K";
    case 11: return "MOSTLY_Q3_K_S";
    case 12: return "MOSTLY_Q3_K_M";
    case 13: return "MOSTLY_Q3_K_L";
    case 14: return "MOSTLY_Q4_K_S";
    case 15: return "MOSTLY_Q4_K_M";
    case 16: return "MOSTLY_Q5_K_S";
    case 17: return "MOSTLY_Q5_K_M";
    case 18: return "MOSTLY_Q6_K";
    case 32: return "MOSTLY_BF16";
    default: return nullptr;
  }
}

Report inspect_gguf(const std::string& path) {
  const GgufFile f = GgufFile::open(path);
  Report r;
  r.path = path;
  r.format = fmt::format("GGUF v{}", f.version());
  r.file_bytes = f.file_size();
  const std::string arch = f.find_string("general.architecture").value_or("");
  if (!arch.empty()) {
    r.model.emplace_back("architecture", printable(arch));
    r.dims["architecture"] = arch;
  }
  if (auto name = f.find_string("general.name")) r.model.emplace_back("name", printable(*name));
  const std::string p = arch.empty() ? "llama" : arch;
  add_dim(r, "hidden size", "hidden_size", f.find_int(p + ".embedding_length"));
  add_dim(r, "layers", "num_layers", f.find_int(p + ".block_count"));
  add_dim(r, "attention heads", "num_heads", f.find_int(p + ".attention.head_count"));
  add_dim(r, "kv heads", "num_kv_heads", f.find_int(p + ".attention.head_count_kv"));
  add_dim(r, "intermediate size", "intermediate_size", f.find_int(p + ".feed_forward_length"));
  std::optional<int64_t> vocab = f.find_int(p + ".vocab_size");
  if (!vocab) {
    const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
    if (tokens && tokens->type == GgufType::ARRAY) vocab = static_cast<int64_t>(tokens->array_count);
  }
  add_dim(r, "vocab size", "vocab_size", vocab);
  add_dim(r, "context length", "context_length", f.find_int(p + ".context_length"));
  if (const GgufValue* v = f.find(p + ".rope.freq_base"); v && v->is_float()) {
    r.model.emplace_back("rope theta", fmt::format("{}", v->f));
    r.dims["rope_theta"] = v->f;
  }

  r.quant_method = "gguf";
  r.quant_json["method"] = "gguf";
  if (auto ft = f.find_int("general.file_type")) {
    const char* n = gguf_file_type_name(*ft);
    r.quant_lines.emplace_back("file type", n ? fmt::format("{} ({})", n, *ft) : fmt::format("{}", *ft));
    r.quant_json["file_type"] = *ft;
    if (n) r.quant_json["file_type_name"] = n;
  }
  if (auto qv = f.find_int("general.quantization_version")) {
    r.quant_lines.emplace_back("quantization version", fmt::format("{}", *qv));
    r.quant_json["quantization_version"] = *qv;
  }
  r.quant_lines.emplace_back("alignment", fmt::format("{}", f.alignment()));
  for (const auto& t : f.tensors()) {
    Row row{t.name, ggml_type_name(t.type), t.torch_shape(), t.nbytes};
    auto& h = r.type_histogram[row.type];
    h.first += 1;
    h.second += t.nbytes;
    r.total_bytes += t.nbytes;
    r.rows.push_back(std::move(row));
  }
  for (const auto& [k, v] : f.metadata()) {
    r.metadata.emplace_back(k, v.to_display(80));
    if (v.type == GgufType::STRING)
      r.metadata_json[k] = v.str.size() <= 4096 ? v.str : v.str.substr(0, 4096) + "...";
    else if (v.type == GgufType::ARRAY)
      r.metadata_json[k] = v.to_display(40);
    else if (v.is_float())
      r.metadata_json[k] = v.f;
    else if (v.type == GgufType::BOOL)
      r.metadata_json[k] = v.u != 0;
    else if (v.type == GgufType::INT8 || v.type == GgufType::INT16 || v.type == GgufType::INT32 ||
             v.type == GgufType::INT64)
      r.metadata_json[k] = v.i;
    else
      r.metadata_json[k] = v.u;
  }
  return r;
}

// ---- safetensors / HF folder ----

std::optional<int64_t> json_int(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

Report inspect_safetensors(const std::string& path, bool folder) {
  Report r;
  r.path = path;
  r.quant_method = "none";
  if (folder) {
    const fs::path cfg = fs::path(path) / "config.json";
    if (fs::exists(cfg)) {
      const std::string cp = cfg.string();
      const std::string text = io::read_file_bounded(cp, io::kMaxConfigFileBytes, "a JSON config file");
      nlohmann::json j = io::parse_json_strict(text.data(), text.data() + text.size(), cp);
      if (!j.is_object()) throw invalid_input(cp + ": not a JSON object");
      std::string arch;
      if (auto a = j.find("architectures"); a != j.end() && a->is_array() && !a->empty() && (*a)[0].is_string())
        arch = (*a)[0].get<std::string>();
      if (!arch.empty()) {
        r.model.emplace_back("architecture", printable(arch));
        r.dims["architecture"] = arch;
        const auto archs = supported_architectures();
        if (std::find(archs.begin(), archs.end(), arch) == archs.end()) {
          std::string list;
          for (const auto& a : archs) list += (list.empty() ? "" : ", ") + a;
          r.warnings.push_back(cp + ": architecture " + io::quote_name(arch, 80) + " is not supported by qrt run (qrt runs " +
                               list + ")");
        }
      }
      if (auto mt = j.find("model_type"); mt != j.end() && mt->is_string()) {
        r.model.emplace_back("model type", printable(mt->get<std::string>()));
        r.dims["model_type"] = mt->get<std::string>();
      }
      add_dim(r, "hidden size", "hidden_size", json_int(j, "hidden_size"));
      add_dim(r, "layers", "num_layers", json_int(j, "num_hidden_layers"));
      add_dim(r, "attention heads", "num_heads", json_int(j, "num_attention_heads"));
      add_dim(r, "kv heads", "num_kv_heads", json_int(j, "num_key_value_heads"));
      add_dim(r, "intermediate size", "intermediate_size", json_int(j, "intermediate_size"));
      add_dim(r, "vocab size", "vocab_size", json_int(j, "vocab_size"));
      add_dim(r, "context length", "context_length", json_int(j, "max_position_embeddings"));
      auto d = j.find("torch_dtype");
      if (d == j.end()) d = j.find("dtype");  // the name transformers 5 writes
      if (d != j.end() && d->is_string()) {
        r.model.emplace_back("dtype", printable(d->get<std::string>()));
        r.dims["torch_dtype"] = d->get<std::string>();
      }
      if (auto q = j.find("quantization_config"); q != j.end()) {
        if (!q->is_object()) throw invalid_input(cp + ": quantization_config must be an object");
        std::string method = "unknown";
        if (auto qm = q->find("quant_method"); qm != q->end() && qm->is_string()) method = printable(qm->get<std::string>(), 80);
        r.quant_method = method;
        // The same validation run/plan/dequantize apply: a value qrt would refuse (bits 5, a group
        // size of 0) is an error here too (exit 2); a quant_method qrt does not know is described
        // with a warning (inspect is also for checkpoints qrt cannot run).
        try {
          (void)parse_quantization_config(q->dump(), cp + ": quantization_config");
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::Unsupported) throw;
          r.warnings.push_back(e.what());
        }
        r.quant_json = ordered_json::parse(q->dump());
        for (auto& [k, v] : q->items())
          r.quant_lines.emplace_back(printable(k, 80), printable(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
      }
    }
  }
  const TensorStore store = TensorStore::open(path);
  r.format = folder ? fmt::format("Hugging Face folder, {} safetensors file{}", store.files().size(),
                                  store.files().size() == 1 ? "" : "s")
                    : "safetensors";
  for (const auto& file : store.files()) r.file_bytes += file.file_size();
  for (const auto& name : store.names()) {
    const auto* info = store.info(name);
    Row row{name, std::string(dtype_name(info->dtype)), info->shape, info->nbytes()};
    auto& h = r.type_histogram[row.type];
    h.first += 1;
    h.second += row.bytes;
    r.total_bytes += row.bytes;
    r.rows.push_back(std::move(row));
  }
  for (const auto& [k, v] : store.metadata()) {
    r.metadata.emplace_back(k, io::quote_name(v, 80));
    r.metadata_json[k] = v;
  }
  return r;
}

// ---- output ----

void print_text(const Report& r, const Options& o) {
  const bool color = use_color();
  auto title = [&](const std::string& s) {
    if (color)
      fmt::print("\033[1m{}\033[0m\n", s);
    else
      fmt::print("{}\n", s);
  };
  title(fmt::format("{}  ({}, {})", printable(r.path), r.format, human_bytes(r.file_bytes)));
  auto kv_block = [&](const std::vector<std::pair<std::string, std::string>>& lines) {
    size_t w = 0;
    for (const auto& [k, v] : lines) w = std::max(w, k.size());
    for (const auto& [k, v] : lines) fmt::print("  {:<{}}  {}\n", k, w, v);
  };
  if (!r.model.empty()) {
    fmt::print("\n");
    title("model");
    kv_block(r.model);
  }
  fmt::print("\n");
  title(fmt::format("quantization: {}", r.quant_method));
  kv_block(r.quant_lines);
  // Tensor types, largest share first.
  std::vector<std::pair<std::string, std::pair<int64_t, uint64_t>>> hist(r.type_histogram.begin(),
                                                                         r.type_histogram.end());
  std::sort(hist.begin(), hist.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
  if (!hist.empty()) {
    fmt::print("\n");
    title("tensor types");
    size_t w = 4;
    for (const auto& h : hist) w = std::max(w, h.first.size());
    for (const auto& [type, cb] : hist) {
      const double pct =
          r.total_bytes ? 100.0 * static_cast<double>(cb.second) / static_cast<double>(r.total_bytes) : 0;
      fmt::print("  {:<{}}  {:>5} tensor{}  {:>10}  {:5.1f}%\n", type, w, cb.first, cb.first == 1 ? " " : "s",
                 human_bytes(cb.second), pct);
    }
  }
  if (o.metadata && !r.metadata.empty()) {
    fmt::print("\n");
    title(fmt::format("metadata ({} entries)", r.metadata.size()));
    std::vector<std::pair<std::string, std::string>> lines;
    for (const auto& [k, v] : r.metadata) lines.emplace_back(printable(k), v);
    kv_block(lines);
  }
  if (!o.no_tensors && !r.rows.empty()) {
    fmt::print("\n");
    title(fmt::format("tensors ({}; shapes in PyTorch order)", r.rows.size()));
    size_t wn = 4, wt = 4, ws = 5;
    std::vector<std::string> names, shapes;
    for (const auto& row : r.rows) {
      names.push_back(printable(row.name));
      shapes.push_back(shape_text(row.shape));
      wn = std::max(wn, names.back().size());
      wt = std::max(wt, row.type.size());
      ws = std::max(ws, shapes.back().size());
    }
    const std::string header =
        fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>10}", "name", wn, "type", wt, "shape", ws, "bytes");
    if (color)
      fmt::print("\033[2m{}\033[0m\n", header);
    else
      fmt::print("{}\n", header);
    for (size_t i = 0; i < r.rows.size(); ++i)
      fmt::print("  {:<{}}  {:<{}}  {:<{}}  {:>10}\n", names[i], wn, r.rows[i].type, wt, shapes[i], ws,
                 human_bytes(r.rows[i].bytes));
  }
  fmt::print("\n");
  title(fmt::format("total: {} tensors, {} ({} bytes)", r.rows.size(), human_bytes(r.total_bytes), r.total_bytes));
}

void print_json(const Report& r, const Options& o) {
  ordered_json j;
  j["path"] = r.path;
  j["format"] = r.format;
  j["file_bytes"] = r.file_bytes;
  j["model"] = r.dims;
  ordered_json q = r.quant_json;
  q["method"] = r.quant_method;
  ordered_json types = ordered_json::object();
  for (const auto& [type, cb] : r.type_histogram) types[type] = {{"count", cb.first}, {"bytes", cb.second}};
  j["quantization"] = q;
  j["tensor_types"] = types;
  if (o.metadata) j["metadata"] = r.metadata_json;
  if (!o.no_tensors) {
    ordered_json rows = ordered_json::array();
    for (const auto& row : r.rows)
      rows.push_back({{"name", row.name}, {"type", row.type}, {"shape", row.shape}, {"bytes", row.bytes}});
    j["tensors"] = rows;
  }
  j["tensor_count"] = r.rows.size();
  j["total_bytes"] = r.total_bytes;
  // Names from files may hold invalid UTF-8; replace rather than throw while printing.
  // ensure_ascii: every non-ASCII character as \uXXXX, so no text from the file reaches the terminal raw.
  fmt::print("{}\n", j.dump(2, ' ', true, nlohmann::json::error_handler_t::replace));
}

bool has_gguf_magic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char m[4] = {0, 0, 0, 0};
  const size_t n = std::fread(m, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::string(m, 4) == "GGUF";
}

// A safetensors file starts with an 8-byte little-endian header length, then the JSON header '{'.
bool looks_like_safetensors(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char b[9] = {0};
  const size_t n = std::fread(b, 1, 9, f);
  std::fclose(f);
  if (n != 9) return false;
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | b[i];
  return len >= 2 && len < (uint64_t{1} << 32) && b[8] == '{';
}

int run_inspect(const Options& o) {
  std::error_code ec;
  const auto st = fs::status(o.path, ec);
  if (ec || !fs::exists(st)) throw no_such_path(o.path);
  Report r;
  if (fs::is_directory(st)) {
    r = inspect_safetensors(o.path, true);
  } else if (!fs::is_regular_file(st)) {
    throw invalid_input(o.path + ": not a regular file (a FIFO, device or socket); pass a Hugging Face model folder, "
                        "a .gguf or a .safetensors file");
  } else {
    const std::string ext = fs::path(o.path).extension().string();
    if (ext == ".gguf" || (ext != ".safetensors" && has_gguf_magic(o.path)))
      r = inspect_gguf(o.path);
    else if (ext == ".safetensors" || looks_like_safetensors(o.path))
      r = inspect_safetensors(o.path, false);
    else
      throw invalid_input(o.path + ": not a GGUF file (no GGUF magic), not a safetensors file and not a folder; pass "
                                   "a Hugging Face model folder (with config.json), a .gguf or a .safetensors file");
  }
  std::fflush(stdout);
  for (const auto& w : r.warnings) std::fprintf(stderr, "qrt: warning: %s\n", escape_message(w).c_str());
  if (o.json)
    print_json(r, o);
  else
    print_text(r, o);
  return 0;
}

const CommandRegistrar kInspect(
    "inspect",
    "Show what a checkpoint holds: architecture, dims, quantization, tensors (GGUF, HF folder, .safetensors)",
    [](CLI::App& app) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      app.add_option("path", o->path, "a .gguf file, a Hugging Face folder, or a .safetensors file")->required();
      app.add_flag("--json", o->json, "print one JSON object instead of text");
      app.add_flag("--no-tensors", o->no_tensors, "leave out the per-tensor table");
      app.add_flag("--metadata", o->metadata, "also list every metadata entry (GGUF key/values, __metadata__)");
      return [o] { return run_inspect(*o); };
    });

}  // namespace
}  // namespace qrt::cli
