// UTF-8: validation, encoding, and lossy decoding that replaces each maximal invalid
// subpart with U+FFFD (the Unicode/WHATWG practice that Rust's from_utf8_lossy and
// Python's errors="replace" follow), usable incrementally for streams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tinyllm::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

void append(std::string& out, uint32_t cp);

// Length of the longest prefix of `s` that is valid UTF-8.
size_t valid_prefix(std::string_view s);
inline bool valid(std::string_view s) { return valid_prefix(s) == s.size(); }

// Decode the code point at `pos` of valid UTF-8 text and advance `pos` past it.
uint32_t next(std::string_view s, size_t& pos);

// Lossy decoder over a byte stream: push bytes, get text of every sequence that is
// complete (or definitely invalid); an incomplete sequence at the end waits for more.
class LossyDecoder {
 public:
  // Append the text decoded from `bytes` (plus what was waiting) to `out`.
  void push(std::string_view bytes, std::string& out);
  // End of stream: a waiting incomplete sequence becomes one U+FFFD.
  void finish(std::string& out);
  bool waiting() const { return !pending_.empty(); }

 private:
  std::string pending_;
};

// Whole-buffer lossy decoding.
std::string decode_lossy(std::string_view bytes);

}  // namespace tinyllm::utf8
