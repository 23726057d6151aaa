#include "unicode.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <vector>

#include "utf8.h"

namespace tinyllm::unicode {
namespace {

struct CodeRange {
  uint32_t first, last;
};

struct ClassRun {
  uint32_t first, last;
  uint8_t ccc;
};

struct Decomposition {
  uint32_t cp, first, second;
  bool composes;
};

#include "unicode_classes.inc"
#include "unicode_normalization.inc"

// The White_Space property (PropList.txt), unchanged since Unicode 6.3.
constexpr CodeRange kWhitespace[] = {{0x9, 0xD},       {0x20, 0x20},     {0x85, 0x85},
                                     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
                                     {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F},
                                     {0x3000, 0x3000}};

template <size_t N>
bool in(const CodeRange (&table)[N], uint32_t cp) {
  auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                             [](uint32_t c, const CodeRange& r) { return c < r.first; });
  return it != std::begin(table) && cp <= std::prev(it)->last;
}

}  // namespace

bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in(kLetters, cp);
}

bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in(kNumbers, cp);
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x9 && cp <= 0xD);
  return in(kWhitespace, cp);
}

}  // namespace tinyllm::unicode

namespace tinyllm::unicode {
namespace {

// Hangul syllables decompose and compose by arithmetic (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

const Decomposition* find_decomposition(uint32_t cp) {
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp,
                             [](const Decomposition& d, uint32_t c) { return d.cp < c; });
  return it != std::end(kDecompositions) && it->cp == cp ? &*it : nullptr;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* d = find_decomposition(cp);
  if (d == nullptr) {
    out.push_back(cp);
    return;
  }
  decompose(d->first, out);
  if (d->second) decompose(d->second, out);
}

// The primary composite of (a, b), or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  static const std::map<uint64_t, uint32_t> pairs = [] {
    std::map<uint64_t, uint32_t> m;
    for (const Decomposition& d : kDecompositions)
      if (d.composes) m[(uint64_t{d.first} << 32) | d.second] = d.cp;
    return m;
  }();
  auto it = pairs.find((uint64_t{a} << 32) | b);
  return it == pairs.end() ? 0 : it->second;
}

}  // namespace

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCombiningClasses), std::end(kCombiningClasses), cp,
                             [](uint32_t c, const ClassRun& r) { return c < r.first; });
  if (it == std::begin(kCombiningClasses)) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

std::string nfc(std::string_view text) {
  bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) return std::string(text);
  std::vector<uint32_t> chars;  // canonical decomposition
  for (size_t pos = 0; pos < text.size();) decompose(utf8::next(text, pos), chars);
  // Canonical ordering: each run of non-starters sorted by class, stably.
  for (size_t i = 0; i < chars.size();) {
    size_t j = i;
    while (j < chars.size() && combining_class(chars[j]) != 0) ++j;
    if (j - i > 1)
      std::stable_sort(chars.begin() + i, chars.begin() + j,
                       [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j + 1;
  }
  // Canonical composition: each character joins the last starter unless blocked.
  std::vector<uint32_t> out;
  long starter = -1;
  for (uint32_t c : chars) {
    uint8_t ccc = combining_class(c);
    if (starter >= 0) {
      bool adjacent = out.size() == static_cast<size_t>(starter) + 1;
      uint8_t last = combining_class(out.back());
      if (adjacent || (last != 0 && last < ccc)) {
        if (uint32_t composite = compose(out[starter], c)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (ccc == 0) starter = static_cast<long>(out.size());
    out.push_back(c);
  }
  std::string result;
  for (uint32_t c : out) utf8::append(result, c);
  return result;
}

}  // namespace tinyllm::unicode
