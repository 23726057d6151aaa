// A small JSON reader (RFC 8259): objects keep their key order, numbers keep whether
// they were written as integers. Enough for manifest.json, engine.json, tokenizer.json
// and safetensors headers; errors say where the text went wrong.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tinyllm/tinyllm.h"

namespace tinyllm::json {

enum class Type { Null, Bool, Number, String, Array, Object };

class Value {
 public:
  Value() = default;
  static Value boolean(bool b);
  static Value number(double d, bool integral, int64_t i);
  static Value string(std::string s);
  static Value array(std::vector<Value> items);
  // An object; a key given twice sets *duplicate (when given) to that key's index.
  static Value object(std::vector<std::pair<std::string, Value>> members,
                      size_t* duplicate = nullptr);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_integer() const { return type_ == Type::Number && integral_; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Typed access; `where` names the value in the error message of a type mismatch.
  bool as_bool(const std::string& where) const;
  double as_number(const std::string& where) const;
  int64_t as_int(const std::string& where) const;
  const std::string& as_string(const std::string& where) const;
  const std::vector<Value>& as_array(const std::string& where) const;
  const std::vector<std::pair<std::string, Value>>& as_object(const std::string& where) const;

  // Object lookup: nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;
  // Object lookup that fails naming `where` and the key when absent.
  const Value& at(std::string_view key, const std::string& where) const;

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  bool integral_ = false;
  double number_ = 0;
  int64_t int_ = 0;
  std::string string_;
  std::vector<Value> array_;
  std::vector<std::pair<std::string, Value>> object_;
  std::shared_ptr<std::map<std::string, size_t, std::less<>>> index_;
};

const char* type_name(Type type);

// `text` as a JSON string literal, escaped as Python's json.dumps(..., ensure_ascii=False).
std::string quote(std::string_view text);
// A value as JSON text, in json.dumps(..., ensure_ascii=False)'s layout (", " and ": ").
std::string dump(const Value& value);

// Parse a whole document; throws tinyllm::LibError with `status`, naming `where` and the
// byte offset. Duplicate keys in an object are an error.
Value parse(std::string_view text, const std::string& where,
            tinyllm_status status = TINYLLM_BUNDLE_ERROR);

}  // namespace tinyllm::json
