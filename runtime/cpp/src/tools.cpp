#include "tools.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <regex>

#include "error.h"
#include "utf8.h"

namespace tinyllm {
namespace {

using Clock = std::chrono::steady_clock;

size_t chars(const std::string& s) {
  size_t n = 0, pos = 0;
  while (pos < s.size()) utf8::next(s, pos), ++n;
  return n;
}

// The first `n` characters of valid UTF-8 text.
std::string head(const std::string& s, size_t n) {
  size_t pos = 0;
  while (pos < s.size() && n--) utf8::next(s, pos);
  return s.substr(0, pos);
}

// Python's repr() of a str, for messages that read as the Python runtime's.
std::string repr(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out += '\\';
    if (c == '\n') out += "\\n";
    else out += c;
  }
  return out + "'";
}

std::string py_type(const json::Value& v) {
  switch (v.type()) {
    case json::Type::Null: return "NoneType";
    case json::Type::Bool: return "bool";
    case json::Type::Number: return v.is_integer() ? "int" : "float";
    case json::Type::String: return "str";
    case json::Type::Array: return "list";
    case json::Type::Object: return "dict";
  }
  return "object";
}

std::string fmt(const char* format, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, x);
  return buf;
}

bool type_ok(const std::string& kind, const json::Value& v) {
  if (kind == "string") return v.is_string();
  if (kind == "boolean") return v.is_bool();
  if (!v.is_number()) return false;
  if (kind == "integer") {
    double d = v.as_number("");
    return v.is_integer() || (std::isfinite(d) && d == std::floor(d));
  }
  return true;
}

std::string scalar_error(const std::string& name, const json::Value& prop, const json::Value& v) {
  const std::string& kind = prop.at("type", "schema").as_string("type");
  std::string who = repr(name);
  if (!type_ok(kind, v)) return who + " must be a " + kind + ", got " + py_type(v);
  if (kind == "integer" || kind == "number") {
    double x = v.as_number("");
    if (!std::isfinite(x)) return who + " must be a finite number";
    if (const json::Value* lo = prop.find("minimum"); lo && x < lo->as_number("minimum"))
      return who + " must be >= " + json::dump(*lo);
    if (const json::Value* hi = prop.find("maximum"); hi && x > hi->as_number("maximum"))
      return who + " must be <= " + json::dump(*hi);
  }
  if (kind == "string") {
    const std::string& s = v.as_string("");
    const json::Value* max = prop.find("maxLength");
    size_t n = chars(s), limit = max ? static_cast<size_t>(max->as_int("maxLength")) : kMaxArgumentChars;
    if (n > limit) return who + " has " + std::to_string(n) + " characters (max " + std::to_string(limit) + ")";
    if (const json::Value* min = prop.find("minLength"); min && n < static_cast<size_t>(min->as_int("minLength")))
      return who + " needs at least " + std::to_string(min->as_int("")) + " characters";
    if (const json::Value* options = prop.find("enum")) {
      bool found = false;
      std::string listed;
      for (const json::Value& o : options->as_array("enum")) {
        found |= o.as_string("enum") == s;
        listed += (listed.empty() ? "" : ", ") + repr(o.as_string(""));
      }
      if (!found) return who + " must be one of [" + listed + "]";
    }
    if (const json::Value* pattern = prop.find("pattern")) {
      const std::string& p = pattern->as_string("pattern");
      try {
        if (!std::regex_search(s, std::regex(p, std::regex::ECMAScript))) return who + " does not match " + repr(p);
      } catch (const std::regex_error&) {
        return "the pattern " + repr(p) + " of " + who + " is not a regular expression this library reads";
      }
    }
  }
  return "";
}

// Run a registered callback: (ok, text).
std::pair<bool, std::string> run_callback(const ToolRegistry::Fn& fn, const std::string& arguments) {
  tinyllm_tool_reply reply;
  int rc;
  try {
    rc = fn.fn(fn.user, arguments.c_str(), arguments.size(), &reply);
  } catch (...) {  // a C++ callback that throws: its failure, not the library's
    return {false, "the callback threw an exception"};
  }
  if (rc != 0 && reply.text.empty()) reply.text = "the callback failed (it returned " + std::to_string(rc) + ")";
  return {rc == 0, std::move(reply.text)};
}

}  // namespace

void ToolRegistry::add(const std::string& name, Fn fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  fns_[name] = fn;
}

bool ToolRegistry::find(const std::string& name, Fn& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = fns_.find(name);
  if (it == fns_.end()) return false;
  out = it->second;
  return true;
}

std::string ToolRegistry::missing(const ToolUse& tools) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& name : tools.names)
    if (!fns_.count(name)) return name;
  return "";
}

