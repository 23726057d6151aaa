#include "tasks.h"

#include <algorithm>

#include "error.h"

namespace tinyllm {
namespace {

std::vector<int32_t> ids_of(const json::Value& v, const std::string& where) {
  std::vector<int32_t> ids;
  for (const json::Value& x : v.as_array(where)) {
    int64_t id = x.as_int(where);
    if (id < 0 || id > INT32_MAX) fail(TINYLLM_BUNDLE_ERROR, where + ": token id " + std::to_string(id) + " is out of range");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

ToolUse parse_tools(const json::Value& raw, const std::string& where) {
  ToolUse t;
  for (const json::Value& v : raw.at("names", where).as_array(where + ": names")) t.names.push_back(v.as_string(where + ": names"));
  if (t.names.empty()) fail(TINYLLM_BUNDLE_ERROR, where + ": names is empty");
  t.result = raw.at("result", where).as_string(where + ": result");
  if (t.result != "answer" && t.result != "context")
    fail(TINYLLM_BUNDLE_ERROR, where + ": result is \"" + t.result + "\"; expected answer or context");
  t.max_call_tokens = raw.at("max_call_tokens", where).as_int(where + ": max_call_tokens");
  if (t.max_call_tokens < 1) fail(TINYLLM_BUNDLE_ERROR, where + ": max_call_tokens must be >= 1");
  for (const auto& [name, schema] : raw.at("schemas", where).as_object(where + ": schemas")) t.schemas[name] = schema;
  for (const auto& [name, limit] : raw.at("timeouts", where).as_object(where + ": timeouts"))
    t.timeouts[name] = limit.as_number(where + ": timeouts");
  return t;
}

TaskEntry parse_entry(const std::string& name, const json::Value& raw, const std::string& where) {
  TaskEntry e;
  e.name = name;
  auto str = [&](const char* key) { return raw.at(key, where).as_string(where + ": " + key); };
  e.before = str("before");
  e.after = str("after");
  e.output = str("output");
  e.json_root = str("json_root");
  const json::Value& adapter = raw.at("adapter", where);
  e.adapter = adapter.is_null() ? "" : adapter.as_string(where + ": adapter");
  e.exact = raw.at("exact", where).as_bool(where + ": exact");
  e.first_line = raw.at("first_line", where).as_bool(where + ": first_line");
  e.prefix_ids = ids_of(raw.at("prefix_ids", where), where + ": prefix_ids");
  e.max_new_tokens = raw.at("max_new_tokens", where).as_int(where + ": max_new_tokens");
  if (e.max_new_tokens < 1) fail(TINYLLM_BUNDLE_ERROR, where + ": max_new_tokens must be >= 1");
  for (const json::Value& v : raw.at("labels", where).as_array(where + ": labels"))
    e.labels.push_back(v.as_string(where + ": labels"));
  for (const json::Value& v : raw.at("label_ids", where).as_array(where + ": label_ids"))
    e.label_ids.push_back(ids_of(v, where + ": label_ids"));
  if (e.output != "label" && e.output != "json" && e.output != "text")
    fail(TINYLLM_BUNDLE_ERROR, where + ": output is \"" + e.output + "\"; expected label, json or text");
  if (e.output == "label" && e.label_ids.size() != e.labels.size())
    fail(TINYLLM_BUNDLE_ERROR, where + ": label_ids does not match labels");
  // the longest label always fits (as Python's answer_budget; tables written before it kept
  // the task's own max_new_tokens, which can cut a label into an invalid answer)
  for (const auto& ids : e.label_ids)
    e.max_new_tokens = std::max(e.max_new_tokens, static_cast<int64_t>(ids.size()));
  if (const json::Value* v = raw.find("verifiers")) {
    e.has_checks = true;
    for (const json::Value& x : v->as_array(where + ": verifiers")) e.verifiers.push_back(x.as_string(where + ": verifiers"));
    if (const json::Value* s = raw.find("schema")) e.schema = *s;
  }
  if (const json::Value* t = raw.find("tools"); t != nullptr && !t->is_null()) {
    e.has_tools = true;
    e.tools = parse_tools(*t, where + ": tools");
  }
  return e;
}

}  // namespace

TaskTable TaskTable::parse(const std::string& text, const std::string& where) {
  json::Value j = json::parse(text, where);
  const json::Value& schema = j.at("schema", where);
  if (!schema.is_integer() || schema.as_int(where) != 1)
    fail(TINYLLM_BUNDLE_ERROR, where + ": task table schema is not 1, the one this library reads; re-export the engine");
  TaskTable table;
  table.stop_ids_ = ids_of(j.at("stop_ids", where), where + ": stop_ids");
  for (const auto& [name, raw] : j.at("tasks", where).as_object(where + ": tasks"))
    table.tasks_.emplace(name, parse_entry(name, raw, where + ": task \"" + name + "\""));
  return table;
}

void TaskTable::mark_legacy_tools(const std::vector<std::string>& tool_tasks) {
  for (const std::string& name : tool_tasks) {
    auto it = tasks_.find(name);
    if (it != tasks_.end() && !it->second.has_tools) it->second.legacy_tools = true;
  }
}

const TaskEntry& TaskTable::task(const std::string& name) const {
  auto it = tasks_.find(name);
  if (it != tasks_.end()) return it->second;
  std::string known;
  for (const auto& [n, e] : tasks_) known += (known.empty() ? "" : ", ") + n;
  fail(TINYLLM_NOT_FOUND, "unknown task \"" + name + "\"; this engine serves: " + (known.empty() ? "none" : known));
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace tinyllm
