#include "callconstraint.h"

#include <algorithm>

#include "error.h"
#include "json.h"
#include "tools.h"
#include "utf8.h"

namespace tinyllm {
namespace {

constexpr size_t kMaxDigits = 18;
constexpr size_t kPlainRoom = 64;  // string room beyond which every plain token fits

std::u32string code_points(const std::string& text) {
  std::u32string out;
  size_t pos = 0;
  while (pos < text.size()) out.push_back(utf8::next(text, pos));
  return out;
}

// The longest common prefix of `texts` (none: "").
std::u32string common(const std::vector<std::u32string>& texts) {
  if (texts.empty()) return {};
  std::u32string out = texts[0];
  for (const std::u32string& t : texts) {
    size_t n = 0;
    while (n < out.size() && n < t.size() && out[n] == t[n]) ++n;
    out.resize(n);
  }
  return out;
}

CallShape::Seg lit(const std::string& text) { return {CallShape::Kind::Lit, {code_points(text)}, 0}; }

void value_segments(const json::Value& prop, const std::string& where, std::vector<CallShape::Seg>& segs) {
  const std::string& type = prop.at("type", where).as_string(where + ": type");
  if (type == "boolean") {
    segs.push_back({CallShape::Kind::Choice, {code_points("true"), code_points("false")}, 0});
  } else if (type == "string" && prop.find("enum")) {
    CallShape::Seg choice{CallShape::Kind::Choice, {}, 0};
    for (const json::Value& v : prop.find("enum")->as_array(where + ": enum"))
      choice.texts.push_back(code_points(json::quote(v.as_string(where + ": enum"))));
    if (choice.texts.empty()) fail(TINYLLM_BUNDLE_ERROR, where + ": enum is empty");
    segs.push_back(std::move(choice));
  } else if (type == "string") {
    const json::Value* limit = prop.find("maxLength");
    int64_t n = limit ? limit->as_int(where + ": maxLength") : static_cast<int64_t>(kMaxArgumentChars);
    if (n < 0) fail(TINYLLM_BUNDLE_ERROR, where + ": maxLength must be >= 0");
    segs.push_back(lit("\""));
    segs.push_back({CallShape::Kind::String, {}, static_cast<size_t>(n)});
    if (const json::Value* pattern = prop.find("pattern")) {
      try {
        segs.back().pattern = std::make_shared<CharPattern>(pattern->as_string(where + ": pattern"));
      } catch (const LibError& e) {
        if (e.status() != TINYLLM_UNSUPPORTED) throw;  // outside the subset: free, checked after the call
      }
    }
  } else if (type == "integer" || type == "number") {
    segs.push_back({type == "integer" ? CallShape::Kind::Integer : CallShape::Kind::Number, {}, 0});
  } else {
    fail(TINYLLM_BUNDLE_ERROR, where + ": type \"" + type + "\" is not a tool argument type (string, integer, number, boolean)");
  }
}

}  // namespace

std::shared_ptr<const CallShape> CallShape::of(const ToolUse& use, const std::string& task) {
  auto shape = std::make_shared<CallShape>();
  for (const std::string& name : use.names) {
    std::string where = "task \"" + task + "\": tool \"" + name + "\"";
    auto it = use.schemas.find(name);
    if (it == use.schemas.end())
      fail(TINYLLM_BUNDLE_ERROR, where + " has no argument schema in the task table (it was not registered when the "
                                         "engine was exported); register it in Python and re-export the engine");
    std::vector<Seg> segs{lit("{\"name\": " + json::quote(name) + ", \"arguments\": {")};
    size_t i = 0;
    for (const auto& [key, prop] : it->second.at("properties", where).as_object(where + ": properties")) {
      segs.push_back(lit((i++ ? ", " : "") + json::quote(key) + ": "));
      value_segments(prop, where + ": property \"" + key + "\"", segs);
    }
    segs.push_back(lit("}}"));
    shape->key += json::quote(name) + json::dump(it->second) + "\n";
    shape->tools.push_back(std::move(segs));
  }
  return shape;
}

CallPrefix::CallPrefix(std::shared_ptr<const CallShape> shape) : shape_(std::move(shape)) {
  for (size_t i = 0; i < shape_->tools.size(); ++i) threads_.push_back(enter(i, 0));
}

CallPrefix::Thread CallPrefix::enter(size_t tool, size_t seg) const {
  Thread t;
  t.tool = tool;
  t.seg = seg;
  const auto& segs = shape_->tools[tool];
  if (seg < segs.size() && segs[seg].pattern) {
    t.alive = segs[seg].pattern->start();
  } else if (seg < segs.size()) {
    for (uint32_t i = 0; i < segs[seg].texts.size(); ++i) t.alive.push_back(i);
  }
  return t;
}

bool CallPrefix::feed(const std::string& text) {
  size_t pos = 0;
  std::vector<Thread> next;
  while (pos < text.size()) {
    uint32_t ch = utf8::next(text, pos);
    next.clear();
    for (const Thread& t : threads_) step(t, ch, next);
    threads_.swap(next);
    if (threads_.empty()) return false;
  }
  return true;
}

bool CallPrefix::complete() const {
  return std::any_of(threads_.begin(), threads_.end(),
                     [&](const Thread& t) { return t.seg == shape_->tools[t.tool].size(); });
}

bool CallPrefix::in_string() const {
  if (complete() || threads_.size() != 1) return false;
  const Thread& t = threads_[0];
  const CallShape::Seg& s = shape_->tools[t.tool][t.seg];
  return s.kind == CallShape::Kind::String && !s.pattern && t.sub.empty() && s.limit > t.pos && s.limit - t.pos > kPlainRoom;
}

std::string CallPrefix::forced() const {
  std::vector<std::u32string> texts;
  for (const Thread& t : threads_) texts.push_back(forced(t));
  std::string out;
  for (char32_t ch : common(texts)) utf8::append(out, ch);
  return out;
}

std::u32string CallPrefix::forced(const Thread& thread) const {
  const auto& segs = shape_->tools[thread.tool];
  Thread t = thread;
  std::u32string out;
  std::vector<Thread> next;
  while (t.seg < segs.size()) {
    const CallShape::Seg& s = segs[t.seg];
    if (s.kind == CallShape::Kind::Lit || s.kind == CallShape::Kind::Choice) {
      std::vector<std::u32string> rests;
      for (uint32_t i : t.alive) rests.push_back(s.texts[i].substr(std::min(t.pos, s.texts[i].size())));
      out += common(rests);
      if (t.alive.size() > 1) break;  // a choice: its common start only
      t = enter(t.tool, t.seg + 1);
      continue;
    }
    char32_t ch = s.kind == CallShape::Kind::String ? pattern_forced(t, s) : 0;
    if (!ch) break;
    out.push_back(ch);
    next.clear();
    step(t, ch, next);  // one thread: pattern_forced checked that the character moves
    if (next.empty()) break;
    t = std::move(next[0]);
  }
  return out;
}

// Python's _pattern_forced: the one character a patterned string goes on with (0 where
// the model has a choice): the closing quote where the pattern matches and no character
// could follow, or a character written as itself (never one a JSON escape also writes,
// as "/" may be written "\/", nor a control character, written only as an escape).
char32_t CallPrefix::pattern_forced(const Thread& t, const CallShape::Seg& s) const {
  if (!s.pattern || !t.sub.empty()) return 0;
  int64_t ch = s.pattern->only(t.alive);
  std::vector<Thread> probe;
  if (ch >= 0 && !decoded(t, s, static_cast<uint32_t>(ch), probe)) ch = CharPattern::kNone;  // no room for it
  if (s.pattern->accepts(t.alive)) return ch == CharPattern::kNone ? U'"' : 0;
  bool plain = ch >= ' ' && ch != '"' && ch != '\\' && ch != '/';
  return plain ? static_cast<char32_t>(ch) : 0;
}

std::string CallPrefix::signature() const {
  std::string sig = shape_->key;
  for (const Thread& t : threads_) {
    const auto& segs = shape_->tools[t.tool];
    size_t pos = t.pos;
    if (t.seg < segs.size() && segs[t.seg].kind == CallShape::Kind::String) {  // room, bucketed
      const CallShape::Seg& s = segs[t.seg];
      size_t cap = kPlainRoom + 1 + (s.pattern ? s.pattern->reach() : 0);
      pos = std::min(s.limit - std::min(t.pos, s.limit), cap);
    }
    sig += std::to_string(t.tool) + ',' + std::to_string(t.seg) + ',' + std::to_string(pos) + ',';
    for (uint32_t a : t.alive) sig += std::to_string(a) + ' ';
    sig += t.sub + '|';
  }
  return sig;
}

void CallPrefix::step(const Thread& t, uint32_t ch, std::vector<Thread>& out) const {
  const auto& segs = shape_->tools[t.tool];
  if (t.seg == segs.size()) return;
  const CallShape::Seg& s = segs[t.seg];
  if (s.kind == CallShape::Kind::Lit || s.kind == CallShape::Kind::Choice) {
    Thread n = t;
    n.alive.clear();
    bool ends = false;
    for (uint32_t i : t.alive) {
      const std::u32string& text = s.texts[i];
      if (t.pos < text.size() && text[t.pos] == ch) {
        n.alive.push_back(i);
        ends |= text.size() == t.pos + 1;
      }
    }
    if (n.alive.empty()) return;
    if (ends) {  // the texts of a choice never nest
      out.push_back(enter(t.tool, t.seg + 1));
      return;
    }
    ++n.pos;
    out.push_back(std::move(n));
    return;
  }
  if (s.kind == CallShape::Kind::String) {
    string(t, s, ch, out);
    return;
  }
  number(t, s, ch, out);
}

// One character of a string (Python's _string): escapes decode before the pattern sees them.
void CallPrefix::string(const Thread& t, const CallShape::Seg& s, uint32_t ch, std::vector<Thread>& out) const {
  static const std::u32string kEscapes = U"\"\\/bfnrt", kDecoded = U"\"\\/\b\f\n\r\t";
  if (t.sub == "escape") {
    size_t at = kEscapes.find(static_cast<char32_t>(ch));
    if (at != std::u32string::npos) decoded(t, s, kDecoded[at], out);
    return;
  }
  if (ch == '"') {
    if (!s.pattern || s.pattern->accepts(t.alive)) out.push_back(enter(t.tool, t.seg + 1));
    return;
  }
  if (ch < ' ' || t.pos >= s.limit) return;
  if (ch != '\\') {
    decoded(t, s, ch, out);
    return;
  }
  if (s.pattern) {  // no escaped character could follow
    std::vector<Thread> probe;
    bool any = false;
    for (char32_t c : kDecoded) any = any || decoded(t, s, c, probe);
    if (!any) return;
  }
  Thread n = t;
  n.sub = "escape";
  out.push_back(std::move(n));
}

// The string after one more decoded character, if the pattern and the room allow it.
bool CallPrefix::decoded(const Thread& t, const CallShape::Seg& s, uint32_t ch, std::vector<Thread>& out) const {
  Thread n = t;
  n.sub.clear();
  ++n.pos;
  if (s.pattern) {
    n.alive = s.pattern->step(t.alive, ch);
    if (n.alive.empty() || t.pos + 1 + s.pattern->least(n.alive) > s.limit) return false;
  }
  out.push_back(std::move(n));
  return true;
}

void CallPrefix::number(const Thread& t, const CallShape::Seg& s, uint32_t ch, std::vector<Thread>& out) const {
  size_t digits = 0;
  for (char c : t.sub) digits += c != '-' && c != '.';
  bool dot = t.sub.find('.') != std::string::npos;
  bool zero = digits == 1 && t.sub.back() == '0' && !dot;  // the number is "0" or "-0"
  if (ch == '-' && t.sub.empty()) {
    Thread n = t;
    ++n.pos;
    n.sub = "-";
    out.push_back(std::move(n));
    return;
  }
  if (ch >= '0' && ch <= '9' && digits < kMaxDigits) {
    if (zero) return;  // no leading zeros
    Thread n = t;
    ++n.pos;
    n.sub += static_cast<char>(ch);
    out.push_back(std::move(n));
    return;
  }
  if (ch == '.' && s.kind == CallShape::Kind::Number && digits && !dot) {
    Thread n = t;
    ++n.pos;
    n.sub += '.';
    out.push_back(std::move(n));
    return;
  }
  if (digits && t.sub.back() != '.') step(enter(t.tool, t.seg + 1), ch, out);  // the number ended
}

}  // namespace tinyllm
