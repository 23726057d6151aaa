#include "engine.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <random>

#include "error.h"
#include "row.h"
#include "sampler.h"

namespace tinyllm {

namespace {

// Whether forced text goes in one verify run (runtime/speculative.py check_exact): where
// the graph takes several positions a row, and its verify runs pick what single steps
// pick: not on int4 and int8 engines (MatMulNBits at accuracy level 4 rounds its
// several-row path otherwise, measured on SmolLM2).
bool fast_forward(const Engine& engine, int asked) {
  if (asked < -1 || asked > 1)
    fail(TINYLLM_INVALID_ARGUMENT, "fast_forward must be -1 (off), 0 (on where exact) or 1 (on), got " +
                                       std::to_string(asked));
  const std::string& precision = engine.info().precision;
  bool exact = precision != "int4" && precision != "int8";
  if (asked == 1 && !exact)
    fail(TINYLLM_UNSUPPORTED, "fast_forward would change this " + precision + " engine's outputs (its several-token "
                              "verify runs round differently from single-token steps); load it with fast_forward 0 "
                              "or -1 (docs/runtime.md)");
  if (asked == 1 && !engine.verifies())
    fail(TINYLLM_UNSUPPORTED, "engine \"" + engine.entry().name + "\" returns one position's logits per row, so it "
                              "cannot verify forced text in one step; re-export it, or load it with fast_forward 0");
  return asked >= 0 && exact && engine.verifies();
}

}  // namespace

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
  engine->fast_forward_ = fast_forward(*engine, options.fast_forward);
  auto& stop = engine->stop_ids_;
  if (engine->tokenizer_->eos_token_id() >= 0) stop.push_back(engine->tokenizer_->eos_token_id());
  for (int32_t id : engine->bundle_.config().eos_token_ids) stop.push_back(id);
  std::string table = folder + "/tasks.json";
  if (engine->bundle_.lists(table)) {
    std::string table_path = engine->bundle_.file(table);
    engine->tasks_ = TaskTable::parse(read_text_file(table_path), table_path);
    engine->tasks_.mark_legacy_tools(engine->bundle_.tool_tasks());
  }
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
  check(prompts, config);
  std::vector<Row> rows(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    rows[i].prompt = prompts[i].ids;
    rows[i].slot = session_->slots().slot_for(bundle_, prompts[i].adapter);
    rows[i].max_new_tokens = config.max_new_tokens;
  }
  return run_rows(rows, config, on_text);
}

std::vector<Generation> Engine::run_rows(std::vector<Row>& rows, const GenerationConfig& config,
                                         const StreamFn& on_text) {
  auto start = std::chrono::steady_clock::now();
  std::random_device entropy;
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].index = i;
    uint64_t seed = config.seed ? *config.seed + i : (uint64_t{entropy()} << 32) | entropy();
    rows[i].rng = std::make_unique<Pcg64>(seed);
  }
  for (size_t first = 0; first < rows.size(); first += static_cast<size_t>(max_batch()))
    run_chunk(rows.data() + first, std::min(rows.size() - first, static_cast<size_t>(max_batch())), config, on_text);
  std::vector<Generation> results;
  for (Row& r : rows) {
    Generation g;
    g.text = config.stop.empty() && !r.task ? tokenizer_->decode(r.tokens, true) : r.text;
    g.token_ids = r.tokens;
    g.prompt_tokens = r.prompt.size();
    g.length = r.length || !r.done;
    results.push_back(std::move(g));
  }
  stats_.generate_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return results;
}

void Engine::run_chunk(Row* rows, size_t count, const GenerationConfig& config, const StreamFn& on_text) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int64_t> index;
  bool any_slot = false;
  for (size_t i = 0; i < count; ++i) {
    const Row& r = rows[i];
    prompts.push_back(r.prompt);
    index.push_back(r.slot);
    any_slot |= r.slot != 0;
  }
  if (!any_slot) index.clear();
  bool live_text = static_cast<bool>(on_text);
  const float* logits = session_->prefill(prompts, index);
  size_t low = 0;  // the first row of `logits` (none after a verify run)
  while (true) {
    for (size_t i = low; logits != nullptr && i < count; ++i) {
      if (rows[i].done) continue;
      advance(rows[i], logits + (i - low) * session_->vocab_size(), config, live_text);
      if (live_text) stream(rows[i], config, on_text);
    }
    // The next run spans the rows from the lowest to the highest still generating (as
    // the server's runs do): a finished row at either end is no longer computed.
    size_t high = count;  // one past the last row still generating
    while (high > 0 && rows[high - 1].done) --high;
    if (high == 0) return;
    low = 0;
    while (rows[low].done) ++low;
    if (high - low == 1) {  // one row left: the text its constraint forces goes in one run
      std::vector<int32_t> draft = forced_draft(rows[low], config);
      if (!draft.empty()) {
        verify(rows[low], static_cast<int64_t>(low), draft, config, live_text);
        if (live_text) stream(rows[low], config, on_text);
        logits = nullptr;
        continue;
      }
    }
    std::vector<int32_t> last;
    std::vector<int64_t> held, slots;
    for (size_t i = low; i < high; ++i) {
      const Row& r = rows[i];
      last.push_back(r.tokens.empty() ? tokenizer_->pad_token_id() : r.tokens.back());
      held.push_back(static_cast<int64_t>(r.prompt.size() + r.tokens.size()) - 1);
      if (!index.empty()) slots.push_back(index[i]);
    }
    logits = session_->decode(last, held, slots, static_cast<int64_t>(low));
  }
}

