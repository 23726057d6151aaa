// Patterns in the call constraint: the subset's answers (the tables of
// tests/runtime/test_charpattern.py, which checks them against Python's re), its refusals,
// and the same allowed tokens and forced text as Python's constraint in every state of the
// shared vectors (callvectors.json, written by tests/runtime/callvectors.py).
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "callconstraint.h"
#include "charpattern.h"
#include "check.h"
#include "constraints.h"
#include "json.h"
#include "utf8.h"

using namespace tinyllm;

namespace {

const char* kDate = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$";

bool matches(const std::string& pattern, const std::string& text) {
  CharPattern p(pattern);
  CharPattern::States states = p.start();
  size_t pos = 0;
  while (pos < text.size()) {
    states = p.step(states, utf8::next(text, pos));
    if (states.empty()) return false;
  }
  return p.accepts(states);
}

// Bit i of a hex mask (as Python writes f"{mask:x}").
bool bit(const std::string& hex, size_t i) {
  size_t digit = i / 4;
  if (digit >= hex.size()) return false;
  char c = hex[hex.size() - 1 - digit];
  int v = c <= '9' ? c - '0' : c - 'a' + 10;
  return (v >> (i % 4)) & 1;
}

}  // namespace

TEST_CASE(pattern_subset_answers_as_re_search) {
  struct Case {
    const char* pattern;
    const char* text;
    bool match;
  };
  for (const Case& c : std::vector<Case>{
           {kDate, "2026-01-01 10:00", true},      {kDate, "2026-01-01 10:0", false},
           {kDate, "12026-01-01 10:00", false},    {kDate, "tomorrow at 5pm", false},
           {"^a.c$", "abc", true},                 {"^a.c$", "a\nc", false},
           {R"(^\d+(\.\d{1,2})?$)", "12.50", true}, {R"(^\d+(\.\d{1,2})?$)", "12.505", false},
           {R"(^[^0-9\-]+$)", "é", true},          {R"(^[^0-9\-]+$)", "a-b", false},
           {R"(^\w+@\w+\.(com|org)$)", "a_1@x.com", true}, {R"(^\w+@\w+\.(com|org)$)", "a@x.net", false},
           {"^x{2,}$", "xxxxx", true},             {"^x{2,}$", "x", false},
           {"^x{0,2}y$", "xxy", true},             {"^x{0,2}y$", "xxxy", false},
           {"^(?:ab|a)(?:bc|c)$", "abc", true},    {"^(?:ab|a)(?:bc|c)$", "abbc", true},
           {"^(?:ab|a)(?:bc|c)$", "ab", false},    {R"(^\\\.\$\^\/$)", "\\.$^/", true},
           {"^(a*)*b$", "aaab", true},             {"^(a*)*b$", "aaa", false},
           {"^ab|cd$", "xxcd", true},              {"^ab|cd$", "cdxx", false},
           {"[0-9]{3}", "a123b", true},            {"[0-9]{3}", "12", false},
           {"end$", "the end", true},              {"end$", "end.", false},
           {"^\\d$", "\xd9\xa3", false},           {"^.$", "\r", false},  // stricter than re here
       }) {
    if (matches(c.pattern, c.text) != c.match)
      check::report(__FILE__, __LINE__, std::string(c.pattern) + " on " + c.text);
  }
}

TEST_CASE(pattern_outside_the_subset_is_refused) {
  for (const char* p : {"(ab", "[a-", "a{3,1}", "[z-a]", "*a", "a**", "a*?", "a{,3}", "a{2000}", "(a{200}){200}",
                        "a^b", "a$b", "(^a)", R"(\bword)", R"((a)\1)", "(?=a)", R"([^\d])", R"(\D)", "[]a]", "a]",
                        "{"}) {
    try {
      CharPattern pattern(p);
      check::report(__FILE__, __LINE__, std::string("accepted ") + p);
    } catch (const LibError& e) {
      CHECK_EQ(e.status(), TINYLLM_UNSUPPORTED);
    }
  }
}

TEST_CASE(pattern_need_and_forced_character) {
  CharPattern date(kDate);
  CHECK_EQ(date.least(date.start()), size_t{16});
  CHECK_EQ(date.reach(), size_t{16});
  CHECK_EQ(date.only(date.start()), CharPattern::kSeveral);
  CharPattern::States states = date.start();
  for (char c : std::string("2026")) states = date.step(states, static_cast<uint32_t>(c));
  CHECK_EQ(date.only(states), int64_t{'-'});
  CHECK(date.step(states, 'x').empty());
}

TEST_CASE(pattern_calls_allow_the_tokens_and_force_the_text_python_does_in_every_state) {
  std::ifstream in(std::string(TINYLLM_TESTS_DIR) + "/callvectors.json");
  CHECK(in.good());
  std::stringstream text;
  text << in.rdbuf();
  json::Value data = json::parse(text.str(), "callvectors.json");
  ToolUse use;
  for (const json::Value& tool : data.at("tools", "v").as_array("tools")) {
    const std::string& name = tool.at("name", "v").as_string("name");
    use.names.push_back(name);
    use.schemas[name] = tool.at("parameters", "v");
    use.timeouts[name] = 5.0;
  }
  std::vector<std::string> vocab;
  for (const json::Value& t : data.at("vocab", "v").as_array("vocab")) vocab.push_back(t.as_string("vocab"));
  auto shape = CallShape::of(use, "vectors");
  JsonTokens tokens(vocab, -1);
  size_t states = 0, wrong = 0, wrong_forced = 0;
  for (const json::Value& walk : data.at("walks", "v").as_array("walks")) {
    const auto& ids = walk.at("tokens", "v").as_array("tokens");
    const std::string& complete = walk.at("complete", "v").as_string("complete");
    const auto& masks = walk.at("allowed", "v").as_array("allowed");
    const auto& forced = walk.at("forced", "v").as_array("forced");
    CHECK_EQ(forced.size(), masks.size());
    CallPrefix state(shape);
    for (size_t step = 0; step < masks.size(); ++step, ++states) {
      const std::string& mask = masks[step].as_string("mask");
      std::vector<int32_t> want;
      for (size_t i = 0; i < vocab.size(); ++i)
        if (bit(mask, i)) want.push_back(static_cast<int32_t>(i));
      if (tokens.allowed(state) != want || state.complete() != (complete[step] == '1')) ++wrong;
      if (state.forced() != forced[step].as_string("forced")) ++wrong_forced;
      if (step < ids.size()) CHECK(state.feed(vocab[static_cast<size_t>(ids[step].as_int("token"))]));
    }
  }
  CHECK(states > 1000);
  CHECK_EQ(wrong, size_t{0});
  CHECK_EQ(wrong_forced, size_t{0});
}
