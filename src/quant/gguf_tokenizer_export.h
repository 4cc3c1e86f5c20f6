// Writes tokenizer.json + tokenizer_config.json for a GGUF file's vocabulary (byte-level BPE,
// tokenizer.ggml.model "gpt2", with the pre-tokenizer of tokenizer.ggml.pre) so that `qrt
// dequantize` of a GGUF gives a folder transformers can load with its tokenizer.
#pragma once

#include <string>

#include "quant/hf_writer.h"

namespace qrt::quant {

// Returns false (and sets *why) when the vocabulary cannot be exported faithfully (SentencePiece
// "llama" model, unknown pre-tokenizer, missing merges); the caller warns and goes on.
bool write_tokenizer_from_gguf(const std::string& gguf_path, HfFolderWriter& writer, std::string* why);

}  // namespace qrt::quant
