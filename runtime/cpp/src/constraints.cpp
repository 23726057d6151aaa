#include "constraints.h"

#include "callconstraint.h"

#include <algorithm>

#include "utf8.h"

namespace tinyllm {
namespace {

// States of the number grammar -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?
enum Num { kNone = 0, kSign, kZero, kInt, kDot, kFrac, kExp, kExpSign, kExpDigits };
constexpr int kStart = -1;
constexpr int kMaxBlank = 16;

bool number_end(int s) { return s == kZero || s == kInt || s == kFrac || s == kExpDigits; }
bool is_digit(uint32_t ch) { return ch >= '0' && ch <= '9'; }
bool is_space(uint32_t ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

// Next number state, or kNone when `ch` cannot continue the number.
int number_step(int state, uint32_t ch) {
  bool digit = is_digit(ch);
  if (state == kStart && ch == '-') return kSign;
  if (state == kStart || state == kSign) return ch == '0' ? kZero : digit ? kInt : kNone;
  if ((state == kZero || state == kInt || state == kFrac) && (ch == 'e' || ch == 'E')) return kExp;
  if ((state == kZero || state == kInt) && ch == '.') return kDot;
  if (state == kExp && (ch == '+' || ch == '-')) return kExpSign;
  if (!digit) return kNone;
  switch (state) {
    case kInt: return kInt;
    case kDot: case kFrac: return kFrac;
    case kExp: case kExpSign: case kExpDigits: return kExpDigits;
    default: return kNone;
  }
}

bool plain(const std::string& text) {
  for (unsigned char c : text)
    if (c < 0x20 || c == '"' || c == '\\') return false;
  return true;
}

}  // namespace

LabelTrie::LabelTrie(const std::vector<std::vector<int32_t>>& sequences, int32_t eos) : nodes_(1), eos_(eos) {
  for (const auto& seq : sequences) {
    size_t node = 0;
    for (int32_t token : seq) {
      auto& kids = nodes_[node].children;
      auto it = std::find_if(kids.begin(), kids.end(), [&](const auto& c) { return c.first == token; });
      if (it != kids.end()) {
        node = it->second;
      } else {
        nodes_.emplace_back();
        nodes_[node].children.emplace_back(token, nodes_.size() - 1);
        node = nodes_.size() - 1;
      }
    }
    nodes_[node].end = true;
  }
}

std::vector<int32_t> LabelTrie::allowed(const std::vector<int32_t>& prefix) const {
  size_t node = 0;
  for (int32_t token : prefix) {
    const auto& kids = nodes_[node].children;
    auto it = std::find_if(kids.begin(), kids.end(), [&](const auto& c) { return c.first == token; });
    if (it == kids.end()) return {};  // off the trie: nothing follows
    node = it->second;
  }
  std::vector<int32_t> tokens;
  for (const auto& c : nodes_[node].children) tokens.push_back(c.first);
  if (nodes_[node].end && eos_ >= 0) tokens.push_back(eos_);
  return tokens;
}

bool LabelTrie::complete(const std::vector<int32_t>& prefix) const {
  std::vector<int32_t> tokens = allowed(prefix);
  return tokens.empty() || (tokens.size() == 1 && eos_ >= 0 && tokens[0] == eos_);
}

std::vector<int32_t> LabelTrie::forced_tail(const std::vector<int32_t>& prefix) const {
  std::vector<int32_t> walked = prefix, tail;
  while (!complete(walked)) {
    std::vector<int32_t> next = allowed(walked);
    if (next.size() != 1) return {};  // a choice ahead: the model makes it
    tail.push_back(next[0]);
    walked.push_back(next[0]);
  }
  return tail;
}

bool JsonPrefix::feed(const std::string& text) {
  size_t pos = 0;
  while (pos < text.size())
    if (!feed_char(utf8::next(text, pos))) return false;
  return true;
}

bool JsonPrefix::complete() const {
  return mode_ == Mode::Done || (stack_.empty() && mode_ == Mode::Number && number_end(number_));
}

std::string JsonPrefix::signature() const {
  std::string s;
  s += root_;
  s += stack_;
  s += '|';
  s += static_cast<char>('a' + static_cast<int>(mode_));
  s += key_ ? 'k' : '-';
  s += static_cast<char>('a' + number_);
  s += static_cast<char>('a' + hex_);
  s += static_cast<char>('a' + blank_);
  s += literal_;
  return s;
}

bool JsonPrefix::feed_char(uint32_t ch) {
  if (mode_ == Mode::String || mode_ == Mode::Escape || mode_ == Mode::Unicode) return string_char(ch);
  if (mode_ == Mode::Literal) {
    if (literal_.empty() || static_cast<uint32_t>(static_cast<unsigned char>(literal_[0])) != ch) return false;
    literal_.erase(0, 1);
    if (literal_.empty()) mode_ = after();
    return true;
  }
  if (mode_ == Mode::Number) {
    int next = number_step(number_, ch);
    if (next != kNone) {
      number_ = next;
      return true;
    }
    if (!number_end(number_)) return false;
    mode_ = after();
    return feed_char(ch);
  }
  if (is_space(ch)) return ++blank_ <= kMaxBlank;
  blank_ = 0;
  switch (mode_) {
    case Mode::Value:
    case Mode::ValueOrClose:
      if (mode_ == Mode::ValueOrClose && ch == ']') return close('[');
      return start_value(ch);
    case Mode::Key:
    case Mode::KeyOrClose:
      if (mode_ == Mode::KeyOrClose && ch == '}') return close('{');
      mode_ = Mode::String;
      key_ = true;
      return ch == '"';
    case Mode::Colon:
      mode_ = Mode::Value;
      return ch == ':';
    case Mode::After:
      if (ch == ',') {
        mode_ = stack_.back() == '{' ? Mode::Key : Mode::Value;
        return true;
      }
      return (ch == ']' || ch == '}') && close(ch == '}' ? '{' : '[');
    default:
      return false;  // done: only whitespace may follow
  }
}

bool JsonPrefix::string_char(uint32_t ch) {
  if (mode_ == Mode::Escape) {
    if (ch == 'u') {
      mode_ = Mode::Unicode;
      hex_ = 4;
      return true;
    }
    mode_ = Mode::String;
    return ch < 128 && std::string_view("\"\\/bfnrt").find(static_cast<char>(ch)) != std::string_view::npos;
  }
  if (mode_ == Mode::Unicode) {
    mode_ = --hex_ ? Mode::Unicode : Mode::String;
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
  }
  if (ch == '"') {
    mode_ = key_ ? Mode::Colon : after();
    key_ = false;
  } else if (ch == '\\') {
    mode_ = Mode::Escape;
  }
  return ch >= ' ';
}

bool JsonPrefix::start_value(uint32_t ch) {
  if (root_ && stack_.empty() && ch != static_cast<uint32_t>(root_)) return false;
  if (ch == '{' || ch == '[') {
    stack_ += static_cast<char>(ch);
    mode_ = ch == '{' ? Mode::KeyOrClose : Mode::ValueOrClose;
  } else if (ch == '"') {
    mode_ = Mode::String;
    key_ = false;
  } else if (ch == 't' || ch == 'f' || ch == 'n') {
    mode_ = Mode::Literal;
    literal_ = ch == 't' ? "rue" : ch == 'f' ? "alse" : "ull";
  } else if (ch == '-' || is_digit(ch)) {
    mode_ = Mode::Number;
    number_ = number_step(kStart, ch);
  } else {
    return false;
  }
  return true;
}

bool JsonPrefix::close(char kind) {
  if (stack_.empty() || stack_.back() != kind) return false;
  stack_.pop_back();
  mode_ = after();
  return true;
}

JsonTokens::JsonTokens(std::vector<std::string> texts, int32_t eos, size_t states)
    : texts_(std::move(texts)), eos_(eos), states_(states) {
  for (size_t i = 0; i < texts_.size(); ++i)
    if (!texts_[i].empty() && plain(texts_[i])) plain_.push_back(static_cast<int32_t>(i));
}

template <typename State>
const std::vector<int32_t>& JsonTokens::allowed(const State& state) {
  std::string key = state.signature();
  auto hit = cache_.find(key);
  if (hit != cache_.end()) {
    order_.splice(order_.end(), order_, hit->second.second);
    return hit->second.first;
  }
  std::vector<int32_t> found;
  bool string = state.in_string();
  for (size_t i = 0; i < texts_.size(); ++i) {
    const std::string& text = texts_[i];
    if (text.empty()) continue;
    if (string && plain(text)) {
      found.push_back(static_cast<int32_t>(i));
      continue;
    }
    State after = state;
    if (after.feed(text)) found.push_back(static_cast<int32_t>(i));
  }
  if (state.complete() && eos_ >= 0) found.push_back(eos_);
  std::sort(found.begin(), found.end());
  order_.push_back(key);
  auto& slot = cache_[key];
  slot = {std::move(found), std::prev(order_.end())};
  if (cache_.size() > states_) {
    cache_.erase(order_.front());
    order_.pop_front();
  }
  return cache_.at(key).first;
}

template const std::vector<int32_t>& JsonTokens::allowed(const JsonPrefix&);
template const std::vector<int32_t>& JsonTokens::allowed(const CallPrefix&);

int32_t best_allowed(const float* logits, size_t n, const std::vector<int32_t>& allowed) {
  int32_t best = -1;
  for (int32_t id : allowed)  // ascending: the first of equals wins, as numpy.argmax
    if (id >= 0 && static_cast<size_t>(id) < n && (best < 0 || logits[id] > logits[best])) best = id;
  return best;
}

}  // namespace tinyllm
