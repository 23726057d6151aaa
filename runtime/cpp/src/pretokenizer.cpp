#include "pretokenizer.h"

#include "error.h"
#include "unicode.h"
#include "utf8.h"

namespace tinyllm {
namespace {

using unicode::is_letter;
using unicode::is_number;
using unicode::is_whitespace;

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The text as code points, so the matchers can look ahead and back freely.
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<size_t> offset;  // byte offset of each code point, plus the end

  explicit Chars(std::string_view text) {
    size_t pos = 0;
    while (pos < text.size()) {
      offset.push_back(pos);
      cp.push_back(utf8::next(text, pos));
    }
    offset.push_back(text.size());
  }
  size_t size() const { return cp.size(); }
};

bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
bool is_other(uint32_t c) { return !is_whitespace(c) && !is_letter(c) && !is_number(c); }

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive (with Unicode case folding,
// under which U+017F LATIN SMALL LETTER LONG S matches 's'). Returns the match length.
size_t contraction(const Chars& t, size_t i, bool fold) {
  if (t.cp[i] != '\'' || i + 1 >= t.size()) return 0;
  auto is = [&](size_t k, char c) {
    if (k >= t.size()) return false;
    uint32_t x = t.cp[k];
    if (x == static_cast<uint32_t>(c)) return true;
    if (!fold) return false;
    if (x < 0x80 && (x | 0x20) == static_cast<uint32_t>(c)) return true;
    return c == 's' && x == 0x17F;
  };
  if (is(i + 1, 's') || is(i + 1, 't')) return 2;
  if ((is(i + 1, 'r') || is(i + 1, 'v')) && is(i + 2, 'e')) return 3;
  if (is(i + 1, 'm')) return 2;
  if (is(i + 1, 'l') && is(i + 2, 'l')) return 3;
  if (is(i + 1, 'd')) return 2;
  return 0;
}

template <typename Pred>
size_t run(const Chars& t, size_t j, Pred pred) {
  while (j < t.size() && pred(t.cp[j])) ++j;
  return j;
}

// \s+(?!\S) then \s+ at i (t.cp[i] is whitespace): the end of the match.
size_t whitespace(const Chars& t, size_t i) {
  size_t k = run(t, i, is_whitespace);
  if (k == t.size() || k - i < 2) return k;  // at the end; or one char: \s+ takes it
  return k - 1;                               // leave the last one to precede the word
}

// One match of the GPT-2 pattern at i: its end.
size_t match_gpt2(const Chars& t, size_t i) {
  if (size_t n = contraction(t, i, false)) return i + n;
  size_t j = i + (t.cp[i] == ' ' ? 1 : 0);
  if (j < t.size()) {
    if (is_letter(t.cp[j])) return run(t, j, is_letter);
    if (is_number(t.cp[j])) return run(t, j, is_number);
    if (is_other(t.cp[j])) return run(t, j, is_other);
  }
  return whitespace(t, i);
}

// One match of the Qwen2 (digits = 1) or Llama-3 (digits = 3) pattern at i: its end.
size_t match_qwen(const Chars& t, size_t i, size_t digits) {
  if (size_t n = contraction(t, i, true)) return i + n;
  uint32_t c = t.cp[i];
  if (is_letter(c)) return run(t, i, is_letter);
  bool prefix = !is_crlf(c) && !is_number(c);  // [^\r\n\p{L}\p{N}]
  if (prefix && i + 1 < t.size() && is_letter(t.cp[i + 1])) return run(t, i + 1, is_letter);
  if (is_number(c)) {
    size_t k = i;
    while (k < t.size() && k - i < digits && is_number(t.cp[k])) ++k;
    return k;
  }
  size_t j = i + (c == ' ' ? 1 : 0);
  if (j < t.size() && is_other(t.cp[j])) return run(t, run(t, j, is_other), is_crlf);
  // \s*[\r\n]+: the whitespace run up to and including its last CR or LF.
  size_t k = run(t, i, is_whitespace);
  for (size_t m = k; m > i; --m)
    if (is_crlf(t.cp[m - 1])) return m;
  return whitespace(t, i);
}

SplitPattern pattern_of(std::string_view regex, const std::string& where) {
  if (regex == kGpt2Regex) return SplitPattern::Gpt2;
  if (regex == kQwen2Regex) return SplitPattern::Qwen2;
  if (regex == kLlama3Regex) return SplitPattern::Llama3;
  fail(TINYLLM_UNSUPPORTED, where + ": the split pattern " + std::string(regex) +
                                " is not one this library implements (GPT-2, Qwen2, Llama-3)");
}

PreTokenizerStep step_from_json(const json::Value& spec, const std::string& where) {
  const std::string& type = spec.at("type", where).as_string(where + ".type");
  PreTokenizerStep step{};
  if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::ByteLevel;
    if (const json::Value* v = spec.find("add_prefix_space")) step.add_prefix_space = v->as_bool(where);
    if (const json::Value* v = spec.find("use_regex")) step.use_regex = v->as_bool(where);
    return step;
  }
  if (type == "Digits") {
    step.kind = PreTokenizerStep::Kind::Digits;
    if (const json::Value* v = spec.find("individual_digits")) step.individual_digits = v->as_bool(where);
    return step;
  }
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::Split;
    const json::Value& pattern = spec.at("pattern", where);
    const json::Value* regex = pattern.find("Regex");
    if (regex == nullptr) fail(TINYLLM_UNSUPPORTED, where + ": only Split with a Regex pattern is supported");
    step.pattern = pattern_of(regex->as_string(where + ".pattern.Regex"), where);
    const json::Value* behavior = spec.find("behavior");
    const json::Value* invert = spec.find("invert");
    if ((behavior && behavior->as_string(where) != "Isolated") || (invert && invert->as_bool(where)))
      fail(TINYLLM_UNSUPPORTED, where + ": only Split with behavior Isolated and no invert is supported");
    return step;
  }
  fail(TINYLLM_UNSUPPORTED, where + ": pre-tokenizer type \"" + type + "\" is not supported");
}

