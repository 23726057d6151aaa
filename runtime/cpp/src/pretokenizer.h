// Pre-tokenization: split text into the pieces BPE runs on, as tokenizers' pre-tokenizers
// do for the supported families. The split patterns are implemented directly (no regex
// engine), each a transcription of its regular expression with the same backtracking.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "json.h"

namespace tinyllm {

// The regular expressions tokenizers' pre-tokenizers split with.
enum class SplitPattern {
  Gpt2,    // ByteLevel's own: 's|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Qwen2,   // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|...
  Llama3,  // as Qwen2 with \p{N}{1,3}
};

struct Piece {
  size_t begin, end;  // byte offsets into the text
};

// One stage of a pre-tokenizer sequence.
struct PreTokenizerStep {
  enum class Kind { Split, Digits, ByteLevel } kind;
  SplitPattern pattern = SplitPattern::Gpt2;  // Split, or ByteLevel with use_regex
  bool use_regex = true;                      // ByteLevel
  bool add_prefix_space = false;              // ByteLevel
  bool individual_digits = false;             // Digits
};

class PreTokenizer {
 public:
  // From tokenizer.json's "pre_tokenizer" (null, ByteLevel, Split, Digits or a Sequence of
  // them); anything else is a TINYLLM_UNSUPPORTED error naming it.
  static PreTokenizer from_json(const json::Value& spec, const std::string& where);

  // Split `text` (valid UTF-8). A ByteLevel step with add_prefix_space may prepend a
  // space to pieces, so pieces are returned as strings.
  std::vector<std::string> split(std::string_view text) const;

  bool byte_level() const;

 private:
  std::vector<PreTokenizerStep> steps_;
};

// Split `text` (valid UTF-8) with `pattern`; every byte ends up in exactly one piece.
std::vector<Piece> split_pattern(std::string_view text, SplitPattern pattern);

}  // namespace tinyllm
