// Tuning cache (round trip, foreign/stale entries ignored with one warning, corrupt files) and the
// tuner (with injected fake timings it must pick the fastest candidate whose output is right).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "backend_test_util.h"
#include "backends/backend_factories.h"
#include "qrt/plan.h"
#include "qrt/tuning_cache.h"

namespace qrt {
namespace {

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("qrt_tune_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

struct Fixture {
  BackendRegistry reg;
  test::FakeBackend* fake;
  DeviceInfo dev = probe_cpu();
  LayerSpec layer = test::int_layer("model.layers.0.mlp.up_proj", 64, 48, 4, 32, ZeroKind::Integer);
  Fixture() {
    auto f = std::make_unique<test::FakeBackend>("fake", false);
    fake = f.get();
    reg.add(std::move(f));
    reg.add(make_cpu_ref_backend());
    reg.set_auto_order("cpu", {"fake", "cpu_ref"});
  }
  TuningEntry entry(int64_t m, int64_t tile) const {
    TuningEntry e;
    e.key = make_tuning_key(dev, *fake, layer, m);
    e.params.values["tile"] = tile;
    e.time_us = 12.5;
    return e;
  }
};

TEST(TuningCache, RoundTripThroughTheFileFeedsThePlan) {
  Fixture fx;
  TuningCache cache;
  cache.put(fx.entry(1, 16));
  cache.put(fx.entry(16, 64));
  cache.put(fx.entry(16, 64));  // same key: replaced, not duplicated
  EXPECT_EQ(cache.size(), 2u);
  const std::string path = temp_path("round.json");
  cache.save(path);
  const TuningCache back = TuningCache::load(path, fx.dev, false, &fx.reg);
  EXPECT_TRUE(back.warnings().empty());
  ASSERT_EQ(back.size(), 2u);
  const TuningEntry* e = back.find(fx.entry(16, 0).key);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->params.get_int("tile", 0), 64);
  EXPECT_DOUBLE_EQ(e->time_us, 12.5);

  const auto plans = plan_layers({fx.layer}, RuntimeConfig{}, fx.dev, &back, fx.reg);
  ASSERT_TRUE(plans[0].ok()) << plans[0].error;
  ASSERT_EQ(plans[0].choices.size(), 2u);
  EXPECT_EQ(plans[0].choices[0].source, ParamSource::Tuned);
  EXPECT_EQ(plans[0].choices[0].params.get_int("tile", 0), 16);
  EXPECT_EQ(plans[0].choices[1].params.get_int("tile", 0), 64);
}

TEST(TuningCache, ForeignDeviceAndStaleVersionAreIgnoredWithOneWarningEach) {
  Fixture fx;
  TuningCache cache;
  for (int64_t m : {1, 4, 16}) {
    TuningEntry foreign = fx.entry(m, 64);
    foreign.key.device = target_profile("cpu-avx512").cache_key();
    cache.put(foreign);
    TuningEntry stale = fx.entry(m, 64);
    stale.key.kernel_version = 0;
    cache.put(stale);
  }
  const std::string path = temp_path("mixed.json");
  cache.save(path);
  const TuningCache back = TuningCache::load(path, fx.dev, false, &fx.reg);
  EXPECT_EQ(back.size(), 6u) << "kept in the file";
  ASSERT_EQ(back.warnings().size(), 2u);
  EXPECT_NE(back.warnings()[0].find("3 tuning entries for other devices ignored"), std::string::npos) << back.warnings()[0];
  EXPECT_NE(back.warnings()[1].find("3 tuning entries for older kernel versions ignored"), std::string::npos)
      << back.warnings()[1];
  EXPECT_TRUE(back.entries_for(fx.dev, *fx.fake, fx.layer).empty());
  const auto plans = plan_layers({fx.layer}, RuntimeConfig{}, fx.dev, &back, fx.reg);
  EXPECT_EQ(plans[0].choices.at(0).source, ParamSource::Default) << "never used";
}

TEST(TuningCache, CorruptFileIsAnErrorNamingItUnlessIgnored) {
  Fixture fx;
  const std::pair<const char*, const char*> bad[] = {
      {"{ nope", "malformed JSON"},
      {"[]", "expected {\"format\""},
      {R"({"format": "qrt-tuning-cache", "version": 9, "entries": []})", "unsupported tuning cache version"},
      {R"({"format": "qrt-tuning-cache", "version": 1, "entries": [{"device": "x"}]})", "entry 0: field 'backend'"},
      {R"({"format": "qrt-tuning-cache", "version": 1, "entries": [{"device": "x", "backend": "b",
          "kernel_version": 1, "k": 64, "n": 64, "bits": 4, "group_size": 32, "weight": "int sym", "m": 1,
          "params": {"tile": 1.5}}]})", "field 'params'"},
      // found by fuzz_runtime_files: a format that is not a string threw nlohmann's type_error
      {R"({"format": 1, "version": 1, "entries": []})", "expected {\"format\""},
      {R"({"format": "qrt-tuning-cache", "version": 4294967297, "entries": []})", "unsupported tuning cache version"},
      // values that would not fit the key's int fields (they were truncated, and saved differently)
      {R"({"format": "qrt-tuning-cache", "version": 1, "entries": [{"device": "x", "backend": "b",
          "kernel_version": 1, "k": 64, "n": 64, "bits": 4294967300, "group_size": 32, "weight": "int sym", "m": 1,
          "params": {}}]})", "field 'bits' must be an integer in [1, 32]"},
      {R"({"format": "qrt-tuning-cache", "version": 1, "entries": [{"device": "x", "backend": "b",
          "kernel_version": 1, "k": 18446744073709551615, "n": 64, "bits": 4, "group_size": 32, "weight": "int sym",
          "m": 1, "params": {}}]})", "field 'k'"},
  };
  for (auto [text, expect] : bad) {
    const std::string path = temp_path("corrupt.json");
    std::ofstream(path) << text;
    try {
      TuningCache::load(path, fx.dev, false, &fx.reg);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
    const TuningCache ignored = TuningCache::load(path, fx.dev, true, &fx.reg);
    EXPECT_EQ(ignored.size(), 0u);
    ASSERT_EQ(ignored.warnings().size(), 1u);
    EXPECT_NE(ignored.warnings()[0].find("running on default kernel parameters"), std::string::npos);
  }
  EXPECT_EQ(TuningCache::load(temp_path("missing.json"), fx.dev).size(), 0u) << "a missing file is an empty cache";
}

