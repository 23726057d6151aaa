// Forced text in one step (runtime/speculative.py drafts_for, runtime/serving.py _verify
// and accept): a greedy row whose call or JSON literal can only go on with fixed text
// feeds its next token and that text's tokens in one verify run, then picks each next
// token from the logits of every position exactly as plain steps would (the same
// constraint, stops and limits), keeping draft tokens only while they equal its picks.
#include "engine.h"
#include "error.h"
#include "row.h"

namespace tinyllm {

std::vector<int32_t> Engine::forced_draft(const Row& row, const GenerationConfig& config) {
  if (!fast_forward_ || config.temperature != 0 || row.done || row.tokens.empty() || (!row.call && !row.json))
    return {};
  // Room in the output budget (the run's last position gives one more token) and in the
  // context (the run writes 1 + the draft's tokens after the row's KV).
  int64_t kv_len = static_cast<int64_t>(row.prompt.size() + row.tokens.size()) - 1;
  int64_t room = std::min(row.max_new_tokens - static_cast<int64_t>(row.tokens.size()), max_seq_len() - kv_len) - 1;
  if (room < 1) return {};
  if (!forcing_)
    forcing_ = std::make_unique<Forcing>([this](const std::string& text) { return tokenizer_->encode(text); },
                                         [this](int32_t id) { return tokenizer_->decode({id}, true); });
  size_t limit = static_cast<size_t>(room);
  return row.call ? forcing_->draft(*row.call, limit, json_tokens()) : forcing_->draft(*row.json, limit, json_tokens());
}

size_t Engine::verify(Row& row, int64_t kv_row, const std::vector<int32_t>& draft, const GenerationConfig& config,
                      bool live_text) {
  std::vector<int32_t> fed{row.tokens.back()};
  fed.insert(fed.end(), draft.begin(), draft.end());
  int64_t kv_len = static_cast<int64_t>(row.prompt.size() + row.tokens.size()) - 1;
  const float* logits = session_->verify(kv_row, fed, kv_len, row.slot);
  size_t vocab = static_cast<size_t>(session_->vocab_size()), kept = 0, picks = 0;
  for (size_t j = 0; j < fed.size(); ++j, ++picks) {
    size_t held = row.tokens.size();
    advance(row, logits + j * vocab, config, live_text);
    bool same = j < draft.size() && row.tokens.size() > held && row.tokens.back() == draft[j];
    kept += same;
    if (row.done || !same) {
      ++picks;
      break;
    }
  }
  ++stats_.forced_steps;
  stats_.forced_drafted += draft.size();
  stats_.forced_accepted += kept;
  return picks;
}

}  // namespace tinyllm
