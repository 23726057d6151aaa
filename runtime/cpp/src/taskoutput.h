// A task's output, as the Python router reads it (runtime/router.py parse_output with
// sdk/verifiers.py): the answer in the raw text (the first line of label and text
// tasks, a label named up to case, the JSON text without a code fence), checked by the
// task's verifiers, giving (value, valid, reason). Also the first-line stop rule.
#pragma once

#include <string>

#include "tasks.h"

namespace tinyllm {

struct ParsedOutput {
  std::string value;  // the label, the answer text, or the JSON text ("" when invalid)
  bool valid = false;
  std::string reason;  // why not valid
};

// Python's str.strip() and str.splitlines()[0] on UTF-8 text.
std::string strip(const std::string& text);
// Length in bytes of `text` up to its first line break, or npos when it has none.
size_t first_line_break(const std::string& text);
// The first-line rule of label and text tasks: the length to cut the text to once a
// line break follows text, else npos.
size_t first_line_cut(const std::string& text);

// The answer in a raw output (verifiers.answer_text).
std::string answer_text(const TaskEntry& task, const std::string& raw);
// Parse and verify a raw output. Throws TINYLLM_UNSUPPORTED for a check this library
// does not implement (a JSON Schema keyword outside the subset in docs/cpp.md).
ParsedOutput parse_output(const TaskEntry& task, const std::string& raw);

}  // namespace tinyllm
