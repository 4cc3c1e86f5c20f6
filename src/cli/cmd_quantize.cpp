// `qrt quantize IN OUT --method gptq|awq|fp8|higgs --bits B --group-size G [--act-order] [--sym|--asym]
//  [--calib sampled|none|TEXT] [--calib-tokens N] [--calib-seed S] [--damp D] [--p P] [--hadamard-size H]
//  [--dtype f16|bf16] [-t N] [--force]`
//
// Quantizes every linear layer of a plain fp16/bf16/f32 Hugging Face folder or a GGUF file (whose
// blocks are dequantized first) and writes a Hugging Face folder the reference libraries load:
// GPTQ v1 tensors (qweight/qzeros/scales/g_idx), AWQ GEMM tensors, or FP8 e4m3 with
// weight_scale_inv blocks, HIGGS in FLUTE's layout (quant/higgs_quantize.h; layers FLUTE cannot pack
// stay in float, listed in modules_to_not_convert); config.json with quantization_config; tokenizer files. lm_head and the
// embeddings stay in float, as GPTQ/AWQ tools do by default. GPTQ and AWQ are calibrated by
// default (the algorithms of quant/calibration.h, run by the model module) on text sampled from
// the model itself, or on a text file; `--calib none` rounds to nearest. FP8 is round-to-nearest.
// Without --group-size the largest of 128, 64, 32 that divides every layer is used, and said.
// qrt_provenance.json records what made the folder (provenance.h).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/build_info.h"
#include "cli/command.h"
#include "cli/progress.h"
#include "cli/provenance.h"
#include "io/bounded_read.h"
#include "qrt/checkpoint.h"
#include "qrt/error.h"
#include "qrt/quant_config.h"
#include "qrt/thread_pool.h"
#include "quant/calibration.h"
#include "quant/formats/codecs.h"
#include "quant/gguf_tokenizer_export.h"
#include "quant/higgs_quantize.h"
#include "quant/hf_writer.h"
#include "quant/quant_config_json.h"
#include "quant/rtn.h"

