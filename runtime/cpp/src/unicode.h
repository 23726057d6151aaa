// Unicode character classes used by the pre-tokenizer patterns: \p{L}, \p{N} and \s
// (White_Space), as the tokenizers library's regex engine sees them (Unicode 16.0), and
// the NFC normalizer (Qwen2's tokenizers normalize with it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tinyllm::unicode {

bool is_letter(uint32_t cp);
bool is_number(uint32_t cp);
bool is_whitespace(uint32_t cp);

// Canonical combining class (0 for starters).
uint8_t combining_class(uint32_t cp);

// Unicode Normalization Form C of valid UTF-8 text.
std::string nfc(std::string_view text);

}  // namespace tinyllm::unicode
