// The pre-tokenizers of byte-level BPE tokenizers, written out by hand (no regex engine): each
// splitter reproduces what Oniguruma does with the family's regex in HF `tokenizers` (leftmost
// alternative, greedy quantifiers with backtracking), as a step in a pipeline like HF's Sequence.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

namespace qrt::tok {

enum class PreStep {
  SplitGpt2,         // ByteLevel(use_regex) / Split(GPT-2 regex), Isolated
  SplitLlama3,       // Split(Llama-3 regex), Isolated
  SplitQwen2,        // Split(Qwen2 regex), Isolated
  DigitsIndividual,  // Digits(individual_digits = true)
  DigitsGrouped,     // Digits(individual_digits = false)
  PrefixSpace,       // ByteLevel(add_prefix_space): " " before a piece that does not start with one
};

// The exact regex strings of HF tokenizer.json files that qrt recognizes, or nullptr.
const PreStep* pre_step_for_regex(std::string_view pattern);

// Runs `steps` over `text` and returns the pieces, each a string (PrefixSpace may add a byte, so
// pieces are not always views of `text`).
std::vector<std::string> pre_tokenize(std::string_view text, const std::vector<PreStep>& steps);

}  // namespace qrt::tok
