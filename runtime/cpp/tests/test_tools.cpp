// Tool calls: the call constraint (the cases of tests/runtime/test_callconstraint.py),
// the argument check (sdk/argschema.py's messages) and running a call through a C
// callback: a result, a failure, a missing callback, bad arguments, a cut call, a call
// past its time limit.
#include <chrono>
#include <string>
#include <thread>

#include "callconstraint.h"
#include "check.h"
#include "constraints.h"
#include "forcing.h"
#include "json.h"
#include "tools.h"

using namespace tinyllm;

namespace {

const char* kKinds = R"({"type": "object", "properties": {
  "s": {"type": "string", "maxLength": 5}, "e": {"type": "string", "enum": ["red", "green"]},
  "i": {"type": "integer"}, "n": {"type": "number"}, "b": {"type": "boolean"}}})";
const char* kCalc = R"({"type": "object", "properties": {"expression": {"type": "string", "maxLength": 512}},
  "required": ["expression"]})";

ToolUse uses(double timeout = 5.0) {
  ToolUse t;
  t.names = {"calculator", "kinds"};
  t.schemas["calculator"] = json::parse(kCalc, "calc");
  t.schemas["kinds"] = json::parse(kKinds, "kinds");
  t.timeouts["calculator"] = timeout;
  t.timeouts["kinds"] = timeout;
  return t;
}

CallPrefix fresh() { return CallPrefix(CallShape::of(uses(), "t")); }

int echo(void* user, const char* arguments, size_t len, tinyllm_tool_reply* reply) {
  reply->text = std::string(static_cast<const char*>(user)) + std::string(arguments, len);
  return 0;
}

int broken(void*, const char*, size_t, tinyllm_tool_reply* reply) {
  reply->text = "ValueError: the tool broke";
  return 1;
}

int slow(void*, const char*, size_t, tinyllm_tool_reply* reply) {
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  reply->text = "late";
  return 0;
}

TaskEntry task(double timeout = 5.0) {
  TaskEntry e;
  e.name = "t";
  e.has_tools = true;
  e.tools = uses(timeout);
  return e;
}

}  // namespace

TEST_CASE(call_prefixes_of_valid_calls_pass) {
  for (std::string call : {R"({"name": "calculator", "arguments": {"expression": "8*c - 20 = 4"}})",
                           R"({"name": "kinds", "arguments": {"s": "a\nb", "e": "green", "i": -120, "n": 0.25, "b": false}})",
                           R"({"name": "kinds", "arguments": {"s": "", "e": "red", "i": 0, "n": -3, "b": true}})",
                           R"({"name": "kinds", "arguments": {"s": "é😀", "e": "red", "i": 0, "n": -3, "b": true}})"}) {
    for (size_t end = 0; end <= call.size(); ++end) {
      if (end < call.size() && (static_cast<unsigned char>(call[end]) & 0xC0) == 0x80) continue;  // inside a character
      CallPrefix state = fresh();
      CHECK(state.feed(call.substr(0, end)));
      CHECK_EQ(state.complete(), end == call.size());
    }
  }
}

TEST_CASE(call_text_outside_the_calls_fails) {
  for (std::string text : {R"({"name": "eval", )", R"({"name": "calculator", "arguments": {"code": )",
                           R"({"name":"calculator")", R"({"name": "kinds", "arguments": {"s": "123456)",
                           R"({"name": "kinds", "arguments": {"s": "", "e": "blue)",
                           R"({"name": "kinds", "arguments": {"s": "", "e": "red", "i": 1.5)",
                           R"({"name": "kinds", "arguments": {"s": "", "e": "red", "i": 01)",
                           R"({"name": "kinds", "arguments": {"s": "", "e": "red", "i": 1, "n": 1e5)",
                           R"({"name": "kinds", "arguments": {"s": "", "e": "red", "i": 1, "n": 1, "b": nul)",
                           R"({"name": "calculator", "arguments": {"expression": "a\x)",
                           R"({"name": "calculator", "arguments": {"expression": "1"}} )",
                           "{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1\n"}) {
    CallPrefix state = fresh();
    if (state.feed(text)) check::report(__FILE__, __LINE__, "accepted " + text);
  }
}

