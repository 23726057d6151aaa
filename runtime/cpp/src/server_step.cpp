// One step of the serving loop (the engine is held): prefill the rows that joined, with
// their task's cached prefix; one decode step over every running row; resolve the rows
// that finished.
#include <algorithm>
#include <random>

#include "error.h"
#include "server_live.h"

namespace tinyllm {

void Server::prefill(const std::vector<Live*>& fresh) {
  DecoderSession& session = *engine_.session_;
  for (Live* live : fresh) {
    size_t r = live->row.index;
    const TaskOptions& options = live->request->options_;
    try {
      TaskOptions o = options;
      o.constrain = options.constrain && options_.constrain;
      live->row = engine_.task_row(live->request->request_, o);
    } catch (const LibError& e) {  // e.g. no free adapter slot
      std::lock_guard<std::mutex> lock(mutex_);
      end(*live, e.status(), e.what());
      rows_[r].reset();
      continue;
    }
    Row& row = live->row;
    row.index = r;
    std::random_device entropy;
    row.rng = std::make_unique<Pcg64>(options.seed ? *options.seed : (uint64_t{entropy()} << 32) | entropy());
    live->config.temperature = options.temperature;
    PrefixCache::Key key{row.task->name, row.slot};
    PrefixHit hit;
    bool fill = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      hit = cache_.lookup(key, row.prompt, row.prefix_len);
      fill = !hit.entry && cache_.wants(key, row.prefix_len);
    }
    int64_t past = static_cast<int64_t>(hit.length);
    if (hit.entry) session.write_kv(static_cast<int64_t>(r), hit.entry->kv, past);
    std::vector<int32_t> rest(row.prompt.begin() + past, row.prompt.end());
    const float* logits = session.prefill_rows(static_cast<int64_t>(r), {rest}, {past}, {row.slot});
    if (fill) {
      CachedPrefix entry;
      entry.ids.assign(row.prompt.begin(), row.prompt.begin() + static_cast<std::ptrdiff_t>(row.prefix_len));
      entry.kv = session.read_kv(static_cast<int64_t>(r), static_cast<int64_t>(row.prefix_len));
      std::lock_guard<std::mutex> lock(mutex_);
      cache_.store(key, std::move(entry));
    }
    engine_.advance(row, logits, live->config, false);
    live->started = true;
  }
}

void Server::decode() {
  std::vector<size_t> active;
  for (size_t r = 0; r < rows_.size(); ++r)
    if (rows_[r] && rows_[r]->started && !rows_[r]->row.done) active.push_back(r);
  if (active.empty()) return;
  size_t width = active.back() + 1;
  // Rows that do not decode feed a placeholder at position 0 (free rows: overwritten
  // before any use).
  std::vector<int32_t> tokens(width, engine_.tokenizer().pad_token_id());
  std::vector<int64_t> held(width, 0), lora(width, 0);
  for (size_t r : active) {
    const Row& row = rows_[r]->row;
    tokens[r] = row.tokens.back();
    held[r] = static_cast<int64_t>(row.prompt.size() + row.tokens.size()) - 1;
    lora[r] = row.slot;
  }
  const float* logits = engine_.session_->decode(tokens, held, lora);
  for (size_t r : active)
    engine_.advance(rows_[r]->row, logits + r * static_cast<size_t>(engine_.vocab_size()), rows_[r]->config, false);
}

void Server::finish_done() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& live : rows_)
    if (live && live->started && live->row.done) {
      end(*live, TINYLLM_OK, "");
      live.reset();
    }
}

}  // namespace tinyllm
