#include "json.h"

#include <charconv>
#include <cmath>
#include <cstdint>

#include "error.h"
#include "utf8.h"

namespace tinyllm::json {
namespace {

constexpr int kMaxDepth = 256;
constexpr size_t kIndexAbove = 16;  // objects larger than this get a key index

class Parser {
 public:
  Parser(std::string_view text, const std::string& where, tinyllm_status status)
      : s_(text), where_(where), status_(status) {}

  Value document() {
    skip_space();
    Value v = value(0);
    skip_space();
    if (pos_ != s_.size()) error("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(status_, where_ + ": not valid JSON at byte " + std::to_string(pos_) + " (" + what + ")");
  }

  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  bool take(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  void expect_word(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) error("unknown literal");
    pos_ += word.size();
  }

  Value value(int depth) {
    if (depth > kMaxDepth) error("nested deeper than " + std::to_string(kMaxDepth));
    if (pos_ >= s_.size()) error("unexpected end of text");
    char c = s_[pos_];
    switch (c) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': return Value::string(string());
      case 't': expect_word("true"); return Value::boolean(true);
      case 'f': expect_word("false"); return Value::boolean(false);
      case 'n': expect_word("null"); return Value();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return number();
        error(std::string("unexpected character '") + c + "'");
    }
  }

  Value object(int depth) {
    ++pos_;
    std::vector<std::pair<std::string, Value>> members;
    skip_space();
    if (take('}')) return Value::object(std::move(members));
    while (true) {
      skip_space();
      if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key");
      std::string key = string();
      skip_space();
      if (!take(':')) error("expected ':' after a key");
      skip_space();
      Value v = value(depth + 1);
      members.emplace_back(std::move(key), std::move(v));
      skip_space();
      if (take(',')) continue;
      if (take('}')) break;
      error("expected ',' or '}' in an object");
    }
    size_t duplicate = SIZE_MAX;
    Value v = Value::object(std::move(members), &duplicate);
    if (duplicate != SIZE_MAX)
      error("the key \"" + v.as_object(where_)[duplicate].first + "\" appears twice in an object");
    return v;
  }

  Value array(int depth) {
    ++pos_;
    std::vector<Value> items;
    skip_space();
    if (take(']')) return Value::array(std::move(items));
    while (true) {
      skip_space();
      items.push_back(value(depth + 1));
      skip_space();
      if (take(',')) continue;
      if (take(']')) break;
      error("expected ',' or ']' in an array");
    }
    return Value::array(std::move(items));
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else error("bad hex digit in a \\u escape");
    }
    return v;
  }

  void escape(std::string& out) {
    if (pos_ >= s_.size()) error("truncated escape");
    char c = s_[pos_++];
    switch (c) {
      case '"': out += '"'; return;
      case '\\': out += '\\'; return;
      case '/': out += '/'; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': break;
      default: error("unknown escape");
    }
    uint32_t cp = hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) error("lone low surrogate in a \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (!(take('\\') && take('u'))) error("lone high surrogate in a \\u escape");
      uint32_t low = hex4();
      if (low < 0xDC00 || low > 0xDFFF) error("high surrogate not followed by a low one");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    utf8::append(out, cp);
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      size_t start = pos_;
      while (pos_ < s_.size() && s_[pos_] != '"' && s_[pos_] != '\\' &&
             static_cast<unsigned char>(s_[pos_]) >= 0x20)
        ++pos_;
      std::string_view run = s_.substr(start, pos_ - start);
      if (!utf8::valid(run)) {
        pos_ = start + utf8::valid_prefix(run);
        error("invalid UTF-8 in a string");
      }
      out.append(run);
      if (pos_ >= s_.size()) error("unterminated string");
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '\\') {
        ++pos_;
        escape(out);
        continue;
      }
      error("control character in a string");
    }
  }

  Value number() {
    size_t start = pos_;
    take('-');
    if (take('0')) {
    } else if (pos_ < s_.size() && s_[pos_] >= '1' && s_[pos_] <= '9') {
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    } else {
      error("bad number");
    }
    bool integral = true;
    if (take('.')) {
      integral = false;
      size_t digits = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == digits) error("bad number: no digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (!take('+')) take('-');
      size_t digits = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == digits) error("bad number: no digits in the exponent");
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    double d = 0;
    auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc::result_out_of_range) d = (*first == '-') ? -HUGE_VAL : HUGE_VAL;
    else if (r.ec != std::errc()) error("bad number");
    int64_t i = 0;
    if (integral) {
      auto ri = std::from_chars(first, last, i);
      if (ri.ec != std::errc()) integral = false;  // too large for int64: a double
    }
    return Value::number(d, integral, i);
  }

  std::string_view s_;
  const std::string& where_;
  tinyllm_status status_;
  size_t pos_ = 0;
};

