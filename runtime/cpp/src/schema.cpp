#include "schema.h"

#include <cmath>
#include <regex>
#include <set>

#include "error.h"
#include "utf8.h"

namespace tinyllm {
namespace {

const std::set<std::string> kIgnored = {"title", "description", "$schema", "$id", "$comment", "examples", "default"};

bool has_type(const json::Value& v, const std::string& type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "boolean") return v.is_bool();
  if (type == "null") return v.is_null();
  if (type == "number") return v.is_number();
  if (type == "integer") {
    if (!v.is_number()) return false;
    double d = v.as_number("");
    return v.is_integer() || (std::isfinite(d) && d == std::floor(d));
  }
  fail(TINYLLM_UNSUPPORTED, "a task's JSON schema names the type \"" + type + "\", which is not a JSON Schema type");
}

size_t code_points(const std::string& s) {
  size_t n = 0, pos = 0;
  while (pos < s.size()) utf8::next(s, pos), ++n;
  return n;
}

bool equal(const json::Value& a, const json::Value& b) {
  if (a.is_number() && b.is_number()) return a.as_number("") == b.as_number("");
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case json::Type::Null: return true;
    case json::Type::Bool: return a.as_bool("") == b.as_bool("");
    case json::Type::String: return a.as_string("") == b.as_string("");
    case json::Type::Array: {
      const auto &x = a.as_array(""), &y = b.as_array("");
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equal(x[i], y[i])) return false;
      return true;
    }
    default: {
      const auto &x = a.as_object(""), &y = b.as_object("");
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x) {
        const json::Value* w = b.find(k);
        if (!w || !equal(v, *w)) return false;
      }
      return true;
    }
  }
}

std::string check(const json::Value& schema, const json::Value& v, const std::string& at);

std::string check_object(const json::Value& schema, const json::Value& v, const std::string& at) {
  if (!v.is_object()) return "";
  const json::Value* props = schema.find("properties");
  if (const json::Value* req = schema.find("required"))
    for (const json::Value& name : req->as_array("required"))
      if (!v.find(name.as_string("required"))) return "'" + name.as_string("") + "' is a required property" + at;
  for (const auto& [key, item] : v.as_object("")) {
    const json::Value* sub = props ? props->find(key) : nullptr;
    if (sub) {
      std::string problem = check(*sub, item, at);
      if (!problem.empty()) return problem;
      continue;
    }
    const json::Value* extra = schema.find("additionalProperties");
    if (extra && extra->is_bool() && !extra->as_bool(""))
      return "additional property '" + key + "' is not allowed" + at;
    if (extra && extra->is_object()) {
      std::string problem = check(*extra, item, at);
      if (!problem.empty()) return problem;
    }
  }
  return "";
}

std::string check_value(const std::string& key, const json::Value& rule, const json::Value& v, const std::string& at) {
  if (key == "minLength" || key == "maxLength") {
    if (!v.is_string()) return "";
    size_t n = code_points(v.as_string("")), limit = static_cast<size_t>(rule.as_int(key));
    if (key == "minLength" ? n < limit : n > limit) return "the string is too " + std::string(key == "minLength" ? "short" : "long") + at;
  } else if (key == "pattern") {
    if (v.is_string() && !std::regex_search(v.as_string(""), std::regex(rule.as_string(key), std::regex::ECMAScript)))
      return "'" + v.as_string("") + "' does not match '" + rule.as_string(key) + "'" + at;
  } else if (key == "minimum" || key == "maximum" || key == "exclusiveMinimum" || key == "exclusiveMaximum") {
    if (!v.is_number()) return "";
    double x = v.as_number(""), limit = rule.as_number(key);
    bool bad = key == "minimum" ? x < limit : key == "maximum" ? x > limit : key == "exclusiveMinimum" ? x <= limit : x >= limit;
    if (bad) return "the number is outside " + key + at;
  } else if (key == "minItems" || key == "maxItems") {
    if (!v.is_array()) return "";
    size_t n = v.as_array("").size(), limit = static_cast<size_t>(rule.as_int(key));
    if (key == "minItems" ? n < limit : n > limit) return "the array has too " + std::string(key == "minItems" ? "few" : "many") + " items" + at;
  } else if (key == "items") {
    if (!v.is_array()) return "";
    for (const json::Value& item : v.as_array("")) {
      std::string problem = check(rule, item, at);
      if (!problem.empty()) return problem;
    }
  } else if (key == "enum" || key == "const") {
    bool found = false;
    if (key == "const") found = equal(rule, v);
    else
      for (const json::Value& option : rule.as_array(key)) found |= equal(option, v);
    if (!found) return "the value is not " + std::string(key == "enum" ? "one of the enum" : "the const") + at;
  } else if (!kIgnored.count(key) && key != "properties" && key != "required" && key != "additionalProperties" &&
             key != "type") {
    fail(TINYLLM_UNSUPPORTED, "a task's JSON schema uses \"" + key +
                                  "\", a keyword this library does not check; verify that task's outputs in Python");
  }
  return "";
}

std::string check(const json::Value& schema, const json::Value& v, const std::string& at) {
  if (schema.is_bool()) return schema.as_bool("") ? "" : "False schema does not allow the value" + at;
  if (const json::Value* type = schema.find("type")) {
    bool ok = false;
    if (type->is_array())
      for (const json::Value& t : type->as_array("type")) ok |= has_type(v, t.as_string("type"));
    else
      ok = has_type(v, type->as_string("type"));
    if (!ok) return "the value is not of type " + (type->is_string() ? "'" + type->as_string("") + "'" : "the listed types") + at;
  }
  for (const auto& [key, rule] : schema.as_object("schema")) {
    std::string problem = check_value(key, rule, v, at);
    if (!problem.empty()) return problem;
  }
  return check_object(schema, v, at);
}

}  // namespace

std::string schema_error(const json::Value& schema, const json::Value& value) {
  if (schema.is_null()) return "";
  return check(schema, value, "");
}

}  // namespace tinyllm
