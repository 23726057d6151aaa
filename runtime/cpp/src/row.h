// One sequence being generated: its prompt, tokens, text, sampling stream, and for a
// task request the task's decoding rules (runtime/live.py's Live, engine side).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "callconstraint.h"
#include "constraints.h"
#include "sampler.h"
#include "tasks.h"
#include "utf8.h"

namespace tinyllm {

struct Row {
  size_t index = 0;  // position in the caller's request list
  std::vector<int32_t> prompt, tokens;
  int64_t slot = 0;
  int64_t max_new_tokens = 0;
  std::unique_ptr<Pcg64> rng;
  bool done = false, length = false;
  utf8::LossyDecoder decoder;
  std::string committed;  // decoded text of complete UTF-8 sequences
  std::string text;       // text as the Python engine has it (stop strings cut)
  size_t streamed = 0;    // bytes of text handed to the callback
  // A task request: its entry, its label trie, and the JSON state of a JSON task.
  const TaskEntry* task = nullptr;
  const LabelTrie* trie = nullptr;
  std::optional<JsonPrefix> json;
  size_t prefix_len = 0;  // prompt tokens that are the task's fixed prefix
  bool first_line = false;  // the first-line stop rule (label and text answers)
  // A task with tools: the row writes a call (calls_tool), constrained to the tools'
  // schemas unless unconstrained (runtime/callconstraint.py).
  bool calls_tool = false;
  bool raw_call = false;  // the call is the answer: checked, never run (raw_tool_calls)
  std::optional<CallPrefix> call;
};

}  // namespace tinyllm
