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
};

class TaskTable {
 public:
  // Parse tasks.json text; `where` names the file in errors (TINYLLM_BUNDLE_ERROR).
  static TaskTable parse(const std::string& text, const std::string& where);

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