TEST(Tuner, PicksTheFastestCorrectCandidateFromFakeTimings) {
  Fixture fx;
  // tile 64 is the fastest but computes garbage; tile 32 is the fastest correct one.
  fx.fake->wrong_tile = 64;
  TuneOptions opt;
  opt.batches = {1, 16};
  opt.repeats = 5;
  opt.warmup = 1;
  std::map<int64_t, int> calls;
  opt.timer = [&](const std::string& backend, const KernelParams& p, int64_t m, const std::function<void()>& run) {
    run();
    const int64_t tile = p.get_int("tile", 0);
    ++calls[tile];
    // A noisy fake clock: the median must see through one outlier per candidate.
    const double base = tile == 64 ? 1e-6 : tile == 32 ? 2e-6 : 3e-6;
    return calls[tile] % 5 == 0 ? base * 100 : base;
  };
  std::vector<TuneProgress> seen;
  opt.progress = [&](const TuneProgress& p) { seen.push_back(p); };
  TuningCache cache;
  std::vector<LayerSpec> layers = {fx.layer, fx.layer, fx.layer};  // three layers, one shape
  layers[1].name = "model.layers.1.mlp.up_proj";
  int loads = 0;
  const TuneResult r = tune_layers(
      layers, [&](const LayerSpec& s) { ++loads; return test::random_weight(s, 5); }, fx.dev, cache, opt, &fx.reg);
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(r.shapes, 1u);
  EXPECT_EQ(r.written, 2u);
  EXPECT_EQ(r.rejected, 2u) << "tile 64 rejected at both M";
  EXPECT_EQ(r.timed, 4u);
  EXPECT_EQ(calls[64], 0) << "a wrong candidate is never timed";
  for (int64_t m : {1, 16}) {
    const TuningEntry* e = cache.find(make_tuning_key(fx.dev, *fx.fake, fx.layer, m));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->params.get_int("tile", 0), 32);
    EXPECT_NEAR(e->time_us, 2.0, 1e-9);
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().done, seen.back().total);
  EXPECT_EQ(seen.back().total, 6u);

  // Already cached: nothing to do unless asked to retune.
  const TuneResult again = tune_layers(layers, [&](const LayerSpec& s) { return test::random_weight(s, 5); }, fx.dev,
                                       cache, opt, &fx.reg);
  EXPECT_EQ(again.skipped_cached, 2u);
  EXPECT_EQ(again.timed, 0u);
}

