// `qrt` entry point: builds the CLI from the registered commands, runs one, and turns every
// qrt::Error into a one-line message and a non-zero exit (2 for bad input, 1 otherwise).
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "cli/command.h"
#include "core/text_escape.h"
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
    std::fprintf(stderr, "qrt: error: %s\n", qrt::escape_message(e.what()).c_str());
    std::fprintf(stderr, "run 'qrt --help' or 'qrt <command> --help' for usage\n");
    return 2;
  }
  // The last line of defence: every message is escaped for the terminal (names from files are
  // escaped where they enter a message; this catches what was missed), and no library's own
  // exception text reaches the user: each kind gets a qrt sentence instead.
  std::string command = "qrt";
  auto fail = [&](const std::string& message, int code) {
    std::fflush(stdout);
    std::fprintf(stderr, "qrt: error: %s\n", qrt::escape_message(message).c_str());
    return code;
  };
  try {
    for (auto& [name, run] : runners)
      if (app.got_subcommand(name)) {
        command = "qrt " + name;
        return run();
      }
  } catch (const qrt::Error& e) {
    return fail(e.what(), e.kind() == qrt::ErrorKind::InvalidInput ? 2 : 1);
  } catch (const std::bad_alloc&) {
    return fail(command + ": out of host memory (the input asks for more memory than this machine can give)", 1);
  } catch (const std::length_error&) {
    return fail(command + ": a size computed from the input is too large to allocate", 2);
  } catch (const nlohmann::json::exception&) {
    return fail(command + ": a JSON value of an unexpected type or encoding was not caught by qrt's checks "
                          "(a bug: please report it with the file)", 1);
  } catch (const std::exception&) {
    return fail(command + ": unexpected internal failure (a bug: please report the command and its input)", 1);
  }
  return 0;
}