TEST_CASE(call_long_strings_take_the_fast_path_and_tool_sets_differ) {
  ToolUse calc = uses();
  calc.names = {"calculator"};
  CallPrefix state(CallShape::of(calc, "t"));
  CHECK(state.feed(R"({"name": "calculator", "arguments": {"expression": ")"));
  CHECK(state.in_string());  // room for any plain token
  CHECK(state.feed(std::string(448, '1')) && !state.in_string());  // 64 characters left
  CHECK(!state.feed(std::string(65, '1')));
  CHECK(CallPrefix(CallShape::of(calc, "t")).signature() != fresh().signature());
  ToolUse bad = uses();
  bad.schemas.erase("kinds");
  CHECK_FAILS(CallShape::of(bad, "t"), TINYLLM_BUNDLE_ERROR, "tool \"kinds\" has no argument schema");
}

TEST_CASE(argument_errors_read_as_pythons) {
  json::Value schema = json::parse(kKinds, "k");
  auto error = [&](const char* args) { return argument_error(schema, json::parse(args, "a")); };
  CHECK_EQ(error(R"({"s": "ab", "e": "red", "i": 3, "n": 2.5, "b": true})"), "");
  CHECK_EQ(error(R"({"i": 3.0})"), "");  // an integral float is an integer, as in Python
  CHECK_EQ(error("[1]"), "the arguments must be a JSON object, got list");
  CHECK_EQ(error(R"({"zz": 1})"), "unexpected argument 'zz'");
  CHECK_EQ(error(R"({"i": true})"), "'i' must be a integer, got bool");
  CHECK_EQ(error(R"({"s": "123456"})"), "'s' has 6 characters (max 5)");
  CHECK_EQ(error(R"({"e": "blue"})"), "'e' must be one of ['red', 'green']");
  CHECK_EQ(error(R"({"n": 1e999})"), "'n' must be a finite number");
  json::Value calc = json::parse(kCalc, "c");
  CHECK_EQ(argument_error(calc, json::parse("{}", "a")), "missing required argument 'expression'");
}

TEST_CASE(calls_run_through_callbacks) {
  ToolRegistry tools;
  TaskEntry t = task();
  std::string call = R"({"name": "calculator", "arguments": {"expression": "2 + 3"}})";
  ToolCall missing = execute_call(t, call, false, 9, tools, -1);
  CHECK(!missing.ok && missing.error.find("no callback is registered") != std::string::npos);
  char prefix[] = "got ";
  tools.add("calculator", {&echo, prefix});
  ToolCall ok = execute_call(t, call, false, 9, tools, -1);
  CHECK(ok.ok && ok.name == "calculator" && ok.error.empty());
  CHECK_EQ(ok.arguments, R"({"expression": "2 + 3"})");
  CHECK_EQ(ok.result, R"(got {"expression": "2 + 3"})");
  CHECK_EQ(execute_call(t, call, true, 9, tools, -1).error,
           "the call was cut at 9 tokens before it was complete; raise the task's tools.max_call_tokens");
  CHECK(execute_call(t, "{\"name\": ", false, 2, tools, -1).error.rfind("the tool call is not valid JSON", 0) == 0);
  CHECK_EQ(execute_call(t, R"({"name": 1, "arguments": {}})", false, 2, tools, -1).error,
           "a tool call's name must be a string");
  CHECK_EQ(execute_call(t, R"({"name": "x", "arguments": {}, "more": 1})", false, 2, tools, -1).error,
           "a tool call is {\"name\": ..., \"arguments\": {...}}");
  CHECK_EQ(execute_call(t, R"({"name": "eval", "arguments": {}})", false, 2, tools, -1).error,
           "the call names 'eval', not one of the tools ['calculator', 'kinds']");
  CHECK_EQ(execute_call(t, R"({"name": "calculator", "arguments": {"expression": 5}})", false, 2, tools, -1).error,
           "tool calculator: bad arguments: 'expression' must be a string, got int");
  tools.add("calculator", {&broken, nullptr});
  ToolCall failed = execute_call(t, call, false, 9, tools, -1);
  CHECK(!failed.ok && failed.result.empty());
  CHECK_EQ(failed.error, "tool calculator: ValueError: the tool broke");
}

int counted(void* user, const char*, size_t, tinyllm_tool_reply* reply) {
  ++*static_cast<int*>(user);
  reply->text = "ran";
  return 0;
}

TEST_CASE(checked_calls_never_run_their_tool) {
  ToolRegistry tools;
  int runs = 0;
  tools.add("calculator", {&counted, &runs});
  TaskEntry t = task();
  ToolCall checked = check_call(t, R"({"name": "calculator", "arguments": {"expression": "2 + 3"}})", false, 9);
  CHECK(!checked.ok && checked.error.empty() && checked.result.empty());
  CHECK(checked.name == "calculator" && checked.arguments == R"({"expression": "2 + 3"})");
  ToolCall bad = check_call(t, R"({"name": "calculator", "arguments": {"expression": 5}})", false, 2);
  CHECK_EQ(bad.error, "tool calculator: bad arguments: 'expression' must be a string, got int");
  CHECK(bad.name == "calculator" && bad.arguments == R"({"expression": 5})");  // parsed, then refused
  CHECK_EQ(check_call(t, R"({"name": "eval", "arguments": {}})", false, 2).error,
           "the call names 'eval', not one of the tools ['calculator', 'kinds']");
  CHECK(check_call(t, "{\"name\": ", true, 2).error.rfind("the call was cut at 2 tokens", 0) == 0);
  CHECK_EQ(runs, 0);
  CHECK(execute_call(t, R"({"name": "calculator", "arguments": {"expression": "1"}})", false, 9, tools, -1).ok);
  CHECK_EQ(runs, 1);  // the same call executed runs it
}

TEST_CASE(calls_past_their_time_limit_fail_after_the_callback_returns) {
  ToolRegistry tools;
  tools.add("calculator", {&slow, nullptr});
  std::string call = R"({"name": "calculator", "arguments": {"expression": "1"}})";
  ToolCall late = execute_call(task(0.01), call, false, 9, tools, -1);
  CHECK(!late.ok && late.result.empty() && late.seconds >= 0.05);
  CHECK(late.error.rfind("tool calculator: no result within 0.01 s (the callback ran", 0) == 0);
  ToolCall deadline = execute_call(task(5.0), call, false, 9, tools, 0.02);  // the deadline cuts the limit
  CHECK(deadline.error.rfind("tool calculator: no result within 0.02 s", 0) == 0);
  CHECK(execute_call(task(5.0), call, false, 9, tools, -1).ok);
}

TEST_CASE(json_dump_reads_as_python_json_dumps) {
  json::Value v = json::parse(R"({"a": [1, 2.5, true, null], "b": "q\"\\\n\u0001é", "c": 3.0, "d": {}})", "d");
  CHECK_EQ(json::dump(v), R"({"a": [1, 2.5, true, null], "b": "q\"\\\n\u0001é", "c": 3.0, "d": {}})");
}

