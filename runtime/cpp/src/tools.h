// Tools a task's model calls (sdk/tools.py, runtime/toolrunner.py execute): the C
// callbacks registered by name on an engine, the check of a call's arguments against its
// tool's schema (sdk/argschema.py's subset, with its messages), and running a call. A
// failed call never throws: its reason is in ToolCall::error, and the task's output is
// then invalid with it, as in Python.
#pragma once

#include <map>
#include <string>
#include <vector>
#include <mutex>
#include <string>

#include "json.h"
#include "tasks.h"
#include "tinyllm/tinyllm.h"

// What a tool callback answers (tinyllm_tool_reply_set copies its text here).
struct tinyllm_tool_reply {
  std::string text;
};

namespace tinyllm {

inline constexpr size_t kMaxResultChars = 4096;    // sdk/tools.py MAX_RESULT_CHARS
inline constexpr size_t kMaxArgumentChars = 4096;  // sdk/argschema.py MAX_STRING

// One executed call: what the model asked for and what came of it.
struct ToolCall {
  std::string name;
  std::string arguments;  // the arguments as JSON text ("" when the call did not parse)
  bool ok = false;        // `result` is the tool's text; else `error` says why not
  std::string result, error;
  double seconds = 0;  // the call's own time: parse, argument check and callback
};

// The callbacks registered on one engine, by tool name (thread-safe).
class ToolRegistry {
 public:
  struct Fn {
    tinyllm_tool_fn fn = nullptr;
    void* user = nullptr;
  };
  void add(const std::string& name, Fn fn);
  bool find(const std::string& name, Fn& out) const;
  // The first tool of `tools` with no callback ("" when all have one).
  std::string missing(const ToolUse& tools) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Fn> fns_;
};

// Why `arguments` break a tool's `schema`, or "" (sdk/argschema.py validation_error).
std::string argument_error(const json::Value& schema, const json::Value& arguments);

// Parse the call a row wrote and check it (runtime/router.py check_call): its name and
// arguments when it parses, and `error` when it is no valid call of one of the task's
// tools. `cut`, `tokens`: as for execute_call. Never runs the tool (`ok` stays false).
ToolCall check_call(const TaskEntry& task, const std::string& text, bool cut, size_t tokens);

// Parse and run the call a row wrote. `cut`: the row stopped at its token limit before
// the call was complete (`tokens` long); `left_s`: what is left of the request's
// deadline (< 0: none), which cuts the tool's time limit.
ToolCall execute_call(const TaskEntry& task, const std::string& text, bool cut, size_t tokens,
                      const ToolRegistry& tools, double left_s);

// What follows a call in the model's context for `result: context` (sdk/tools.py
// result_text).
inline std::string result_text(const std::string& result) { return "\nResult: " + result + "\n"; }

}  // namespace tinyllm
