// The task table of an engine (engines/NAME/tasks.json, written by export: see
// sdk/tasktable.py): each task's prompt text around its input, adapter, output limit,
// label token sequences and JSON root, plus the stop tokens every request shares. A
// route (runtime/router.py) is what one request needs: its prompt ids, the task prefix
// they share, and the decoding rules of the task.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "json.h"

namespace tinyllm {

// A task whose model calls tools (the table's "tools", sdk/tasktable.py tool_entry):
// the tools it may call, in order, with each one's argument schema (null when the tool
// was not registered at export) and time limit; "answer" or "context".
struct ToolUse {
  std::vector<std::string> names;
  std::string result = "answer";
  int64_t max_call_tokens = 96;
  std::map<std::string, json::Value> schemas;
  std::map<std::string, double> timeouts;
};

struct TaskEntry {
  std::string name, before, after, output, json_root;
  std::string adapter;  // "" = base model
  bool exact = false, first_line = false;
  std::vector<int32_t> prefix_ids;
  int64_t max_new_tokens = 0;
  std::vector<std::string> labels;
  std::vector<std::vector<int32_t>> label_ids;
  // How outputs are checked (absent in tables exported before they were written).
  bool has_checks = false;
  std::vector<std::string> verifiers;
  json::Value schema;
  // A task with tools: its tools (has_tools), or a tool task of a table written before
  // tables carried tools (legacy_tools: the manifest says it has tools; refused).
  bool has_tools = false, legacy_tools = false;
  ToolUse tools;
};

class TaskTable {
 public:
  // Parse tasks.json text; `where` names the file in errors (TINYLLM_BUNDLE_ERROR).
  static TaskTable parse(const std::string& text, const std::string& where);
  // Mark the tasks the manifest gives tools that the table has no tools for.
  void mark_legacy_tools(const std::vector<std::string>& tool_tasks);

  // The task called `name`; an unknown name (TINYLLM_NOT_FOUND) lists the tasks served.
  const TaskEntry& task(const std::string& name) const;
  const std::map<std::string, TaskEntry>& tasks() const { return tasks_; }
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }

 private:
  std::map<std::string, TaskEntry> tasks_;
  std::vector<int32_t> stop_ids_;
};

// Length of the longest common prefix of two id sequences.
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b);

}  // namespace tinyllm
