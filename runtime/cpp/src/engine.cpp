#include "engine.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "error.h"
#include "sampler.h"

namespace tinyllm {

struct Engine::Row {
  size_t index = 0;  // position in the caller's prompt list
  std::vector<int32_t> prompt, tokens;
  int64_t slot = 0;
  std::unique_ptr<Pcg64> rng;
  bool done = false, length = false;
  utf8::LossyDecoder decoder;
  std::string committed;  // decoded text of complete UTF-8 sequences
  std::string text;       // text as the Python engine has it (stop strings cut)
  size_t streamed = 0;    // bytes of text handed to the callback
};

std::unique_ptr<Engine> Engine::load(const std::string& path, const LoadOptions& options) {
  if (options.max_batch < 1) fail(TINYLLM_INVALID_ARGUMENT, "max_batch must be >= 1");
  if (options.max_seq_len < 0) fail(TINYLLM_INVALID_ARGUMENT, "max_seq_len must be >= 0");
  auto engine = std::unique_ptr<Engine>(new Engine());
  engine->bundle_ = Bundle::open(path, options.verify_hashes);
  engine->entry_ = engine->bundle_.pick_engine(options.engine);
  EngineInfo& info = engine->info_ = engine->bundle_.engine_info(engine->entry_);
  if (info.flavour != "ort")
    fail(TINYLLM_UNSUPPORTED, "engine \"" + engine->entry_.name + "\" is the " + info.flavour +
                                  " flavour; this library runs onnx-cpu engines (the ort flavour) so far");
  if (info.float_dtype != "float32")
    fail(TINYLLM_UNSUPPORTED, "engine \"" + engine->entry_.name + "\" computes in " + info.float_dtype +
                                  "; this library runs float32 engines (onnx-cpu fp32, int8, int4)");
  std::string folder = engine->entry_.path;
  while (!folder.empty() && folder.back() == '/') folder.pop_back();
  engine->tokenizer_ = Tokenizer::load(engine->bundle_.root() + "/tokenizer");
  int64_t seq = options.max_seq_len > 0 ? options.max_seq_len : std::min<int64_t>(info.max_seq_len, 4096);
  seq = std::min(seq, info.max_seq_len);
  engine->session_ = std::make_unique<DecoderSession>(
      engine->bundle_.file(folder + "/" + info.model), engine->bundle_.config(), info, options.max_batch,
      seq, options.threads, engine->tokenizer_->pad_token_id());
  auto& stop = engine->stop_ids_;
  if (engine->tokenizer_->eos_token_id() >= 0) stop.push_back(engine->tokenizer_->eos_token_id());
  for (int32_t id : engine->bundle_.config().eos_token_ids) stop.push_back(id);
  return engine;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineStats s = stats_;
  s.runs = session_->times();
  return s;
}

void Engine::check(const std::vector<PromptInput>& prompts, const GenerationConfig& config) const {
  if (config.max_new_tokens < 1)
    fail(TINYLLM_INVALID_ARGUMENT, "max_new_tokens must be >= 1, got " + std::to_string(config.max_new_tokens));
  if (!(config.temperature >= 0))
    fail(TINYLLM_INVALID_ARGUMENT, "temperature must be >= 0, got " + std::to_string(config.temperature));
  if (config.top_k < 0 || !(config.top_p > 0 && config.top_p <= 1))
    fail(TINYLLM_INVALID_ARGUMENT, "top_k must be >= 0 and top_p in (0, 1]");
  for (const std::string& s : config.stop) {
    if (s.empty()) fail(TINYLLM_INVALID_ARGUMENT, "a stop string is empty");
    if (!utf8::valid(s)) fail(TINYLLM_TOKENIZER_ERROR, "a stop string is not valid UTF-8");
  }
  int64_t limit = session_->max_seq_len();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& ids = prompts[i].ids;
    if (ids.empty()) fail(TINYLLM_CONTEXT_ERROR, "prompt " + std::to_string(i) + " is empty");
    if (static_cast<int64_t>(ids.size()) >= limit)
      fail(TINYLLM_CONTEXT_ERROR,
           "prompt " + std::to_string(i) + " has " + std::to_string(ids.size()) +
               " tokens; the engine's context is " + std::to_string(limit) +
               " tokens (prompt plus output): shorten the prompt, or load the engine with a larger "
               "max_seq_len");
    for (int32_t id : ids)
      if (id < 0 || id >= session_->vocab_size())
        fail(TINYLLM_INVALID_ARGUMENT, "prompt " + std::to_string(i) + " has token id " + std::to_string(id) +
                                           ", outside the vocabulary (0 to " +
                                           std::to_string(session_->vocab_size() - 1) + ")");
  }
}

