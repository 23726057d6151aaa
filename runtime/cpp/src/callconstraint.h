// Constrained decoding of a tool call (runtime/callconstraint.py CallPrefix): the JSON
// constraint extended to the tools' argument schemas. A call is written as
// {"name": "<tool>", "arguments": {<every property, in the schema's order>}}; the name
// is one of the tools, the keys are forced, and each value follows its property's type:
// a string (escapes allowed, at most maxLength characters), a string of an enum, an
// integer, a number without exponent, or a boolean; a string's pattern in the subset of
// charpattern.h is followed on the decoded characters (outside it: free, as in Python).
// minLength, minimum and maximum are checked before the call (tools.h). Works on code points, as the Python machine works
// on str characters, so both runtimes allow the same tokens in the same states.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "charpattern.h"
#include "tasks.h"

namespace tinyllm {

// The call shapes of one task's tools, built once per task and shared by its states.
struct CallShape {
  enum class Kind { Lit, Choice, String, Integer, Number };
  struct Seg {
    Kind kind = Kind::Lit;
    std::vector<std::u32string> texts;  // Lit: one text; Choice: the options
    size_t limit = 0;                    // String: at most this many characters
    std::shared_ptr<const CharPattern> pattern = nullptr;  // String: followed (its states ride in alive)
  };
  std::string key;  // the tools' names and schemas: states of different sets never share answers
  std::vector<std::vector<Seg>> tools;  // each tool's segments, in writing order

  // Throws TINYLLM_BUNDLE_ERROR / TINYLLM_UNSUPPORTED for a schema outside the subset.
  static std::shared_ptr<const CallShape> of(const ToolUse& use, const std::string& task);
};

// Which text is still a prefix of a valid call of one of the shape's tools.
class CallPrefix {
 public:
  explicit CallPrefix(std::shared_ptr<const CallShape> shape);
  // Advance over UTF-8 `text`; false (and an undefined state) if it leaves the calls.
  bool feed(const std::string& text);
  bool complete() const;
  bool done() const { return complete(); }
  // Inside a long free string, where every plain token fits (Python's mode "string").
  bool in_string() const;
  std::string signature() const;
  // The text every valid continuation starts with: the rest of the fixed call text up
  // to the next place the model has a choice (a tool name among several, an enum, a free
  // value), running on through the characters a string's pattern forces (the "-" after
  // "2026" in a date, the closing quote once it matches); "" at a choice
  // (runtime/callconstraint.py forced).
  std::string forced() const;

 private:
  struct Thread {
    size_t tool = 0, seg = 0, pos = 0;
    std::vector<uint32_t> alive;  // options of a Choice (or the one Lit text) still matching;
                                  // a patterned String: the pattern's states
    std::string sub;              // "", "escape" in a string; the text so far of a number
  };
  Thread enter(size_t tool, size_t seg) const;
  std::u32string forced(const Thread& t) const;
  char32_t pattern_forced(const Thread& t, const CallShape::Seg& s) const;
  void step(const Thread& t, uint32_t ch, std::vector<Thread>& out) const;
  void string(const Thread& t, const CallShape::Seg& s, uint32_t ch, std::vector<Thread>& out) const;
  bool decoded(const Thread& t, const CallShape::Seg& s, uint32_t ch, std::vector<Thread>& out) const;
  void number(const Thread& t, const CallShape::Seg& s, uint32_t ch, std::vector<Thread>& out) const;

  std::shared_ptr<const CallShape> shape_;
  std::vector<Thread> threads_;
};

}  // namespace tinyllm
