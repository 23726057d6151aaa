// Constrained decoding, as the Python router applies it (runtime/router.py LabelTrie,
// runtime/constraints.py): a label task may only write one of its labels (a token
// trie), a JSON task only text that keeps its output a valid JSON prefix. The JSON
// machine works on code points exactly as the Python one works on str characters, so
// both runtimes allow the same tokens in the same states.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace tinyllm {

// Token trie over a task's label sequences; `eos` (-1: none) may end a complete label.
class LabelTrie {
 public:
  LabelTrie(const std::vector<std::vector<int32_t>>& sequences, int32_t eos);
  // Tokens that may follow `prefix` (the eos where a label is complete).
  std::vector<int32_t> allowed(const std::vector<int32_t>& prefix) const;
  // `prefix` spells a whole label that no longer label continues.
  bool complete(const std::vector<int32_t>& prefix) const;
  // The tokens that complete the label `prefix` began when the trie allows exactly one
  // token at each step up to its end (runtime/serving.py _finish_label); empty when a
  // choice lies ahead (between labels, or between ending and going on) or `prefix` is
  // complete or off the trie.
  std::vector<int32_t> forced_tail(const std::vector<int32_t>& prefix) const;

 private:
  struct Node {
    std::vector<std::pair<int32_t, size_t>> children;  // insertion order, as Python's dict
    bool end = false;
  };
  std::vector<Node> nodes_;
  int32_t eos_;
};

// Which text is still a prefix of one JSON value (whitespace around it allowed).
class JsonPrefix {
 public:
  // `root` '{' or '[' requires an object or an array at the top (0: any value).
  explicit JsonPrefix(char root = 0) : root_(root) {}
  // Advance over UTF-8 `text`; false (and an undefined state) if it breaks the syntax.
  bool feed(const std::string& text);
  bool feed_char(uint32_t ch);
  bool complete() const;
  bool done() const { return mode_ == Mode::Done; }
  bool in_string() const { return mode_ == Mode::String; }
  // The text every valid continuation starts with: the rest of a literal ("rue" after
  // "t"), else "" (runtime/constraints.py JsonPrefix.forced).
  std::string forced() const { return mode_ == Mode::Literal ? literal_ : std::string(); }
  // Everything that decides which texts may follow (equal states, equal answers).
  std::string signature() const;

 private:
  enum class Mode { Value, ValueOrClose, Key, KeyOrClose, Colon, After, Done, String, Escape, Unicode, Literal, Number };
  bool string_char(uint32_t ch);
  bool start_value(uint32_t ch);
  bool close(char kind);
  Mode after() const { return stack_.empty() ? Mode::Done : Mode::After; }

  char root_;
  int blank_ = 0;
  std::string stack_;
  Mode mode_ = Mode::Value;
  bool key_ = false;
  int number_ = 0;  // a state of the number grammar (0: start)
  std::string literal_;
  int hex_ = 0;
};

// The tokens allowed after a JSON prefix, per state, cached (bounded, least recently used).
class JsonTokens {
 public:
  // `texts`: the text of every token id ("" for special tokens: never allowed).
  JsonTokens(std::vector<std::string> texts, int32_t eos, size_t states = 512);
  // Ascending ids whose text keeps `state` a valid prefix (eos once complete); `State`
  // is JsonPrefix or CallPrefix (callconstraint.h), whose signatures never collide.
  template <typename State>
  const std::vector<int32_t>& allowed(const State& state);

 private:
  std::vector<std::string> texts_;
  std::vector<int32_t> plain_;  // tokens whose text leaves a string state unchanged
  int32_t eos_;
  size_t states_;
  std::list<std::string> order_;  // least recently used first
  std::unordered_map<std::string, std::pair<std::vector<int32_t>, std::list<std::string>::iterator>> cache_;
};

// The best allowed token of `logits` [n] (the lowest id among equals), or -1 when none
// of `allowed` is inside the logits.
int32_t best_allowed(const float* logits, size_t n, const std::vector<int32_t>& allowed);

}  // namespace tinyllm
