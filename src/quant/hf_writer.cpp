// Atomic Hugging Face folder writer (see hf_writer.h).
#include "quant/hf_writer.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "io/json_strict.h"
#include "qrt/error.h"

namespace qrt::quant {

namespace fs = std::filesystem;

std::vector<uint8_t> float_bytes(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> out;
  if (dtype == DType::F32) {
    out.resize(values.size() * 4);
    if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
    return out;
  }
  if (dtype != DType::F16 && dtype != DType::BF16)
    throw internal_error("float_bytes: unsupported dtype " + std::string(dtype_name(dtype)));
  out.resize(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = dtype == DType::F16 ? f32_to_fp16(values[i]) : f32_to_bf16(values[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

DType parse_float_dtype(const std::string& text, const std::string& flag) {
  if (text == "f16" || text == "float16" || text == "fp16") return DType::F16;
  if (text == "bf16" || text == "bfloat16") return DType::BF16;
  if (text == "f32" || text == "float32" || text == "fp32") return DType::F32;
  throw invalid_input(flag + " " + text + ": expected f16, bf16 or f32");
}

const char* torch_dtype_name(DType d) {
  return d == DType::BF16 ? "bfloat16" : d == DType::F32 ? "float32" : "float16";
}

namespace {

constexpr const char* kMarkerFirstLine = "qrt output folder; the files qrt wrote here:";

// The file names listed in `dir`'s marker, or nothing when `dir` holds no readable marker of ours.
std::optional<std::set<std::string>> marker_listing(const fs::path& dir) {
  std::error_code ec;
  const fs::path marker = dir / kOutputMarker;
  if (!fs::is_regular_file(fs::symlink_status(marker, ec))) return std::nullopt;
  std::ifstream in(marker);
  std::string line;
  if (!std::getline(in, line) || line != kMarkerFirstLine) return std::nullopt;
  std::set<std::string> names;
  while (std::getline(in, line) && names.size() < 100000)
    if (!line.empty()) names.insert(line);
  return names;
}

fs::path absolute_of(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::weakly_canonical(fs::absolute(p, ec), ec);
  if (ec) a = fs::absolute(p, ec).lexically_normal();
  return a;
}

// True when `inner` is `outer` or lies inside it (paths absolute and normalized).
bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;   // a trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// A killed writer (SIGKILL/SIGTERM skip the destructor) leaves OUT.partial-<pid> behind. Removes
// those of `out` whose process no longer exists and that carry qrt's marker; a live one (another
// writer of the same OUT right now, or a process of another user: EPERM) and any folder without
// the marker (not ours, whatever its name) are left alone.
void remove_stale_partials(const std::string& out) {
  std::error_code ec;
  const fs::path target(out);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".partial-";
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (!fs::is_directory(fs::symlink_status(it->path(), ec)) || !marker_listing(it->path())) continue;
    if (::kill(pid, 0) == -1 && errno == ESRCH) stale.push_back(it->path());
  }
  for (const auto& p : stale) fs::remove_all(p, ec);
}

void write_marker(const fs::path& dir, const std::vector<std::string>& names) {
  std::ofstream m(dir / kOutputMarker, std::ios::binary | std::ios::trunc);
  m << kMarkerFirstLine << "\n";
  for (const auto& n : names) m << n << "\n";
  if (!m) throw io_error((dir / kOutputMarker).string() + ": write failed");
}

}  // namespace

void check_output_folder(const std::string& out_text, bool overwrite, const std::string& input) {
  std::string out = out_text;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (out.empty()) throw invalid_input("the output folder (OUT) is empty: name a new folder to write");
  const fs::path out_abs = absolute_of(out);
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (!ec && is_within(absolute_of(cwd.string()), out_abs))
    throw invalid_input(out + ": OUT is the current folder or a folder above it; name a new folder to write");
  if (!input.empty()) {
    const fs::path in_abs = absolute_of(input);
    const fs::path in_lexical = fs::absolute(input, ec).lexically_normal();
    if (is_within(in_abs, out_abs) || is_within(in_lexical, out_abs))
      throw invalid_input(out + ": OUT " + (in_abs == out_abs ? std::string("is the input ") : "holds the input ") +
                          input + "; writing there would replace the model being read. Name a new folder");
  }
  const fs::file_status st = fs::symlink_status(out, ec);
  if (ec || !fs::exists(st)) return;
  if (!overwrite) throw invalid_input(out + ": already exists (choose a new output folder or pass --force)");
  if (fs::is_symlink(st) || !fs::is_directory(st))
    throw invalid_input(out + ": exists and is not a folder qrt wrote (" +
                        (fs::is_symlink(st) ? "a symbolic link" : "not a folder") + "); --force replaces only those");
  const auto listed = marker_listing(out);
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!listed)
      throw invalid_input(out + ": not a folder qrt wrote (no " + kOutputMarker + " file, and it holds " +
                          io::quote_name(name) + "); --force replaces only folders qrt wrote or empty ones");
    std::error_code e2;
    if (name != kOutputMarker && (!listed->count(name) || !fs::is_regular_file(fs::symlink_status(it->path(), e2))))
      throw invalid_input(out + ": holds " + io::quote_name(name) + ", which qrt did not write there; --force "
                          "replaces a folder only when it holds nothing but qrt's own files");
  }
  if (ec) throw io_error(out + ": cannot list the folder: " + ec.message());
}

HfFolderWriter::HfFolderWriter(std::string out, bool overwrite, const std::string& input, uint64_t shard_bytes)
    : out_(std::move(out)), overwrite_(overwrite), shard_bytes_(shard_bytes) {
  while (out_.size() > 1 && out_.back() == '/') out_.pop_back();
  check_output_folder(out_, overwrite_, input);
  remove_stale_partials(out_);
  tmp_ = out_ + ".partial-" + std::to_string(::getpid());
  std::error_code ec;
  if (fs::exists(fs::symlink_status(tmp_, ec))) {
    if (!marker_listing(tmp_)) throw io_error(tmp_ + ": exists and is not a folder qrt wrote; remove or rename it");
    fs::remove_all(tmp_, ec);
  }
  if (!fs::create_directories(tmp_, ec) || ec) throw io_error(tmp_ + ": cannot create folder: " + ec.message());
  write_marker(tmp_, {});
}

HfFolderWriter::~HfFolderWriter() {
  if (!finished_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void HfFolderWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  if (!current_) {
    const std::string file = tmp_ + "/shard-" + std::to_string(shards_.size() + 1) + ".safetensors";
    current_ = std::make_unique<SafetensorsWriter>(file);
    current_->set_metadata("format", "pt");
    current_bytes_ = 0;
  }
  const uint64_t n = bytes.size();
  current_->add(name, dtype, std::move(shape), std::move(bytes));
  current_names_.push_back(name);
  current_bytes_ += n;
  total_bytes_ += n;
  if (current_bytes_ >= shard_bytes_) flush_shard();
}

void HfFolderWriter::add_float(const std::string& name, DType dtype, std::vector<int64_t> shape,
                               const std::vector<float>& values) {
  add(name, dtype, std::move(shape), float_bytes(values, dtype));
}

void HfFolderWriter::flush_shard() {
  if (!current_) return;
  current_->write();
  shards_.push_back({tmp_ + "/shard-" + std::to_string(shards_.size() + 1) + ".safetensors", current_names_});
  current_.reset();
  current_names_.clear();
}

void HfFolderWriter::add_text_file(const std::string& file_name, const std::string& text) {
  std::ofstream out(tmp_ + "/" + file_name, std::ios::binary);
  out << text;
  if (!out) throw io_error(tmp_ + "/" + file_name + ": write failed");
}

void HfFolderWriter::copy_file(const std::string& source_path) {
  std::error_code ec;
  fs::copy_file(source_path, fs::path(tmp_) / fs::path(source_path).filename(), fs::copy_options::overwrite_existing, ec);
  if (ec) throw io_error(source_path + ": cannot copy: " + ec.message());
}

void HfFolderWriter::finish() {
  flush_shard();
  std::error_code ec;
  if (shards_.size() == 1) {
    fs::rename(shards_[0].first, tmp_ + "/model.safetensors", ec);
    if (ec) throw io_error(tmp_ + ": rename failed: " + ec.message());
  } else if (shards_.size() > 1) {
    std::map<std::string, std::string> weight_map;
    char buf[64];
    for (size_t i = 0; i < shards_.size(); ++i) {
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, shards_.size());
      fs::rename(shards_[i].first, tmp_ + "/" + buf, ec);
      if (ec) throw io_error(tmp_ + ": rename failed: " + ec.message());
      for (const auto& n : shards_[i].second) weight_map[n] = buf;
    }
    write_safetensors_index(tmp_, weight_map, total_bytes_);
  }
  // The marker lists what qrt wrote, so that a later --force can tell its own folder from a user's.
  std::vector<std::string> names;
  for (fs::directory_iterator it(tmp_, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename() != kOutputMarker) names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  write_marker(tmp_, names);
  // Checked again: another process may have made OUT while this one worked.
  check_output_folder(out_, overwrite_, "");
  std::string aside;
  if (fs::exists(fs::symlink_status(out_, ec))) {
    aside = out_ + ".replaced-" + std::to_string(::getpid());
    fs::rename(out_, aside, ec);
    if (ec) throw io_error(out_ + ": cannot move the old folder aside: " + ec.message());
  }
  fs::rename(tmp_, out_, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!aside.empty()) fs::rename(aside, out_, ec);   // put the old folder back
    throw io_error(out_ + ": cannot move the finished folder into place: " + why);
  }
  finished_ = true;
  if (!aside.empty()) fs::remove_all(aside, ec);
}

}  // namespace qrt::quant
