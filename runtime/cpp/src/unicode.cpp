#include "unicode.h"

#include <algorithm>
#include <iterator>

namespace tinyllm::unicode {
namespace {

struct CodeRange {
  uint32_t first, last;
};

#include "unicode_tables.inc"

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