[[noreturn]] void type_error(const std::string& where, const char* want, Type got) {
  fail(TINYLLM_BUNDLE_ERROR, where + ": expected " + want + ", got " + type_name(got));
}

}  // namespace

const char* type_name(Type type) {
  switch (type) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Number: return "a number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.bool_ = b;
  return v;
}

Value Value::number(double d, bool integral, int64_t i) {
  Value v;
  v.type_ = Type::Number;
  v.number_ = d;
  v.integral_ = integral;
  v.int_ = i;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::String;
  v.string_ = std::move(s);
  return v;
}

Value Value::array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::Array;
  v.array_ = std::move(items);
  return v;
}

Value Value::object(std::vector<std::pair<std::string, Value>> members, size_t* duplicate) {
  Value v;
  v.type_ = Type::Object;
  v.object_ = std::move(members);
  auto found = [&](size_t i) {
    if (duplicate != nullptr && *duplicate == SIZE_MAX) *duplicate = i;
  };
  if (v.object_.size() > kIndexAbove) {
    v.index_ = std::make_shared<std::map<std::string, size_t, std::less<>>>();
    for (size_t i = 0; i < v.object_.size(); ++i)
      if (!v.index_->emplace(v.object_[i].first, i).second) found(i);
  } else {
    for (size_t i = 0; i < v.object_.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (v.object_[i].first == v.object_[j].first) found(i);
  }
  return v;
}

bool Value::as_bool(const std::string& where) const {
  if (type_ != Type::Bool) type_error(where, "a boolean", type_);
  return bool_;
}

double Value::as_number(const std::string& where) const {
  if (type_ != Type::Number) type_error(where, "a number", type_);
  return number_;
}

int64_t Value::as_int(const std::string& where) const {
  if (type_ != Type::Number || !integral_) {
    if (type_ == Type::Number)
      fail(TINYLLM_BUNDLE_ERROR, where + ": expected an integer, got " + std::to_string(number_));
    type_error(where, "an integer", type_);
  }
  return int_;
}

const std::string& Value::as_string(const std::string& where) const {
  if (type_ != Type::String) type_error(where, "a string", type_);
  return string_;
}

const std::vector<Value>& Value::as_array(const std::string& where) const {
  if (type_ != Type::Array) type_error(where, "an array", type_);
  return array_;
}

const std::vector<std::pair<std::string, Value>>& Value::as_object(const std::string& where) const {
  if (type_ != Type::Object) type_error(where, "an object", type_);
  return object_;
}

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  if (index_) {
    auto it = index_->find(key);
    return it == index_->end() ? nullptr : &object_[it->second].second;
  }
  for (const auto& [k, v] : object_)
    if (k == key) return &v;
  return nullptr;
}

const Value& Value::at(std::string_view key, const std::string& where) const {
  if (type_ != Type::Object) type_error(where, "an object", type_);
  const Value* v = find(key);
  if (v == nullptr) fail(TINYLLM_BUNDLE_ERROR, where + ": missing key \"" + std::string(key) + "\"");
  return *v;
}

Value parse(std::string_view text, const std::string& where, tinyllm_status status) {
  return Parser(text, where, status).document();
}

std::string quote(std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string dump(const Value& v) {
  switch (v.type()) {
    case Type::Null: return "null";
    case Type::Bool: return v.as_bool("") ? "true" : "false";
    case Type::String: return quote(v.as_string(""));
    case Type::Number: {
      if (v.is_integer()) return std::to_string(v.as_int(""));
      double d = v.as_number("");
      if (std::isnan(d)) return "NaN";
      if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, d);  // the shortest text that reads back as d
      std::string text(buf, r.ptr);
      if (text.find_first_of(".e") == std::string::npos) text += ".0";  // a float stays a float
      return text;
    }
    case Type::Array: {
      std::string out = "[";
      for (const Value& item : v.as_array("")) out += (out.size() > 1 ? ", " : "") + dump(item);
      return out + "]";
    }
    case Type::Object: {
      std::string out = "{";
      for (const auto& [key, item] : v.as_object("")) out += (out.size() > 1 ? ", " : "") + quote(key) + ": " + dump(item);
      return out + "}";
    }
  }
  return "null";
}

}  // namespace tinyllm::json
