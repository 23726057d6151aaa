// Unicode character classes used by the pre-tokenizer patterns: \p{L}, \p{N} and \s
// (White_Space), as the tokenizers library's regex engine sees them (Unicode 16.0).
#pragma once

#include <cstdint>

namespace tinyllm::unicode {

bool is_letter(uint32_t cp);
bool is_number(uint32_t cp);
bool is_whitespace(uint32_t cp);

}  // namespace tinyllm::unicode
