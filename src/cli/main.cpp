// `qrt` entry point: builds the CLI from the registered commands, runs one, and turns every
// qrt::Error into a one-line message and a non-zero exit (2 for bad input, 1 otherwise).
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include "cli/command.h"
#include "qrt/error.h"

namespace qrt::cli {
namespace {
struct Entry {
  std::string summary;
  CommandSetup setup;
};
std::map<std::string, Entry>& commands() {
  static std::map<std::string, Entry> table;
  return table;
}
}  // namespace

CommandRegistrar::CommandRegistrar(const std::string& name, const std::string& summary, CommandSetup setup) {
  commands()[name] = {summary, std::move(setup)};
}

}  // namespace qrt::cli

int main(int argc, char** argv) {
  using namespace qrt::cli;
  CLI::App app{"qrt: quantized LLM inference with kernels chosen, configured and tuned at run time"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qrt 0.1.0");
  std::map<std::string, std::function<int()>> runners;
  for (auto& [name, entry] : commands()) {
    CLI::App* sub = app.add_subcommand(name, entry.summary);
    runners[name] = entry.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0: let CLI11 print them. Anything else is
    // a usage error: one line naming what was wrong, then where to look, exit 2.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "qrt: error: %s\n", e.what());
    std::fprintf(stderr, "run 'qrt --help' or 'qrt <command> --help' for usage\n");
    return 2;
  }
  try {
    for (auto& [name, run] : runners)
      if (app.got_subcommand(name)) return run();
  } catch (const qrt::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "qrt: error: %s\n", e.what());
    return e.kind() == qrt::ErrorKind::InvalidInput ? 2 : 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "qrt: error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qrt: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
