// llama.cpp's command-line habits on qrt's command line. Flags that mean the same thing are qrt
// flags already (-m, -p, -f, -n, -c, -t, -s, --temp, --top-k, --top-p, --min-p, --repeat-penalty,
// ...); multi-letter single-dash spellings that CLI11 would read as clusters of short flags
// (-cnv, -sys) are rewritten to their long forms; flags with no meaning here (-ngl, -fa, -b, ...)
// are refused with what to use instead.
#pragma once

#include <string>
#include <vector>

namespace qrt::cli {

// Rewrites `args` (the arguments after the command name) in place. Returns "" or, for the first
// flag qrt has no use for, the message "qrt has no -ngl (...): use ...".
std::string adapt_llama_flags(const std::string& command, std::vector<std::string>* args);

}  // namespace qrt::cli