std::vector<Generation> Engine::generate(const std::vector<PromptInput>& prompts,
                                         const GenerationConfig& config, const StreamFn& on_text) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto start = std::chrono::steady_clock::now();
  check(prompts, config);
  std::vector<int64_t> slots;
  for (const PromptInput& p : prompts) slots.push_back(session_->slots().slot_for(bundle_, p.adapter));
  std::vector<Generation> results;
  std::random_device entropy;
  for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(max_batch())) {
    size_t count = std::min(prompts.size() - first, static_cast<size_t>(max_batch()));
    std::vector<Row> rows(count);
    for (size_t i = 0; i < count; ++i) {
      Row& r = rows[i];
      r.index = first + i;
      r.prompt = prompts[first + i].ids;
      r.slot = slots[first + i];
      uint64_t seed = config.seed ? *config.seed + first + i : (uint64_t{entropy()} << 32) | entropy();
      r.rng = std::make_unique<Pcg64>(seed);
    }
    run_chunk(rows, config, on_text);
    for (Row& r : rows) {
      Generation g;
      g.text = config.stop.empty() ? tokenizer_->decode(r.tokens, true) : r.text;
      g.token_ids = r.tokens;
      g.prompt_tokens = r.prompt.size();
      g.length = r.length || !r.done;
      results.push_back(std::move(g));
    }
  }
  stats_.generate_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return results;
}

void Engine::run_chunk(std::vector<Row>& rows, const GenerationConfig& config, const StreamFn& on_text) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> index;
  bool any_slot = false;
  for (const Row& r : rows) {
    prompts.push_back(r.prompt);
    index.push_back(r.slot);
    any_slot |= r.slot != 0;
  }
  if (!any_slot) index.clear();
  bool live_text = static_cast<bool>(on_text);
  const float* logits = session_->prefill(prompts, index);
  while (true) {
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].done) continue;
      advance(rows[i], logits + i * session_->vocab_size(), config, live_text);
      if (live_text) stream(rows[i], config, on_text);
    }
    if (std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.done; })) return;
    std::vector<int32_t> last;
    std::vector<int64_t> held;
    for (const Row& r : rows) {
      last.push_back(r.tokens.empty() ? tokenizer_->pad_token_id() : r.tokens.back());
      held.push_back(static_cast<int64_t>(r.prompt.size() + r.tokens.size()) - 1);
    }
    logits = session_->decode(last, held, index);
  }
}

void Engine::advance(Row& row, const float* logits, const GenerationConfig& config, bool live_text) {
  SamplingParams params{config.temperature, static_cast<int32_t>(config.top_k), config.top_p};
  int32_t token = sample(logits, static_cast<size_t>(session_->vocab_size()), params, *row.rng);
  ++stats_.generated_tokens;
  if (!config.ignore_eos && std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end()) {
    row.done = true;
    return;
  }
  row.tokens.push_back(token);
  if (live_text || !config.stop.empty()) {
    row.decoder.push(tokenizer_->token_bytes(token, true), row.committed);
    // The Python engine re-decodes all tokens: an incomplete tail reads as U+FFFD.
    row.text = row.committed;
    if (row.decoder.waiting()) row.text += utf8::kReplacement;
  }
  for (const std::string& stop : config.stop) {
    size_t cut = row.text.find(stop);
    if (cut != std::string::npos) {
      row.text.resize(cut);
      row.done = true;
      return;
    }
  }
  bool full = static_cast<int64_t>(row.prompt.size() + row.tokens.size()) >= session_->max_seq_len();
  if (static_cast<int64_t>(row.tokens.size()) >= config.max_new_tokens || full) {
    row.done = true;
    row.length = true;
  }
}

void Engine::stream(Row& row, const GenerationConfig& config, const StreamFn& on_text) const {
  size_t ready;
  const std::string* source = &row.committed;
  std::string final_text;
  if (row.done) {
    final_text = config.stop.empty() ? tokenizer_->decode(row.tokens, true) : row.text;
    source = &final_text;
    ready = final_text.size();
  } else {
    // Hold back a tail that may be the start of a stop string.
    ready = row.committed.size();
    for (const std::string& stop : config.stop)
      for (size_t k = std::min(stop.size() - 1, row.committed.size()); k > 0; --k)
        if (row.committed.compare(row.committed.size() - k, k, stop, 0, k) == 0) {
          ready = std::min(ready, row.committed.size() - k);
          break;
        }
  }
  if (ready > row.streamed) {
    if (!on_text(row.index, std::string_view(*source).substr(row.streamed, ready - row.streamed)))
      fail(TINYLLM_CANCELLED, "generation was cancelled by the streaming callback");
    row.streamed = ready;
  }
}

}  // namespace tinyllm
