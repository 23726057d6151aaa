// Drafts of the text a constraint forces (runtime/speculative.py Forcing): a greedy row
// whose call (or JSON literal) can only go on with fixed text drafts that text's tokens,
// as the tokenizer writes them, each kept only while the constraint allows it where it
// stands, then any token that is the only one allowed. A verify run then feeds the draft
// in one step and the model still picks every token (Engine::verify), so greedy outputs
// are those of one step a token.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "constraints.h"

namespace tinyllm {

class Forcing {
 public:
  using Encode = std::function<std::vector<int32_t>(const std::string&)>;
  using TextOf = std::function<std::string(int32_t)>;
  static constexpr size_t kTexts = 256;  // forced texts whose tokens are remembered

  // `encode`: token ids of a text (no special tokens); `text_of`: one token's text.
  Forcing(Encode encode, TextOf text_of) : encode_(std::move(encode)), text_of_(std::move(text_of)) {}

  // At most `limit` tokens that `state` (a JsonPrefix or CallPrefix) forces; `tokens`
  // gives the allowed tokens per state.
  template <typename State>
  std::vector<int32_t> draft(State state, size_t limit, JsonTokens& tokens) {
    std::vector<int32_t> out;
    for (int32_t token : ids_of(state.forced())) {
      const std::vector<int32_t>& allowed = tokens.allowed(state);
      if (out.size() >= limit || !std::binary_search(allowed.begin(), allowed.end(), token)) return out;
      if (!state.feed(text_of_(token))) return out;
      out.push_back(token);
    }
    while (out.size() < limit && !state.complete()) {
      const std::vector<int32_t>& allowed = tokens.allowed(state);
      if (allowed.size() != 1) break;
      int32_t token = allowed[0];
      if (!state.feed(text_of_(token))) break;
      out.push_back(token);
    }
    return out;
  }

 private:
  const std::vector<int32_t>& ids_of(const std::string& text) {
    auto it = known_.find(text);
    if (it != known_.end()) return it->second;
    if (known_.size() >= kTexts) known_.clear();
    return known_.emplace(text, text.empty() ? std::vector<int32_t>{} : encode_(text)).first->second;
  }

  Encode encode_;
  TextOf text_of_;
  std::map<std::string, std::vector<int32_t>> known_;
};

}  // namespace tinyllm
