#include "charpattern.h"

#include <algorithm>
#include <deque>
#include <set>

#include "error.h"
#include "utf8.h"

namespace tinyllm {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

struct CharPattern::Node {
  enum class Kind { Set, Cat, Alt, Rep } kind = Kind::Cat;
  Ranges ranges;  // Set
  bool negated = false;
  std::vector<Node> items;  // Cat: in order; Alt: the branches; Rep: the body
  size_t lo = 0;
  int64_t hi = -1;  // Rep: -1 for no upper count
};

namespace {

using Node = CharPattern::Node;

const Ranges kDigit{{'0', '9'}};
const Ranges kWord{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
const Ranges kSpace{{9, 13}, {' ', ' '}};
const Ranges kDot{{10, 10}, {13, 13}, {0x2028, 0x2029}};  // negated: "." excludes these
const std::u32string kPunct = U"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const std::u32string kMeta = U"^$.|?*+()[]{}\\";

bool in(const std::u32string& set, uint32_t ch) { return ch && set.find(static_cast<char32_t>(ch)) != std::u32string::npos; }

Node set_node(Ranges ranges, bool negated) {
  Node n;
  n.kind = Node::Kind::Set;
  n.ranges = std::move(ranges);
  n.negated = negated;
  return n;
}

// Recursive descent over the pattern's code points (runtime/charpattern.py _Parser).
class Parser {
 public:
  Parser(const std::string& source, std::u32string text) : source_(source), text_(std::move(text)) {}

  struct Branch {
    bool start = false, end = false;
    Node node;
  };

  std::vector<Branch> top() {
    std::vector<Branch> branches;
    while (true) {
      Branch b;
      b.start = peek() == '^';
      i_ += b.start;
      b.node = concat();
      b.end = peek() == '$';
      i_ += b.end;
      branches.push_back(std::move(b));
      if (peek() == '|') {
        ++i_;
        continue;
      }
      if (i_ < text_.size()) fail_here("a character here is outside the subset");
      return branches;
    }
  }

 private:
  [[noreturn]] void fail_here(const std::string& why) const {
    fail(TINYLLM_UNSUPPORTED, "pattern \"" + source_ + "\": " + why + " (at " + std::to_string(i_) + ")");
  }
  uint32_t peek() const { return i_ < text_.size() ? text_[i_] : 0; }
  bool more() const { return i_ < text_.size(); }

  Node alt() {
    Node first = concat();
    if (peek() != '|') return first;
    Node n;
    n.kind = Node::Kind::Alt;
    n.items.push_back(std::move(first));
    while (peek() == '|') {
      ++i_;
      n.items.push_back(concat());
    }
    return n;
  }

  Node concat() {
    Node n;
    while (more() && peek() != '|' && peek() != ')' && peek() != '$') n.items.push_back(repeat());
    return n;
  }

  Node repeat() {
    Node body = atom();
    uint32_t ch = peek();
    Node n;
    n.kind = Node::Kind::Rep;
    if (more() && (ch == '?' || ch == '*' || ch == '+')) {
      ++i_;
      n.lo = ch == '+';
      n.hi = ch == '?' ? 1 : -1;
    } else if (more() && ch == '{') {
      counts(n);
    } else {
      return body;
    }
    if (more() && (peek() == '?' || peek() == '*' || peek() == '+' || peek() == '{'))
      fail_here("a quantifier after a quantifier is outside the subset");
    n.items.push_back(std::move(body));
    return n;
  }

  size_t number() {
    size_t start = i_, value = 0;
    while (more() && peek() >= '0' && peek() <= '9') {
      value = std::min(value * 10 + (peek() - '0'), CharPattern::kMaxRepeat + 1);
      ++i_;
    }
    if (start == i_) fail_here("a count is missing");
    if (value > CharPattern::kMaxRepeat) fail_here("a count is over " + std::to_string(CharPattern::kMaxRepeat));
    return value;
  }

  void counts(Node& n) {
    ++i_;  // "{"
    n.lo = number();
    n.hi = static_cast<int64_t>(n.lo);
    if (peek() == ',') {
      ++i_;
      n.hi = more() && peek() == '}' ? -1 : static_cast<int64_t>(number());
    }
    if (!more() || peek() != '}') fail_here("a count is not closed with '}'");
    ++i_;
    if (n.hi >= 0 && static_cast<size_t>(n.hi) < n.lo) fail_here("a count counts down");
  }

  Node atom() {
    uint32_t ch = peek();
    ++i_;
    if (ch == '(') {
      if (more() && peek() == '?') {
        if (i_ + 1 >= text_.size() || text_[i_ + 1] != ':') fail_here("only (?: ) of the (? groups is in the subset");
        i_ += 2;
      }
      Node n = alt();
      if (!more() || peek() != ')') fail_here("a group is not closed");
      ++i_;
      return n;
    }
    if (ch == '[') return klass();
    if (ch == '.') return set_node(kDot, true);
    if (ch == '\\') return set_node(escape(false), false);
    if (in(kMeta, ch)) fail_here("a metacharacter here is outside the subset");
    return set_node({{ch, ch}}, false);
  }

  Ranges escape(bool negated) {
    uint32_t ch = more() ? peek() : 0;
    ++i_;
    if (ch == 'd' || ch == 'w' || ch == 's') {
      if (negated) fail_here("\\d, \\w, \\s in a negated class are outside the subset");  // Python's are wider
      return ch == 'd' ? kDigit : ch == 'w' ? kWord : kSpace;
    }
    const std::u32string controls = U"ntrfv", decoded = U"\n\t\r\f\v";
    if (size_t at = controls.find(static_cast<char32_t>(ch)); ch && at != std::u32string::npos)
      return {{decoded[at], decoded[at]}};
    if (in(kPunct, ch)) return {{ch, ch}};
    fail_here("an escape is outside the subset");
  }

  Node klass() {
    bool negated = more() && peek() == '^';
    i_ += negated;
    if (more() && peek() == ']') fail_here("a class starting with ']' is outside the subset");
    Ranges ranges;
    while (!more() || peek() != ']') {
      Ranges lo = member(negated);
      if (more() && peek() == '-' && i_ + 1 < text_.size() && text_[i_ + 1] != ']') {
        ++i_;
        Ranges hi = member(negated);
        if (lo.size() != 1 || hi.size() != 1 || lo[0].first != lo[0].second || hi[0].first != hi[0].second)
          fail_here("a range bound is a class");
        if (hi[0].first < lo[0].first) fail_here("a range runs backwards");
        ranges.push_back({lo[0].first, hi[0].first});
      } else {
        ranges.insert(ranges.end(), lo.begin(), lo.end());
      }
    }
    ++i_;
    return set_node(std::move(ranges), negated);
  }

  Ranges member(bool negated) {
    if (!more()) fail_here("a class is not closed");
    uint32_t ch = peek();
    ++i_;
    if (ch == '\\') return escape(negated);
    if (ch == '[') fail_here("'[' inside a class is outside the subset");
    return {{ch, ch}};
  }

  const std::string& source_;
  std::u32string text_;
  size_t i_ = 0;
};

std::u32string code_points(const std::string& text) {
  std::u32string out;
  size_t pos = 0;
  while (pos < text.size()) out.push_back(utf8::next(text, pos));
  return out;
}

}  // namespace

CharPattern::CharPattern(const std::string& source) : source_(source) {
  states_.push_back(State{});  // 0: the match
  std::vector<Parser::Branch> branches = Parser(source, code_points(source)).top();
  std::vector<uint32_t> heads;
  for (Parser::Branch& b : branches) {  // a branch open at an end: any characters there
    Node anything;
    anything.kind = Node::Kind::Rep;
    anything.items.push_back(set_node({}, true));
    Node cat;
    if (!b.start) cat.items.push_back(anything);
    cat.items.push_back(std::move(b.node));
    if (!b.end) cat.items.push_back(anything);
    heads.push_back(build(cat, 0));
  }
  start_ = closure(std::move(heads));
  compute_need();
}

uint32_t CharPattern::add(State state) {
  if (states_.size() >= kMaxStates)
    fail(TINYLLM_UNSUPPORTED, "pattern \"" + source_ + "\": over " + std::to_string(kMaxStates) + " NFA states");
  states_.push_back(std::move(state));
  return static_cast<uint32_t>(states_.size() - 1);
}

// The state that matches `node` and then goes on at `next` (built backwards, in the order
// runtime/charpattern.py builds, so both refuse the same patterns for size).
uint32_t CharPattern::build(const Node& node, uint32_t next) {
  switch (node.kind) {
    case Node::Kind::Set:
      return add({Kind::Char, node.ranges, node.negated, next, 0});
    case Node::Kind::Cat:
      for (auto it = node.items.rbegin(); it != node.items.rend(); ++it) next = build(*it, next);
      return next;
    case Node::Kind::Alt: {  // every head first, then split(h0, split(h1, ...)) inside out
      std::vector<uint32_t> heads;
      for (const Node& branch : node.items) heads.push_back(build(branch, next));
      uint32_t tail = heads.back();
      for (size_t i = heads.size() - 1; i-- > 0;) tail = add({Kind::Split, {}, false, heads[i], tail});
      return tail;
    }
    case Node::Kind::Rep: {
      const Node& body = node.items[0];
      uint32_t tail = next;
      if (node.hi < 0) {  // the loop: body, then back to the split
        uint32_t loop = add({Kind::Split, {}, false, 0, next});
        uint32_t head = build(body, loop);
        states_[loop].out = head;
        tail = loop;
      } else {  // body{0,hi-lo} as nested options, each able to leave for next
        for (size_t i = 0; i < static_cast<size_t>(node.hi) - node.lo; ++i) {
          uint32_t head = build(body, tail);
          tail = add({Kind::Split, {}, false, head, next});
        }
      }
      for (size_t i = 0; i < node.lo; ++i) tail = build(body, tail);
      return tail;
    }
  }
  return next;
}

CharPattern::States CharPattern::closure(std::vector<uint32_t> todo) const {
  std::set<uint32_t> seen, out;
  while (!todo.empty()) {
    uint32_t s = todo.back();
    todo.pop_back();
    if (!seen.insert(s).second) continue;
    if (states_[s].kind == Kind::Split) {
      todo.push_back(states_[s].out);
      todo.push_back(states_[s].out2);
    } else {
      out.insert(s);
    }
  }
  return States(out.begin(), out.end());
}

// The fewest characters from each state to the match (0-1 BFS over reversed edges).
void CharPattern::compute_need() {
  std::vector<std::vector<std::pair<uint32_t, size_t>>> back(states_.size());
  for (uint32_t s = 0; s < states_.size(); ++s) {
    const State& st = states_[s];
    if (st.kind == Kind::Char) back[st.out].push_back({s, 1});
    if (st.kind == Kind::Split) {
      back[st.out].push_back({s, 0});
      back[st.out2].push_back({s, 0});
    }
  }
  need_.assign(states_.size(), kNever);
  need_[0] = 0;
  std::deque<uint32_t> todo{0};
  while (!todo.empty()) {
    uint32_t s = todo.front();
    todo.pop_front();
    for (auto [p, w] : back[s]) {
      if (need_[s] + w >= need_[p]) continue;
      need_[p] = need_[s] + w;
      if (w) todo.push_back(p);
      else todo.push_front(p);
    }
  }
  for (size_t n : need_)
    if (n < kNever) reach_ = std::max(reach_, n);
}

CharPattern::States CharPattern::step(const States& states, uint32_t ch) const {
  std::vector<uint32_t> heads;
  for (uint32_t s : states) {
    const State& st = states_[s];
    if (st.kind != Kind::Char) continue;
    bool hit = std::any_of(st.ranges.begin(), st.ranges.end(), [&](const auto& r) { return r.first <= ch && ch <= r.second; });
    if (hit != st.negated) heads.push_back(st.out);
  }
  return heads.empty() ? States{} : closure(std::move(heads));
}

size_t CharPattern::least(const States& states) const {
  size_t best = kNever;
  for (uint32_t s : states) best = std::min(best, need_[s]);
  return best;
}

int64_t CharPattern::only(const States& states) const {
  int64_t found = kNone;
  for (uint32_t s : states) {
    const State& st = states_[s];
    if (st.kind != Kind::Char) continue;
    if (st.negated || st.ranges.size() != 1 || st.ranges[0].first != st.ranges[0].second) return kSeveral;
    int64_t ch = st.ranges[0].first;
    if (found != kNone && ch != found) return kSeveral;
    found = ch;
  }
  return found;
}

}  // namespace tinyllm
