// The conversation of `qrt chat` (and `qrt run -i`): one user message per line of standard input,
// each answered through the model's chat template; /reset, /exit, end of input.
#pragma once

#include "cli/generate_cli.h"

namespace qrt::cli {

// Runs until /exit, end of input or Ctrl-C at the prompt; returns the exit status.
int chat_loop(const GenerateCliOptions& o);

}  // namespace qrt::cli
