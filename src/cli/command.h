// Each `qrt` subcommand lives in its own cmd_*.cpp and registers itself here at static-init time
// (the files are compiled straight into the executable, so no registration is dropped).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace qrt::cli {

// setup adds the subcommand's options to `app` and returns the function that runs it (exit code).
using CommandSetup = std::function<std::function<int()>(CLI::App& app)>;

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, const std::string& summary, CommandSetup setup);
};

}  // namespace qrt::cli