// A sweep winner must win every head-to-head confirmation round against the default (tile 32)
// and beat it by 5 % on the median round; one lost round keeps the default.
TEST(Tuner, SweepWinnerMustWinEveryConfirmationRound) {
  for (const bool loses_a_round : {false, true}) {
    Fixture fx;
    TuneOptions opt;
    opt.batches = {1};
    opt.repeats = 5;
    opt.warmup = 0;
    std::map<int64_t, int> calls;
    opt.timer = [&](const std::string&, const KernelParams& p, int64_t, const std::function<void()>& run) {
      run();
      const int64_t tile = p.get_int("tile", 0);
      const int call = ++calls[tile];
      if (tile != 16) return tile == 32 ? 3e-6 : 4e-6;
      // Calls 1-5: the sweep; then 5 calls per confirmation round. Round 3 is a burst of noise.
      const bool third_round = call >= 16 && call <= 20;
      return loses_a_round && third_round ? 1e-5 : 1e-6;
    };
    TuningCache cache;
    const TuneResult r = tune_layers(
        {fx.layer}, [&](const LayerSpec& s) { return test::random_weight(s, 5); }, fx.dev, cache, opt, &fx.reg);
    const TuningEntry* e = cache.find(make_tuning_key(fx.dev, *fx.fake, fx.layer, 1));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(calls[16], 5 + 5 * 5) << "the sweep and five confirmation rounds";
    if (loses_a_round) {
      EXPECT_EQ(e->params.get_int("tile", 0), 32) << "one lost round keeps the default";
      bool noted = false;
      for (const auto& n : r.notes) noted = noted || n.find("lost a round") != std::string::npos;
      EXPECT_TRUE(noted);
    } else {
      EXPECT_EQ(e->params.get_int("tile", 0), 16);
      EXPECT_NEAR(e->time_us, 1.0, 1e-9);
    }
  }
}

TEST(Tuner, RefusesTargetProfilesAndHonoursTheBudget) {
  Fixture fx;
  TuningCache cache;
  TuneOptions opt;
  EXPECT_THROW(tune_layers({fx.layer}, [](const LayerSpec& s) { return test::random_weight(s, 1); },
                           target_profile("cpu-avx2"), cache, opt, &fx.reg),
               Error);
  opt.budget_seconds = 1e-9;
  opt.timer = [](const std::string&, const KernelParams&, int64_t, const std::function<void()>& run) {
    run();
    return 1e-6;
  };
  const TuneResult r = tune_layers({fx.layer}, [](const LayerSpec& s) { return test::random_weight(s, 1); }, fx.dev,
                                   cache, opt, &fx.reg);
  EXPECT_TRUE(r.budget_exhausted);
  EXPECT_EQ(r.written, 0u);
}

}  // namespace
}  // namespace qrt
