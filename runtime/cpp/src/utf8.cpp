#include "utf8.h"

namespace tinyllm::utf8 {
namespace {

// Expected sequence length of a lead byte (0: not a lead byte), and the allowed range
// of the byte after it (which excludes overlong forms, surrogates and > U+10FFFF).
struct Lead {
  int length;
  unsigned char lo, hi;
};

Lead lead(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

enum class Step { Valid, Invalid, Incomplete };

// Examine the sequence starting at s[pos]: how many bytes it takes (`used`) and whether
// they form a character, a maximal invalid subpart, or a prefix cut by the end.
Step examine(std::string_view s, size_t pos, size_t& used) {
  auto b = static_cast<unsigned char>(s[pos]);
  Lead l = lead(b);
  if (l.length == 0) {
    used = 1;
    return Step::Invalid;
  }
  used = 1;
  for (int k = 1; k < l.length; ++k) {
    if (pos + k >= s.size()) return Step::Incomplete;
    auto c = static_cast<unsigned char>(s[pos + k]);
    unsigned char lo = k == 1 ? l.lo : 0x80, hi = k == 1 ? l.hi : 0xBF;
    if (c < lo || c > hi) return Step::Invalid;
    ++used;
  }
  return Step::Valid;
}

}  // namespace

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t valid_prefix(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t used = 0;
    if (examine(s, pos, used) != Step::Valid) return pos;
    pos += used;
  }
  return pos;
}

uint32_t next(std::string_view s, size_t& pos) {
  auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) {
    ++pos;
    return b;
  }
  int length = lead(b).length;
  uint32_t cp = b & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07);
  for (int k = 1; k < length; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + k]) & 0x3F);
  pos += length;
  return cp;
}

void LossyDecoder::push(std::string_view bytes, std::string& out) {
  std::string buffer;
  std::string_view s = bytes;
  if (!pending_.empty()) {
    buffer = pending_ + std::string(bytes);
    s = buffer;
    pending_.clear();
  }
  size_t pos = 0;
  while (pos < s.size()) {
    size_t used = 0;
    switch (examine(s, pos, used)) {
      case Step::Valid: out.append(s.substr(pos, used)); break;
      case Step::Invalid: out.append(kReplacement); break;
      case Step::Incomplete: pending_.assign(s.substr(pos)); return;
    }
    pos += used;
  }
}

void LossyDecoder::finish(std::string& out) {
  if (!pending_.empty()) out.append(kReplacement);
  pending_.clear();
}

std::string decode_lossy(std::string_view bytes) {
  std::string out;
  LossyDecoder d;
  d.push(bytes, out);
  d.finish(out);
  return out;
}

}  // namespace tinyllm::utf8