TEST_CASE(calls_force_their_fixed_text_as_python) {
  // The strings runtime/callconstraint.py CallPrefix.forced() gives for the same tools.
  auto forced = [](const std::string& fed) {
    CallPrefix p = fresh();
    CHECK(p.feed(fed));
    return p.forced();
  };
  CHECK_EQ(forced(""), "{\"name\": \"");  // two tools: their common start
  CHECK_EQ(forced("{\"name\": \"c"), "alculator\", \"arguments\": {\"expression\": \"");
  CHECK_EQ(forced("{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2"), "");  // free text
  CHECK_EQ(forced("{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2\""), "}}");
  CHECK_EQ(forced("{\"name\": \"kinds\", \"arguments\": {\"s\": \"ab\""), ", \"e\": \"");  // an enum's common start
  CHECK_EQ(forced("{\"name\": \"kinds\", \"arguments\": {\"s\": \"ab\", \"e\": \"r"), "ed\", \"i\": ");
  CHECK_EQ(forced("{\"name\": \"kinds\", \"arguments\": {\"s\": \"ab\", \"e\": \"red\", \"i\": 1"), "");
  JsonPrefix literal;
  CHECK(literal.feed("[t"));
  CHECK_EQ(literal.forced(), "rue");
  CHECK_EQ(JsonPrefix().forced(), "");
}