std::string argument_error(const json::Value& schema, const json::Value& arguments) {
  if (!arguments.is_object()) return "the arguments must be a JSON object, got " + py_type(arguments);
  const json::Value& props = schema.at("properties", "schema");
  for (const auto& [key, value] : arguments.as_object(""))
    if (!props.find(key)) return "unexpected argument " + repr(head(key, 40));
  if (const json::Value* required = schema.find("required"))
    for (const json::Value& name : required->as_array("required"))
      if (!arguments.find(name.as_string("required"))) return "missing required argument " + repr(name.as_string(""));
  for (const auto& [key, value] : arguments.as_object("")) {
    std::string error = scalar_error(key, *props.find(key), value);
    if (!error.empty()) return error;
  }
  return "";
}

ToolCall check_call(const TaskEntry& task, const std::string& text, bool cut, size_t tokens) {
  auto start = Clock::now();
  ToolCall call;
  auto failed = [&](const std::string& error) {
    call.error = head(utf8::decode_lossy(error), 500);  // a JSON error may quote part of a character
    call.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return call;
  };
  if (cut)
    return failed("the call was cut at " + std::to_string(tokens) +
                  " tokens before it was complete; raise the task's tools.max_call_tokens");
  json::Value parsed;
  try {
    parsed = json::parse(text, "the tool call", TINYLLM_INVALID_ARGUMENT);
  } catch (const LibError& e) {
    std::string why = e.what();  // "the tool call: not valid JSON at byte N (...)"
    size_t at = why.find("at byte");
    return failed("the tool call is not valid JSON (" + (at == std::string::npos ? why : why.substr(at)) + ")");
  }
  const json::Value *name = parsed.find("name"), *arguments = parsed.find("arguments");
  if (!parsed.is_object() || parsed.as_object("").size() != 2 || !name || !arguments)
    return failed("a tool call is {\"name\": ..., \"arguments\": {...}}");
  if (!name->is_string()) return failed("a tool call's name must be a string");
  call.name = name->as_string("");
  call.arguments = json::dump(*arguments);
  const ToolUse& use = task.tools;
  auto schema = use.schemas.find(call.name);
  if (std::find(use.names.begin(), use.names.end(), call.name) == use.names.end() || schema == use.schemas.end()) {
    std::vector<std::string> sorted = use.names;
    std::sort(sorted.begin(), sorted.end());
    std::string listed;
    for (const std::string& n : sorted) listed += (listed.empty() ? "" : ", ") + repr(n);
    return failed("the call names " + repr(head(call.name, 40)) + ", not one of the tools [" + listed + "]");
  }
  std::string bad = argument_error(schema->second, *arguments);
  if (!bad.empty()) return failed("tool " + call.name + ": bad arguments: " + bad);
  call.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return call;
}

ToolCall execute_call(const TaskEntry& task, const std::string& text, bool cut, size_t tokens,
                      const ToolRegistry& tools, double left_s) {
  auto start = Clock::now();
  ToolCall call = check_call(task, text, cut, tokens);
  auto failed = [&](const std::string& error) {
    call.error = head(utf8::decode_lossy(error), 500);
    call.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return call;
  };
  if (!call.error.empty()) return call;
  ToolRegistry::Fn fn;
  if (!tools.find(call.name, fn))
    return failed("tool " + call.name + ": no callback is registered for it (tinyllm_engine_register_tool)");
  const ToolUse& use = task.tools;
  auto limit_at = use.timeouts.find(call.name);
  double limit = limit_at == use.timeouts.end() ? 5.0 : limit_at->second;
  if (left_s >= 0) limit = std::max(0.0, std::min(limit, left_s));
  auto began = Clock::now();
  auto [ok, reply] = run_callback(fn, call.arguments);
  double ran = std::chrono::duration<double>(Clock::now() - began).count();
  if (ran > limit)
    return failed("tool " + call.name + ": no result within " + fmt("%g", limit) + " s (the callback ran " +
                  fmt("%.3g", ran) + " s; a C callback cannot be interrupted, so it ran to its end and its "
                  "result was dropped)");
  if (!utf8::valid(reply)) return failed("tool " + call.name + ": its text is not valid UTF-8");
  if (!ok) return failed("tool " + call.name + ": " + reply);
  if (chars(reply) > kMaxResultChars)
    return failed("tool " + call.name + ": the result has " + std::to_string(chars(reply)) + " characters (max " +
                  std::to_string(kMaxResultChars) + ")");
  call.ok = true;
  call.result = std::move(reply);
  call.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return call;
}

}  // namespace tinyllm
