// See model_argument.h.
#include "cli/model_argument.h"

#include <filesystem>

namespace qrt::cli {

void add_model_argument(CLI::App& app, std::string& model, const std::string& what_default, bool takes_prompt) {
  const std::string help = "Model: a Hugging Face folder or a .gguf file" +
                           (what_default.empty() ? std::string() : " (" + what_default + ")");
  CLI::Option* positional =
      app.add_option("MODEL", model, help)
          ->check(CLI::Validator(
              [takes_prompt](std::string& value) -> std::string {
                std::error_code ec;
                if (std::filesystem::exists(value, ec)) return "";
                return "'" + value + "' is not a file or folder here (MODEL is a Hugging Face folder or a .gguf file" +
                       (takes_prompt ? "; a prompt goes after -p)" : ")");
              },
              "PATH"));
  // Both at once would keep whichever CLI11 stored last: refused instead (main.cpp words it).
  CLI::Option* flag = app.add_option("-m,--model", model, "the same as MODEL (llama.cpp's spelling)");
  positional->excludes(flag);
}

}  // namespace qrt::cli