namespace qrt::cli {
namespace {

struct Options {
  std::string in, out, method, calib, dtype = "f16";
  int bits = 0;
  int group_size = 0;   // 0 = not given: chosen to fit the model (choose_group_size)
  bool desc_act = false, sym = false, asym = false, force = false;
  int64_t calib_tokens = 8192;
  uint64_t calib_seed = 0;
  double damp = 0.01;
  int p = 0;               // HIGGS: values per grid point (0 = not given: 2)
  int hadamard_size = 0;   // HIGGS: 0 = not given: the largest of 512 .. 64 dividing every HIGGS layer
  int threads = 0;         // calibration threads; 0 = the CPUs this process may use
};

// HIGGS: FLUTE packs 16 / bits values per 16-bit word in tiles of 32 words along out_features (the
// template qrt writes: 16 at 4 bits, 4 at 2 bits), so out_features must be a multiple of this.
int64_t higgs_n_multiple(int bits) { return int64_t{16 / bits} * 32; }
int64_t higgs_template_id(int bits) { return bits == 4 ? 16 : 4; }
// FLUTE's tuning record names the GPU it was tuned for; qrt tunes nothing for FLUTE and writes an
// H100's SM count (transformers re-tunes and repacks on a GPU with another count).
constexpr int64_t kHiggsNumSms = 132;

// GPTQ / AWQ group sizes along in_features, largest first: 128 is the reference tools' default,
// 64 and 32 the common smaller ones.
constexpr int kGroupSizes[] = {128, 64, 32};

bool divides_all(int group_size, const std::vector<int64_t>& in_features) {
  for (int64_t k : in_features)
    if (k % group_size != 0) return false;
  return true;
}

// The sizes of kGroupSizes (and 16) that divide every in_features, for messages: "64, 32, 16".
std::string sizes_that_fit(const std::vector<int64_t>& in_features) {
  std::string s;
  for (int g : {128, 64, 32, 16})
    if (divides_all(g, in_features)) s += (s.empty() ? "" : ", ") + std::to_string(g);
  return s.empty() ? "none of 128, 64, 32, 16" : s;
}

// --group-size as given (checked against every layer), or the largest of kGroupSizes that divides
// every in_features, said on stderr. FP8 blocks need not divide: 128 x 128 unless given.
int choose_group_size(const Options& o, const std::vector<const CheckpointLinear*>& layers) {
  if (o.method == "fp8") return o.group_size != 0 ? o.group_size : 128;
  std::vector<int64_t> ks;
  for (const CheckpointLinear* l : layers) ks.push_back(l->spec.in_features);
  if (o.group_size == -1) return -1;
  if (o.group_size > 0) {
    for (const CheckpointLinear* l : layers)
      if (l->spec.in_features % o.group_size != 0)
        throw invalid_input(l->spec.name + ": --group-size " + std::to_string(o.group_size) +
                            " does not divide in_features " + std::to_string(l->spec.in_features) +
                            "; sizes that divide every layer: " + sizes_that_fit(ks) + " (or -1, one group per row)");
    return o.group_size;
  }
  for (int g : kGroupSizes)
    if (divides_all(g, ks)) {
      std::fprintf(stderr, "qrt: --group-size %d: the largest of 128, 64, 32 that divides every in_features%s\n", g,
                   g == kGroupSizes[0] ? "" : " (128 does not; --group-size sets it)");
      return g;
    }
  throw invalid_input(o.in + ": no group size of 128, 64 or 32 divides every in_features (sizes that do: " +
                      sizes_that_fit(ks) + "); pass --group-size, -1 for one group per row");
}

// HIGGS: the layers FLUTE can pack (out_features a multiple of higgs_n_multiple) and, unless given,
// hadamard_size (the largest of 512 .. 64 dividing all their in_features) and group_size (the
// hadamard size, at most 256: HiggsConfig allows 64, 128 and 256). The other layers go to `dense`.
std::vector<const CheckpointLinear*> choose_higgs_layers(Options& o, const std::vector<const CheckpointLinear*>& layers,
                                                         std::vector<std::string>& dense) {
  std::vector<const CheckpointLinear*> fit;
  for (const CheckpointLinear* l : layers) {
    if (l->spec.out_features % higgs_n_multiple(o.bits) == 0) fit.push_back(l);
    else dense.push_back(l->spec.name);
  }
  if (fit.empty())
    throw invalid_input(o.in + ": no linear layer has out_features a multiple of " +
                        std::to_string(higgs_n_multiple(o.bits)) + ", which FLUTE's " + std::to_string(o.bits) +
                        "-bit packing needs");
  std::vector<int64_t> ks;
  for (const CheckpointLinear* l : fit) ks.push_back(l->spec.in_features);
  if (o.hadamard_size != 0) {
    const int h = o.hadamard_size;
    if (h < 64 || h > 4096 || (h & (h - 1)) != 0)
      throw invalid_input("--hadamard-size " + std::to_string(h) + ": expected a power of 2 from 64 to 4096");
    for (const CheckpointLinear* l : fit)
      if (l->spec.in_features % h != 0)
        throw invalid_input(l->spec.name + ": --hadamard-size " + std::to_string(h) + " does not divide in_features " +
                            std::to_string(l->spec.in_features));
  } else {
    for (int h : {512, 256, 128, 64})
      if (divides_all(h, ks)) {
        o.hadamard_size = h;
        break;
      }
    if (o.hadamard_size == 0)
      throw invalid_input(o.in + ": no hadamard size of 512, 256, 128 or 64 divides every in_features of the layers "
                                 "FLUTE can pack");
    std::fprintf(stderr, "qrt: --hadamard-size %d: the largest of 512, 256, 128, 64 that divides every in_features\n",
                 o.hadamard_size);
  }
  if (o.group_size == 0) o.group_size = std::min(o.hadamard_size, 256);
  if ((o.group_size != 64 && o.group_size != 128 && o.group_size != 256) || o.hadamard_size % o.group_size != 0)
    throw invalid_input("--group-size " + std::to_string(o.group_size) + ": HIGGS groups are 64, 128 or 256 and divide "
                        "--hadamard-size " + std::to_string(o.hadamard_size));
  return fit;
}

using qrt::cli::Progress;

// The quantization_config written to config.json, validated by our own parser.
QuantizationConfig make_config(const Options& o, bool sym) {
  QuantizationConfig q;
  if (o.method == "gptq") {
    GptqConfig g;
    g.bits = o.bits;
    g.group_size = o.group_size;
    g.desc_act = o.desc_act;
    g.damp_percent = o.damp;
    g.sym = sym;
    // GPTQModel's convention for the tool that wrote a checkpoint.
    g.passthrough_json = nlohmann::json{{"meta", {{"quantizer", {std::string("qrt:") + qrt_version()}}}}}.dump();
    q.config = g;
  } else if (o.method == "awq") {
    AwqConfig a;
    a.bits = 4;
    a.group_size = o.group_size;
    a.zero_point = true;
    q.config = a;
  } else if (o.method == "higgs") {
    HiggsConfig h;
    h.bits = o.bits;
    h.p = o.p;
    h.group_size = o.group_size;
    h.hadamard_size = o.hadamard_size;
    q.config = h;
  } else {
    Fp8Config f;
    if (o.group_size > 0) f.weight_block_size = std::make_pair(o.group_size, o.group_size);
    q.config = f;
  }
  return q;
}

int run(const Options& o) {
  const std::string method = o.method;
  if (method != "gptq" && method != "awq" && method != "fp8" && method != "higgs")
    throw invalid_input("--method " + method + ": expected gptq, awq, fp8 or higgs");
  const bool higgs = method == "higgs";
  if (!higgs && (o.p != 0 || o.hadamard_size != 0))
    throw invalid_input(std::string(o.p != 0 ? "--p" : "--hadamard-size") + " applies to --method higgs only");
  if (o.sym && o.asym) throw invalid_input("--sym and --asym exclude each other");
  Options opt = o;
  bool sym;
  if (method == "gptq") {
    if (opt.bits == 0) opt.bits = 4;
    if (opt.bits != 2 && opt.bits != 3 && opt.bits != 4 && opt.bits != 8)
      throw invalid_input("--bits " + std::to_string(opt.bits) + ": GPTQ supports 2, 3, 4 or 8");
    sym = !opt.asym;
  } else if (method == "awq") {
    if (opt.bits == 0) opt.bits = 4;
    if (opt.bits != 4) throw invalid_input("--bits " + std::to_string(opt.bits) + ": AWQ supports 4 only");
    if (opt.sym) throw invalid_input("--sym: AWQ GEMM checkpoints always carry zero points (use --asym or leave it out)");
    sym = false;
  } else if (higgs) {
    if (opt.bits == 0) opt.bits = 4;
    if (opt.bits == 3)
      throw unsupported("--bits 3: HIGGS 3-bit weights use FLUTE's bit-plane packing, which qrt neither reads nor "
                        "writes; use 2 or 4");
    if (opt.bits != 2 && opt.bits != 4) throw invalid_input("--bits " + std::to_string(opt.bits) + ": HIGGS supports 2 or 4");
    if (opt.p == 0) opt.p = 2;
    if (opt.p != 1 && opt.p != 2) throw invalid_input("--p " + std::to_string(opt.p) + ": HIGGS supports 1 or 2");
    if (opt.sym || opt.asym) throw invalid_input("--sym / --asym: HIGGS has no zero point (a symmetric grid and group scales)");
    if (opt.desc_act) throw invalid_input("--act-order applies to GPTQ only");
    if (!opt.calib.empty() && opt.calib != "none")
      throw invalid_input("--calib: HIGGS is data-free (a fixed grid after a Hadamard rotation); calibration applies "
                          "to gptq and awq");
    opt.calib = "none";
    sym = true;
  } else {
    if (opt.bits == 0) opt.bits = 8;
    if (opt.bits != 8) throw invalid_input("--bits " + std::to_string(opt.bits) + ": FP8 is 8-bit");
    if (opt.desc_act) throw invalid_input("--act-order applies to GPTQ only");
    sym = true;
  }
  if (opt.group_size < -1)
    throw invalid_input("--group-size " + std::to_string(opt.group_size) + ": expected -1 or a positive size");
  if (method == "awq" && opt.desc_act) throw invalid_input("--act-order applies to GPTQ only (AWQ has no act-order)");
  // "sampled" (the default for GPTQ and AWQ): text sampled from the model; "none": round to nearest.
  if (opt.calib.empty()) opt.calib = method == "fp8" ? "none" : "sampled";
  const quant::Calibrator* calibrator = nullptr;
  if (opt.calib != "none") {
    if (method == "fp8") throw invalid_input("--calib: FP8 is round-to-nearest; calibration applies to gptq and awq");
    calibrator = quant::calibrator();
    if (!calibrator)
      throw unsupported("--calib: calibrated quantization is not available in this build; use --calib none");
    if (opt.calib != "sampled") io::check_regular_file(opt.calib, io::kMaxTextFileBytes, "a calibration text (--calib)");
  }
  if (opt.calib_tokens < 16 || opt.calib_tokens > (int64_t{1} << 24))
    throw invalid_input("--calib-tokens " + std::to_string(opt.calib_tokens) + ": expected 16 .. 16777216");
  if (!(opt.damp > 0 && opt.damp < 1)) throw invalid_input("--damp " + std::to_string(opt.damp) + ": expected (0, 1)");
  if (opt.desc_act && !calibrator)
    throw invalid_input("--act-order needs calibration: it sorts columns by the Hessian of calibration data, "
                        "round-to-nearest (--calib none) has none");
  const DType dtype = quant::parse_float_dtype(opt.dtype, "--dtype");
  if (dtype == DType::F32) throw invalid_input("--dtype f32: quantized checkpoints keep f16 or bf16 for the rest");
  quant::check_output_folder(opt.out, opt.force, opt.in);   // before minutes of work

  std::unique_ptr<Checkpoint> ck = open_checkpoint(opt.in);
  const bool gguf = ck->kind() == CheckpointKind::Gguf;
  if (!gguf && ck->quantization().method() != QuantMethod::None)
    throw invalid_input(opt.in + ": already quantized (" + ck->quantization().describe() +
                        "); run qrt dequantize first");
  // The output must be a model qrt run can load, and the tokenizer is read from tokenizer.json:
  // without it the whole quantization would produce an unusable folder. (A GGUF input carries its
  // vocabulary; tokenizer.json is made from it below.)
  if (!gguf && ck->tokenizer_json_path().empty())
    throw invalid_input(opt.in + ": no tokenizer.json in the input folder, so the quantized folder could not be run; "
                                 "copy tokenizer.json from the original model into " + opt.in + " first");
  // Check every layer before writing anything.
  std::vector<const CheckpointLinear*> targets;
  for (const CheckpointLinear& l : ck->linears())
    if (l.spec.name != "lm_head") targets.push_back(&l);
  const bool group_size_chosen = opt.group_size == 0 && method != "fp8";
  std::vector<std::string> dense;   // HIGGS: layers FLUTE cannot pack, written in float
  if (higgs) targets = choose_higgs_layers(opt, targets, dense);
  else opt.group_size = choose_group_size(opt, targets);
  QuantizationConfig qconfig = make_config(opt, sym);
  if (auto* h = qconfig.get<HiggsConfig>()) {
    h->modules_to_not_convert = {"lm_head"};
    h->modules_to_not_convert.insert(h->modules_to_not_convert.end(), dense.begin(), dense.end());
  }
  quant::HiggsLayout higgs_layout;
  quant::HiggsQuantizeSettings higgs_settings;
  std::unique_ptr<ThreadPool> pool;
  if (higgs) {
    higgs_layout.bits = opt.bits;
    higgs_layout.p = opt.p;
    higgs_layout.group_size = opt.group_size;
    higgs_layout.hadamard_size = opt.hadamard_size;
    higgs_layout.template_id = higgs_template_id(opt.bits);
    higgs_layout.num_sms = kHiggsNumSms;
    higgs_layout.tile_p = 32;
    higgs_settings.bits = opt.bits;
    higgs_settings.p = opt.p;
    higgs_settings.group_size = opt.group_size;
    higgs_settings.hadamard_size = opt.hadamard_size;
    higgs_settings.dtype = dtype;
    higgs_settings.grid = quant::higgs_gaussian_grid(opt.bits, opt.p, dtype);
    pool = std::make_unique<ThreadPool>();
  }
  for (const CheckpointLinear* lp : targets) {
    const CheckpointLinear& l = *lp;
    const int64_t k = l.spec.in_features, n = l.spec.out_features;
    if (method == "gptq" && ((k * opt.bits) % 32 != 0 || (n * opt.bits) % 32 != 0 || (opt.bits == 3 && (k % 32 || n % 32))))
      throw invalid_input(l.spec.name + ": [" + std::to_string(n) + ", " + std::to_string(k) + "] cannot be packed at " +
                          std::to_string(opt.bits) + " bits (GPTQ needs whole 32-bit words along both dimensions)");
    if (method == "awq" && n % 8 != 0)
      throw invalid_input(l.spec.name + ": out_features " + std::to_string(n) + " is not a multiple of 8 (AWQ GEMM)");
  }

  // OUT is claimed (refused when it exists without --force) before the minutes of calibration.
  quant::HfFolderWriter writer(opt.out, opt.force, opt.in);
  quant::CalibrationResult calibration;
  std::map<std::string, QuantizedWeight>& calibrated = calibration.linears;
  if (calibrator) {
    quant::CalibrationSettings cs;
    cs.algorithm = method == "awq" ? quant::CalibrationAlgorithm::Awq : quant::CalibrationAlgorithm::Gptq;
    if (opt.calib != "sampled") cs.text_path = opt.calib;
    cs.tokens = opt.calib_tokens;
    cs.seed = opt.calib_seed;
    cs.bits = opt.bits;
    cs.group_size = opt.group_size;
    cs.sym = sym;
    cs.act_order = opt.desc_act;
    cs.damp_percent = opt.damp;
    cs.threads = opt.threads;
    cs.dtype = dtype;
    cs.log = [](const std::string& line) { std::fprintf(stderr, "qrt: %s\n", line.c_str()); };
    Progress sampling("sampling calibration text (sequences)", /*log_lines=*/true),
        layers(method == "awq" ? "AWQ scale search (layers)" : "GPTQ (layers)", /*log_lines=*/true);
    cs.progress = [&](const std::string& stage, int64_t d, int64_t t) {
      (stage == "sampling" ? sampling : layers).update(d, t);
    };
    calibration = (*calibrator)(*ck, cs);
    sampling.done();
    layers.done();
    std::fprintf(stderr, "qrt: calibrated on %s\n", calibration.source.c_str());
  }

  Progress progress("quantizing (linear layers)");
  std::set<std::string> quantized_names;
  int64_t done = 0;
  double err_sum = 0, ref_sum = 0;
  for (const CheckpointLinear* l : targets) {
    progress.update(done++, static_cast<int64_t>(targets.size()));
    const std::string& name = l->spec.name;
    const int64_t n = l->spec.out_features, k = l->spec.in_features;
    const std::vector<float> w = ck->load_float(name + ".weight");
    QuantizedWeight q;
    if (auto it = calibrated.find(name); it != calibrated.end()) {
      q = std::move(it->second);
    } else if (higgs) {
      q = quant::higgs_quantize(name, w.data(), n, k, higgs_settings, pool.get());
    } else if (method == "fp8") {
      const int b = opt.group_size > 0 ? opt.group_size : static_cast<int>(std::max(n, k));
      q = quant::fp8_quantize(name, w.data(), n, k, opt.group_size > 0 ? b : static_cast<int>(n),
                              opt.group_size > 0 ? b : static_cast<int>(k));
    } else {
      q = quant::rtn_quantize(name, w.data(), n, k, opt.bits, opt.group_size, sym,
                              method == "awq" ? quant::RtnStyle::Awq : quant::RtnStyle::Gptq);
    }
    if (ck->has_tensor(name + ".bias")) {
      q.bias = ck->load_float(name + ".bias");
      q.spec.has_bias = true;
    }
    // Relative error of the stored weight, reported at the end (a sanity check of the result).
    const std::vector<float> d = dequantize_reference(q);
    for (size_t i = 0; i < d.size(); ++i) {
      err_sum += static_cast<double>(d[i] - w[i]) * (d[i] - w[i]);
      ref_sum += static_cast<double>(w[i]) * w[i];
    }
    std::vector<quant::EncodedTensor> enc = method == "gptq" ? quant::encode_gptq(q, false, DType::F16)
                                            : method == "awq"  ? quant::encode_awq(q, "gemm", DType::F16)
                                            : higgs            ? quant::encode_higgs(q, higgs_layout, dtype)
                                                               : quant::encode_fp8(q);
    if (auto* h = qconfig.get<HiggsConfig>())
      h->tune_metadata[name] = quant::higgs_tune_metadata_json(higgs_layout, n, k,
                                                           std::string("torch.") + quant::torch_dtype_name(dtype));
    for (auto& t : enc) {
      writer.add(name + "." + t.suffix, t.dtype, t.shape, std::move(t.data));
      quantized_names.insert(name + "." + t.suffix);
    }
    quantized_names.insert(name + ".weight");
    quantized_names.insert(name + ".bias");
  }
  progress.update(static_cast<int64_t>(targets.size()), static_cast<int64_t>(targets.size()));
  progress.done();
  for (const CheckpointTensor& t : ck->tensors()) {
    if (quantized_names.count(t.name)) continue;
    if (gguf && t.name.rfind("model.", 0) != 0 && t.name != "lm_head.weight") continue;
    if (auto it = calibration.float_tensors.find(t.name); it != calibration.float_tensors.end()) {
      writer.add_float(t.name, dtype, t.shape, std::move(it->second));
    } else if (t.dtype == DType::Unknown || dtype_is_float(t.dtype)) {
      writer.add_float(t.name, dtype, t.shape, ck->load_float(t.name));
    } else {
      RawTensor raw = ck->load_raw(t.name);
      writer.add(t.name, raw.dtype, raw.shape, std::move(raw.data));
    }
  }

  nlohmann::json config = nlohmann::json::parse(ck->config_json());
  config["quantization_config"] = quant::quantization_config_to_json_value(qconfig);
  config["torch_dtype"] = quant::torch_dtype_name(dtype);
  writer.add_text_file("config.json", config.dump(2) + "\n");
  // What made the folder, in a file of its own that the loaders of other tools never read.
  nlohmann::ordered_json prov;
  prov["made_by"] = qrt_identity();
  prov["created"] = utc_timestamp();
  prov["source"] = {{"path", opt.in}, {"format", gguf ? "gguf" : "hf"}, {"quantization", ck->quantization().describe()}};
  prov["method"] = method;
  prov["algorithm"] = higgs ? "higgs (Hadamard rotation, Gaussian MSE grid, least-squares group scales; data-free)"
                      : !calibrator      ? "round to nearest"
                      : method == "awq" ? "awq (activation-aware scale search)"
                                        : "gptq (Hessian of the calibration activations)";
  prov["bits"] = opt.bits;
  prov["group_size"] = opt.group_size;
  prov["group_size_source"] = !group_size_chosen ? "--group-size"
                              : higgs ? "chosen: hadamard_size, at most 256"
                                      : "chosen: the largest of 128, 64, 32 dividing every in_features";
  if (higgs) {
    prov["p"] = opt.p;
    prov["hadamard_size"] = opt.hadamard_size;
    prov["dense_layers"] = dense;
  }
  prov["sym"] = sym;
  prov["act_order"] = opt.desc_act;
  if (method == "gptq") prov["damp"] = opt.damp;
  prov["dtype"] = opt.dtype;
  nlohmann::ordered_json calib(nullptr);
  if (calibrator) {
    if (opt.calib == "sampled")
      calib = {{"source", "sampled from the model"}, {"seed", opt.calib_seed}};
    else
      calib = file_identity(opt.calib);
    calib["tokens"] = calibration.tokens;
    calib["description"] = calibration.source;
  }
  prov["calibration"] = calib;
  prov["quantization_config"] = quant::quantization_config_to_json_value(qconfig);
  writer.add_text_file(kProvenanceFile, prov.dump(2) + "\n");
  for (const std::string& f : ck->tokenizer_files()) writer.copy_file(f);
  if (!gguf) {
    const std::string gen = ck->path() + "/generation_config.json";
    if (access(gen.c_str(), R_OK) == 0) writer.copy_file(gen);
  } else {
    std::string why;
    if (!quant::write_tokenizer_from_gguf(ck->path(), writer, &why))
      std::fprintf(stderr, "qrt: warning: tokenizer not written: %s; copy tokenizer.json from the original model\n",
                   why.c_str());
  }
  writer.finish();
  // AWQ stores W x s per input channel (1/s went into the norms): its weight error is not comparable.
  const std::string error_note =
      calibration.float_tensors.empty()
          ? fmt::format("; relative weight error {:.4f}", ref_sum > 0 ? std::sqrt(err_sum / ref_sum) : 0.0)
          : "; AWQ channel scales folded into the RMSNorm weights";
  if (!dense.empty())
    std::fprintf(stderr, "qrt: %zu linear layers stay %s (FLUTE packs out_features in multiples of %lld at %d bits), "
                 "e.g. %s\n", dense.size(), opt.dtype.c_str(), static_cast<long long>(higgs_n_multiple(opt.bits)),
                 opt.bits, dense.front().c_str());
  std::printf("wrote %s: %zu linear layers as %s, %.1f MB%s\n", opt.out.c_str(), targets.size(),
              qconfig.describe().c_str(), writer.tensor_bytes() / 1e6, error_note.c_str());
  return 0;
}

const CommandRegistrar kRegistrar(
    "quantize", "Quantize a fp16/bf16 Hugging Face folder or a GGUF file into a GPTQ / AWQ / FP8 / HIGGS Hugging Face folder",
    [](CLI::App& app) {
      auto o = std::make_shared<Options>();
      app.add_option("IN", o->in, "Plain Hugging Face folder or GGUF file")->required();
      app.add_option("OUT", o->out, "Output folder (must not exist unless --force)")->required();
      app.add_option("--method", o->method, "gptq, awq, fp8 or higgs")->required();
      app.add_option("--bits", o->bits, "2, 3, 4 or 8 (GPTQ); 4 (AWQ); 8 (FP8); 2 or 4 (HIGGS, default 4)");
      app.add_option("--p", o->p, "HIGGS: values per grid point, 1 or 2 (default 2)");
      app.add_option("--hadamard-size", o->hadamard_size,
                     "HIGGS: rotation block along in_features, a power of 2 (default: the largest of 512, 256, 128, "
                     "64 dividing every HIGGS layer)");
      app.add_option("--group-size", o->group_size,
                     "Group size along in_features (-1 = per row; default: the largest of 128, 64, 32 that divides "
                     "every layer's in_features); FP8: block size (-1 = per tensor, default 128)");
      app.add_flag("--act-order,--desc-act", o->desc_act,
                   "GPTQ act-order: columns by decreasing Hessian diagonal, g_idx written (needs calibration)");
      app.add_flag("--sym", o->sym, "Symmetric (GPTQ default)");
      app.add_flag("--asym", o->asym, "Asymmetric, with zero points (AWQ default)");
      app.add_option("--calib", o->calib,
                     "GPTQ/AWQ calibration: 'sampled' (default: text sampled from the model itself), a text file, "
                     "or 'none' (round to nearest)");
      app.add_option("--calib-tokens", o->calib_tokens, "Calibration tokens (sampled, or read from the text)")
          ->capture_default_str();
      app.add_option("--calib-seed", o->calib_seed, "Seed of the sampled calibration text")->capture_default_str();
      app.add_option("--damp", o->damp, "GPTQ damping, a fraction of the mean Hessian diagonal")->capture_default_str();
      app.add_option("--dtype", o->dtype, "Float type of the unquantized tensors: f16 or bf16")->capture_default_str();
      app.add_option("-t,--threads", o->threads,
                     "Calibration threads (default: the CPUs this process may use, from its affinity mask)")
          ->check(CLI::Range(0, ThreadPool::kMaxThreads));
      app.add_flag("--force", o->force, "Replace OUT if it exists");
      return [o] { return run(*o); };
    });

}  // namespace
}  // namespace qrt::cli