TEST_CASE(patterned_calls_force_what_the_pattern_forces_as_python) {
  // The strings CallPrefix.forced() gives in tests/runtime/test_callconstraint.py.
  ToolUse date;
  date.names = {"date_parser"};
  date.schemas["date_parser"] = json::parse(R"({"type": "object", "properties": {
    "reference": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$"},
    "expression": {"type": "string", "minLength": 1, "maxLength": 200}}})", "date");
  CallPrefix p(CallShape::of(date, "t"));
  CHECK_EQ(p.forced(), "{\"name\": \"date_parser\", \"arguments\": {\"reference\": \"");  // then a digit
  CHECK(p.feed("{\"name\": \"date_parser\", \"arguments\": {\"reference\": \"2026"));
  CHECK_EQ(p.forced(), "-");
  CHECK(p.feed("-01-01 1") && p.forced().empty());  // the pattern leaves a digit free
  CHECK(p.feed("0") && p.forced() == ":");
  CHECK(p.feed(":0") && p.forced().empty());
  CHECK(p.feed("0") && p.forced() == "\", \"expression\": \"");  // the pattern is done
  struct Case {
    const char *pattern, *room, *fed, *forced;
  };
  const Case cases[] = {
      {"^ab$", "", "", "ab\"}}"},  // the pattern's characters, its closing quote, the end
      {"^/x$", "", "", ""},        // "/" may also be written "\/"
      {"^/x$", "", "\\/", "x\"}}"},
      {"^/x$", "", "\\", ""},            // inside an escape
      {"^a\\\\\\\\$", "", "", "a"},      // a backslash is written only as "\\"
      {"^a\\\\n?$", "", "a", ""},        // the quote, or a newline written "\n"
      {"^a\\\\n?$", "", "a\\n", "\"}}"},
      {"^ab(cd)?$", ", \"maxLength\": 3", "ab", "\"}}"},  // "cd" does not fit
      {"^ab(cd)?$", ", \"maxLength\": 4", "ab", ""},
      {"^a\\\"?$", ", \"maxLength\": 1", "a", "\"}}"},  // an escaped quote does not fit
      {"^a\\\"?$", "", "a", ""},
  };
  for (const Case& c : cases) {
    ToolUse one;
    one.names = {"p"};
    one.schemas["p"] = json::parse(std::string(R"({"type": "object", "properties": {"v": {"type": "string", "pattern": ")") +
                                       c.pattern + "\"" + c.room + "}}}",
                                   "p");
    CallPrefix state(CallShape::of(one, "t"));
    CHECK(state.feed(std::string("{\"name\": \"p\", \"arguments\": {\"v\": \"") + c.fed));
    CHECK_EQ(state.forced(), std::string(c.forced));
  }
}

TEST_CASE(forced_drafts_keep_only_tokens_the_constraint_allows) {
  std::vector<std::string> vocab = {"{\"", "name", "\": \"", "calculator", "\", \"arguments\": {\"", "expression",
                                    "3", "2", "\"", "}", "", "{"};
  const int32_t eos = 10;
  JsonTokens tokens(vocab, eos);
  auto longest_match = [&](const std::string& text) {
    std::vector<int32_t> ids;
    for (size_t pos = 0; pos < text.size();) {
      int32_t best = -1;
      for (size_t i = 0; i < vocab.size(); ++i)
        if (!vocab[i].empty() && text.compare(pos, vocab[i].size(), vocab[i]) == 0 &&
            (best < 0 || vocab[i].size() > vocab[static_cast<size_t>(best)].size()))
          best = static_cast<int32_t>(i);
      if (best < 0) return ids;
      ids.push_back(best);
      pos += vocab[static_cast<size_t>(best)].size();
    }
    return ids;
  };
  auto text_of = [&](int32_t id) { return vocab[static_cast<size_t>(id)]; };
  ToolUse calc = uses();
  calc.names = {"calculator"};
  CallPrefix state(CallShape::of(calc, "t"));
  Forcing forcing(longest_match, text_of);
  CHECK((forcing.draft(state, 20, tokens) == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 2}));
  CHECK((forcing.draft(state, 3, tokens) == std::vector<int32_t>{0, 1, 2}));  // the limit
  CHECK(state.forced() == "{\"name\": \"calculator\", \"arguments\": {\"expression\": \"");  // not changed
  CHECK(state.feed("{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2\""));
  CHECK((forcing.draft(state, 20, tokens) == std::vector<int32_t>{9, 9}));  // "}}", then complete: no eos
  // A tokenizer whose split the constraint refuses drafts nothing (a choice follows).
  Forcing wrong([](const std::string&) { return std::vector<int32_t>{7}; }, text_of);
  CHECK(wrong.draft(CallPrefix(CallShape::of(calc, "t")), 20, tokens).empty());
}
