// Stop strings over streamed text: finds the first occurrence of any of them and never lets a
// part of one reach the client. Text that could still be the start of a stop string is held
// back until the next piece shows whether it is; the rest is released at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qrt::serve {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops = {});

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string was found: `text` ends where it starts; nothing follows
  };
  // Adds the next piece of generated text.
  Result push(std::string_view piece);
  // Generation ended for another reason: the held-back text, which matched no stop string.
  std::string finish();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace qrt::serve