// Split every piece with `split` (piece text -> sub-pieces).
template <typename Fn>
std::vector<std::string> refine(const std::vector<std::string>& pieces, Fn split) {
  std::vector<std::string> out;
  for (const std::string& piece : pieces)
    for (const Piece& p : split(piece)) out.push_back(piece.substr(p.begin, p.end - p.begin));
  return out;
}

std::vector<Piece> split_digits(std::string_view text, bool individual) {
  Chars t(text);
  std::vector<Piece> out;
  size_t i = 0;
  while (i < t.size()) {
    size_t k = i + 1;
    bool digit = is_number(t.cp[i]);
    if (!digit || !individual)
      while (k < t.size() && is_number(t.cp[k]) == digit) ++k;
    out.push_back({t.offset[i], t.offset[k]});
    i = k;
  }
  return out;
}

}  // namespace

std::vector<Piece> split_pattern(std::string_view text, SplitPattern pattern) {
  Chars t(text);
  std::vector<Piece> out;
  size_t i = 0;
  while (i < t.size()) {
    size_t end = pattern == SplitPattern::Gpt2 ? match_gpt2(t, i)
                 : match_qwen(t, i, pattern == SplitPattern::Qwen2 ? 1 : 3);
    out.push_back({t.offset[i], t.offset[end]});
    i = end;
  }
  return out;
}

PreTokenizer PreTokenizer::from_json(const json::Value& spec, const std::string& where) {
  PreTokenizer p;
  if (spec.is_null()) return p;
  const std::string& type = spec.at("type", where).as_string(where + ".type");
  if (type == "Sequence") {
    const auto& items = spec.at("pretokenizers", where).as_array(where + ".pretokenizers");
    for (size_t i = 0; i < items.size(); ++i)
      p.steps_.push_back(step_from_json(items[i], where + ".pretokenizers[" + std::to_string(i) + "]"));
  } else {
    p.steps_.push_back(step_from_json(spec, where));
  }
  return p;
}

bool PreTokenizer::byte_level() const {
  for (const auto& s : steps_)
    if (s.kind == PreTokenizerStep::Kind::ByteLevel) return true;
  return false;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> pieces{std::string(text)};
  for (const PreTokenizerStep& step : steps_) {
    switch (step.kind) {
      case PreTokenizerStep::Kind::Split:
        pieces = refine(pieces, [&](const std::string& s) { return split_pattern(s, step.pattern); });
        break;
      case PreTokenizerStep::Kind::Digits:
        pieces = refine(pieces, [&](const std::string& s) { return split_digits(s, step.individual_digits); });
        break;
      case PreTokenizerStep::Kind::ByteLevel:
        if (step.add_prefix_space)
          for (std::string& s : pieces)
            if (s.empty() || s[0] != ' ') s.insert(s.begin(), ' ');
        if (step.use_regex)
          pieces = refine(pieces, [](const std::string& s) { return split_pattern(s, SplitPattern::Gpt2); });
        break;
    }
  }
  return pieces;
}

}  // namespace tinyllm
