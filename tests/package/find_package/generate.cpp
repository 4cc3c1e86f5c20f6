// Generates a few tokens with the C++ embedding API of an installed qrt.
//   generate_cpp MODEL
#include <qrt/error.h>
#include <qrt/session.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: generate_cpp MODEL\n";
    return 2;
  }
  try {
    qrt::Session session(qrt::Model::open(argv[1]));
    const auto prompt = session.model().prompt_tokens("The capital of France is", /*chat=*/false);
    const qrt::GenerationResult r = session.generate(prompt, 8, {}, [](int32_t, const std::string& text) {
      std::cout << text << std::flush;
      return true;
    });
    std::cout << "\n" << r.tokens.size() << " tokens, stopped: " << r.stop_reason << "\n";
    return r.tokens.empty() ? 1 : 0;
  } catch (const qrt::Error& e) {
    std::cerr << "generate_cpp: error: " << e.what() << "\n";
    return 1;
  }
}
