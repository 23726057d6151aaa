// A small regular-expression subset compiled to a Thompson NFA over code points, so the
// call constraint keeps a string argument to its schema's pattern character by character:
// the same machine as runtime/charpattern.py (the same subset, the same refusals, the same
// states built in the same order), so both runtimes allow the same tokens. The subset and
// the search semantics (a branch without ^ or $ is open at that end) are described there
// and in docs/tools.md.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tinyllm {

class CharPattern {
 public:
  using States = std::vector<uint32_t>;  // sorted char and match states (0 is the match)
  static constexpr size_t kMaxRepeat = 256;
  static constexpr size_t kMaxStates = 4096;
  static constexpr size_t kNever = size_t{1} << 30;

  // `source` is UTF-8. Throws LibError (TINYLLM_UNSUPPORTED) for a pattern outside the subset.
  explicit CharPattern(const std::string& source);
  const States& start() const { return start_; }
  // The states after `ch` (empty when no state moves on it).
  States step(const States& states, uint32_t ch) const;
  bool accepts(const States& states) const { return !states.empty() && states[0] == 0; }
  // The fewest characters that complete a match from `states`.
  size_t least(const States& states) const;
  size_t reach() const { return reach_; }  // the longest finite need of a state
  // The one character every move takes: kNone when none moves, kSeveral when more could.
  static constexpr int64_t kNone = -1, kSeveral = -2;
  int64_t only(const States& states) const;
  struct Node;  // a parsed pattern (charpattern.cpp)

 private:
  enum class Kind { Match, Char, Split };
  struct State {
    Kind kind = Kind::Match;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // Char: inclusive code point ranges
    bool negated = false;
    uint32_t out = 0, out2 = 0;  // Char: out; Split: both
  };
  uint32_t add(State state);
  uint32_t build(const Node& node, uint32_t next);
  States closure(std::vector<uint32_t> heads) const;
  void compute_need();

  std::string source_;
  std::vector<State> states_;
  States start_;
  std::vector<size_t> need_;
  size_t reach_ = 0;
};

}  // namespace tinyllm
