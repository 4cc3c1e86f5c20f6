// The model argument, the same on every command that reads one: `qrt CMD MODEL` or
// `qrt CMD -m MODEL` (llama.cpp's spelling), not both. A positional that names nothing on disk is
// refused while the command line is parsed, with a hint, since `qrt run "Hello"` (a prompt where
// the model goes) is the usual slip.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace qrt::cli {

// `what_default` ends the help text of -m (e.g. "default: the SmolLM2 GGUF"); empty when the
// command needs a model. `takes_prompt`: the command has -p, and the refusal says a prompt goes there.
void add_model_argument(CLI::App& app, std::string& model, const std::string& what_default, bool takes_prompt = false);

}  // namespace qrt::cli
