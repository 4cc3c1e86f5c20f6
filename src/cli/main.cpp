// `qrt` entry point: builds the CLI from the registered commands, runs one, and turns every
// qrt::Error into a one-line message and a non-zero exit (2 for bad input, 1 otherwise).
// `qrt help [CMD]`, an unknown or missing command and llama.cpp's flags (llama_compat.h) are
// answered before CLI11 parses anything.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "cli/build_info.h"
#include "cli/command.h"
#include "cli/llama_compat.h"
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

std::string command_list() {
  std::string s;
  for (const auto& [name, entry] : commands()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

// A device that is not here: what to do instead, in flags the command has (the library's error
// cannot know them).
std::string device_hint(const std::string& command) {
  if (command == "plan") return "; --device cpu plans for this CPU, --target PROFILE for a GPU that is not here";
  if (command == "bench" || command == "tune") return "; --device cpu times the CPU backends";
  return "; --device cpu runs on the CPU (the default, --device auto, takes a GPU only when one is present)";
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "qrt: error: %s\n", qrt::escape_message(message).c_str());
  std::fprintf(stderr, "run 'qrt --help' or 'qrt <command> --help' for usage\n");
  return 2;
}
}  // namespace

CommandRegistrar::CommandRegistrar(const std::string& name, const std::string& summary, CommandSetup setup) {
  commands()[name] = {summary, std::move(setup)};
}

}  // namespace qrt::cli

int main(int argc, char** argv) {
  using namespace qrt::cli;
  CLI::App app{"qrt: quantized LLM inference with kernels chosen, configured and tuned at run time"};
  app.name("qrt");
  app.require_subcommand(1);
  app.set_version_flag("--version", version_line());
  app.footer("'qrt help COMMAND' (or 'qrt COMMAND --help') describes a command.");
  std::map<std::string, std::function<int()>> runners;
  std::map<std::string, CLI::App*> subs;
  for (auto& [name, entry] : commands()) {
    CLI::App* sub = app.add_subcommand(name, entry.summary);
    runners[name] = entry.setup(*sub);
    subs[name] = sub;
  }

  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error("no command given; the commands are: " + command_list());
  const std::string first = args[0];  // a copy: args is rebuilt below
  if (first == "help") {
    if (args.size() == 1) {
      std::printf("%s", app.help().c_str());
      return 0;
    }
    auto it = subs.find(args[1]);
    if (it == subs.end())
      return usage_error("'qrt help " + args[1] + "': no such command; the commands are: " + command_list());
    std::printf("%s", it->second->help().c_str());
    return 0;
  }
  if (first.empty() || first[0] != '-') {
    if (!subs.count(first))
      return usage_error("unknown command '" + first + "'; the commands are: " + command_list());
    std::vector<std::string> rest(args.begin() + 1, args.end());
    const std::string refused = adapt_llama_flags(first, &rest);
    if (!refused.empty()) return usage_error(refused);
    args.resize(1);
    args.insert(args.end(), rest.begin(), rest.end());
  } else if (first != "-h" && first != "--help" && first != "--version") {
    // llama-cli style, `qrt -m MODEL -p TEXT`: the command is missing, not the flag.
    return usage_error("no command before '" + first + "' (e.g. qrt run " + first + " ...); the commands are: " +
                       command_list());
  }

  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0: let CLI11 print them. Anything else is
    // a usage error: one line naming what was wrong, then where to look, exit 2.
    if (e.get_exit_code() == 0) return app.exit(e);
    if (dynamic_cast<const CLI::ExcludesError*>(&e) && std::string(e.what()).rfind("MODEL excludes", 0) == 0)
      return usage_error("the model is given twice: as MODEL and with -m; give it once");
    return usage_error(e.what());
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
    const std::string hint = e.kind() == qrt::ErrorKind::Device && std::string(e.what()).find("is not available") !=
                                                                        std::string::npos
                                 ? device_hint(first)
                                 : "";
    return fail(e.what() + hint, e.kind() == qrt::ErrorKind::InvalidInput ? 2 : 1);
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
