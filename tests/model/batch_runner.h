// The batched engine's test driver (qrt/batch_engine.h), shared by the CPU batch tests
// (test_batch_engine.cpp) and the GPU ones (tests/backends/test_cuda_engine.cpp): sequences that
// join at different steps and leave when done, each step the next prompt chunk or the decode row
// of every joined sequence, block tables drawn from a shuffled free list and given back when a
// sequence leaves (so later sequences reuse them); and the single-sequence engine's logits of the
// same tokens.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "qrt/batch_engine.h"
#include "qrt/model.h"

namespace qrt::testing {

struct Sequence {
  std::vector<int32_t> tokens;  // prompt, then the tokens fed back while decoding
  int64_t prompt = 0;
  int64_t start_step = 0;       // the step it joins
  int64_t next = 0;             // next position to run
  std::vector<int32_t> blocks;  // its block table
  std::vector<std::vector<float>> logits;  // of its last prompt row, then of every decode row
  bool done() const { return next == static_cast<int64_t>(tokens.size()); }
};

// Logits the single-sequence engine gives for `s`: prompt (chunked by the engine), then one
// token at a time.
inline std::vector<std::vector<float>> reference_logits(ForwardEngine& e, const Sequence& s, int64_t vocab) {
  std::vector<std::vector<float>> out;
  std::vector<float> row(vocab);
  e.forward(s.tokens.data(), s.prompt, 0, row.data());
  out.push_back(row);
  for (int64_t p = s.prompt; p < static_cast<int64_t>(s.tokens.size()); ++p) {
    e.forward(s.tokens.data() + p, 1, p, row.data());
    out.push_back(row);
  }
  return out;
}

// Runs every sequence through the batched engine: each step takes the next prompt chunk (ending
// at a multiple of the chunk size) or the decode row of every joined sequence; blocks come from
// a shuffled free list as positions need them and go back when a sequence ends.
inline void run_batched(BatchEngine& e, std::vector<Sequence>& seqs, uint32_t seed, int64_t vocab) {
  std::vector<int32_t> free_blocks(static_cast<size_t>(e.kv_blocks()));
  for (size_t i = 0; i < free_blocks.size(); ++i) free_blocks[i] = static_cast<int32_t>(i);
  std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(seed));
  const int64_t chunk = e.prefill_chunk();
  for (int64_t step = 0;; ++step) {
    std::vector<int32_t> tokens, sequences;
    std::vector<int64_t> positions, logit_rows;
    std::vector<KvBlockTable> tables;
    std::vector<Sequence*> wanted;  // the sequence of each logit row
    bool any_left = false;
    // Alternate the order of the sequences' rows between steps.
    std::vector<size_t> order(seqs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = step % 2 ? order.size() - 1 - i : i;
    for (size_t oi : order) {
      Sequence& s = seqs[oi];
      if (s.done()) continue;
      any_left = true;
      if (step < s.start_step) continue;
      const int64_t end = s.next < s.prompt ? std::min(s.prompt, (s.next / chunk + 1) * chunk) : s.next + 1;
      if (static_cast<int64_t>(tokens.size()) + (end - s.next) > e.max_rows()) continue;  // next step
      while (static_cast<int64_t>(s.blocks.size()) * kKvBlockPositions < end) {
        ASSERT_FALSE(free_blocks.empty());
        s.blocks.push_back(free_blocks.back());
        free_blocks.pop_back();
      }
      const int32_t id = static_cast<int32_t>(tables.size());
      tables.push_back({s.blocks.data(), static_cast<int64_t>(s.blocks.size())});
      for (int64_t p = s.next; p < end; ++p) {
        tokens.push_back(s.tokens[static_cast<size_t>(p)]);
        positions.push_back(p);
        sequences.push_back(id);
      }
      if (end >= s.prompt) {
        logit_rows.push_back(static_cast<int64_t>(tokens.size()) - 1);
        wanted.push_back(&s);
      }
      s.next = end;
    }
    if (!any_left) return;
    if (tokens.empty()) continue;
    BatchStep b;
    b.rows = static_cast<int64_t>(tokens.size());
    b.tokens = tokens.data();
    b.positions = positions.data();
    b.sequences = sequences.data();
    b.tables = tables.data();
    b.table_count = static_cast<int64_t>(tables.size());
    b.logit_rows = logit_rows.data();
    b.logit_count = static_cast<int64_t>(logit_rows.size());
    std::vector<float> logits(logit_rows.size() * static_cast<size_t>(vocab));
    e.step(b, logits.data());
    for (size_t k = 0; k < wanted.size(); ++k)
      wanted[k]->logits.emplace_back(logits.begin() + static_cast<std::ptrdiff_t>(k * vocab),
                                     logits.begin() + static_cast<std::ptrdiff_t>((k + 1) * vocab));
    for (Sequence& s : seqs)
      if (s.done() && !s.blocks.empty()) {  // leaves: its blocks serve the next sequences
        free_blocks.insert(free_blocks.end(), s.blocks.begin(), s.blocks.end());
        s.blocks.clear();
      }
  }
}

}  // namespace qrt::testing