int32_t Engine::pick(Row& row, const float* logits, const GenerationConfig& config) {
  SamplingParams params{config.temperature, static_cast<int32_t>(config.top_k), config.top_p};
  size_t n = static_cast<size_t>(session_->vocab_size());
  std::vector<int32_t> allowed;
  if (row.trie) allowed = row.trie->allowed(row.tokens);
  if (row.json) allowed = json_tokens().allowed(*row.json);
  if (row.call) allowed = json_tokens().allowed(*row.call);
  allowed.erase(std::remove_if(allowed.begin(), allowed.end(), [&](int32_t id) { return id < 0 || static_cast<size_t>(id) >= n; }),
                allowed.end());
  if (allowed.empty()) return sample(logits, n, params, *row.rng);  // unconstrained, as in Python
  std::vector<float> masked(n, -std::numeric_limits<float>::infinity());
  for (int32_t id : allowed) masked[static_cast<size_t>(id)] = logits[id];
  return sample(masked.data(), n, params, *row.rng);
}

bool Engine::stops(int32_t token, const GenerationConfig& config) const {
  return !config.ignore_eos && std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end();
}

void Engine::advance(Row& row, const float* logits, const GenerationConfig& config, bool live_text) {
  int32_t token = pick(row, logits, config);
  ++stats_.generated_tokens;
  if (stops(token, config)) {
    row.done = true;
    return;
  }
  append(row, token, config, live_text);
  if (row.json) {
    if (!row.json->feed(tokenizer_->decode({token}, true))) {
      row.json.reset();  // no token fitted: stop constraining; the output is reported invalid
    } else if (row.json->done()) {
      row.done = true;
      row.length = false;
    }
  }
  if (row.call) {
    if (!row.call->feed(tokenizer_->decode({token}, true))) {
      row.call.reset();  // as for JSON: the call is then checked, and refused, when it runs
    } else if (row.call->done()) {
      row.done = true;
      row.length = false;
    }
  }
  if (row.trie && !row.done) finish_label(row, config, live_text);
}

void Engine::append(Row& row, int32_t token, const GenerationConfig& config, bool live_text) {
  row.tokens.push_back(token);
  if (live_text || !config.stop.empty() || row.task) {
    row.decoder.push(tokenizer_->token_bytes(token, true), row.committed);
    // The Python engine re-decodes all tokens: an incomplete tail reads as U+FFFD.
    row.text = row.committed;
    if (row.decoder.waiting()) row.text += utf8::kReplacement;
  }
  // runtime/live.py stopped(): the first line, stop strings, a whole label, the limits.
  size_t cut = row.first_line ? first_line_cut(row.text) : std::string::npos;
  for (const std::string& stop : config.stop)
    if (cut == std::string::npos) cut = row.text.find(stop);
  if (cut != std::string::npos) {
    row.text.resize(cut);
    row.done = true;
  } else if (row.trie && row.trie->complete(row.tokens)) {
    row.done = true;
  } else {
    bool full = static_cast<int64_t>(row.prompt.size() + row.tokens.size()) >= session_->max_seq_len();
    row.done = row.length = static_cast<int64_t>(row.tokens.size()) >= row.max_new_tokens || full;
  }
}

void Engine::finish_label(Row& row, const GenerationConfig& config, bool live_text) {
  // Where the label mask allows one token, masked greedy picks it and masked sampling
  // draws it with probability 1: appending it is exact, and a tail that ends the label
  // ends the row, whose KV is then never read. A tail that meets a choice is the model's.
  for (int32_t token : row.trie->forced_tail(row.tokens)) {
    if (stops(token, config)) {
      row.done = true;
      return;
    }
    append(row, token, config, live_text);
    ++stats_.generated_tokens;
    ++stats_.label_forwarded;
    if (row.done) return;
  }
}

void Engine::stream(Row& row, const GenerationConfig& config, const StreamFn& on_text) const {
  size_t ready;
  const std::string* source = &row.committed;
  std::string final_text;
  if (row.done) {
    final_text = config.stop.empty() && !row.task ? tokenizer_->decode(row.tokens, true) : row.text;
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
