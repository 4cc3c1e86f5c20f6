// Stop strings over streamed text (serve/stop_matcher.h): the earliest stop string ends the text,
// and no part of one is ever released, however the text is cut into pieces.
#include <gtest/gtest.h>

#include "serve/stop_matcher.h"

namespace qrt::serve {
namespace {

// Feeds `pieces`; returns the released text and whether a stop string ended it.
std::pair<std::string, bool> run(const std::vector<std::string>& stops, const std::vector<std::string>& pieces,
                                 std::vector<std::string>* released = nullptr) {
  StopMatcher m(stops);
  std::string out;
  for (const std::string& p : pieces) {
    StopMatcher::Result r = m.push(p);
    out += r.text;
    if (released) released->push_back(r.text);
    if (r.stopped) return {out, true};
  }
  out += m.finish();
  return {out, false};
}

TEST(StopMatcher, CutsAtTheEarliestStopStringAcrossPieces) {
  EXPECT_EQ(run({"END"}, {"hello E", "N", "D world"}), std::make_pair(std::string("hello "), true));
  EXPECT_EQ(run({"xyz", "lo"}, {"hel", "lo xyz"}), std::make_pair(std::string("hel"), true));
  EXPECT_EQ(run({"\n\n"}, {"a\n", "\nb"}), std::make_pair(std::string("a"), true));
  EXPECT_EQ(run({"stop"}, {"stop"}), std::make_pair(std::string(""), true));
  EXPECT_EQ(run({"b", "ab"}, {"xab"}), std::make_pair(std::string("x"), true));  // the earliest start wins, not the first listed
}

TEST(StopMatcher, HoldsBackOnlyWhatCouldStillBecomeAStopString) {
  std::vector<std::string> released;
  auto r = run({"END"}, {"the E", "x", "EN", "!"}, &released);
  EXPECT_EQ(r, std::make_pair(std::string("the ExEN!"), false));
  // "E" could start "END": held; "Ex" cannot: released; "EN" held until "!" shows it is not "END".
  EXPECT_EQ(released, (std::vector<std::string>{"the ", "Ex", "", "EN!"}));
  released.clear();
  run({"<|end|>"}, {"a<", "|e", "nd", "|>"}, &released);
  EXPECT_EQ(released, (std::vector<std::string>{"a", "", "", ""}));
}

TEST(StopMatcher, WithoutStopStringsEverythingPassesAtOnce) {
  std::vector<std::string> released;
  EXPECT_EQ(run({}, {"a", "b"}, &released), std::make_pair(std::string("ab"), false));
  EXPECT_EQ(released, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(run({""}, {"a"}), std::make_pair(std::string("a"), false));  // empty strings are ignored
}

TEST(StopMatcher, NothingAfterAStop) {
  StopMatcher m({"x"});
  EXPECT_TRUE(m.push("axb").stopped);
  EXPECT_EQ(m.push("more").text, "");
  EXPECT_EQ(m.finish(), "");
}

}  // namespace
}  // namespace qrt::serve
