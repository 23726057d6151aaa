// The C boundary: every entry point catches everything, returns a status, and leaves
// the message in the calling thread's last-error slot.
#include "c_api.h"

#ifndef TINYLLM_VERSION_STRING
#define TINYLLM_VERSION_STRING "0.0.0"
#endif

using namespace tinyllm::capi;

extern "C" {

const char* tinyllm_version(void) { return TINYLLM_VERSION_STRING; }
const char* tinyllm_last_error(void) { return last_error.c_str(); }
void tinyllm_free(void* p) { std::free(p); }

const char* tinyllm_status_name(tinyllm_status status) {
  switch (status) {
    case TINYLLM_OK: return "TINYLLM_OK";
    case TINYLLM_INVALID_ARGUMENT: return "TINYLLM_INVALID_ARGUMENT";
    case TINYLLM_BUNDLE_ERROR: return "TINYLLM_BUNDLE_ERROR";
    case TINYLLM_TOKENIZER_ERROR: return "TINYLLM_TOKENIZER_ERROR";
    case TINYLLM_CONTEXT_ERROR: return "TINYLLM_CONTEXT_ERROR";
    case TINYLLM_RUNTIME_ERROR: return "TINYLLM_RUNTIME_ERROR";
    case TINYLLM_UNSUPPORTED: return "TINYLLM_UNSUPPORTED";
    case TINYLLM_CANCELLED: return "TINYLLM_CANCELLED";
    case TINYLLM_OUT_OF_MEMORY: return "TINYLLM_OUT_OF_MEMORY";
    case TINYLLM_INTERNAL_ERROR: return "TINYLLM_INTERNAL_ERROR";
    case TINYLLM_NOT_FOUND: return "TINYLLM_NOT_FOUND";
    case TINYLLM_QUEUE_FULL: return "TINYLLM_QUEUE_FULL";
    case TINYLLM_CLOSED: return "TINYLLM_CLOSED";
    case TINYLLM_DEADLINE_EXCEEDED: return "TINYLLM_DEADLINE_EXCEEDED";
  }
  return "TINYLLM_UNKNOWN_STATUS";
}

tinyllm_status tinyllm_tokenizer_load(const char* path, tinyllm_tokenizer** out) {
  return guarded([&] {
    require(path, "path");
    require(out, "out");
    *out = nullptr;
    auto t = std::make_unique<tinyllm_tokenizer>();
    t->owned = tinyllm::Tokenizer::load(path);
    t->tok = t->owned.get();
    *out = t.release();
  });
}

void tinyllm_tokenizer_free(tinyllm_tokenizer* tokenizer) {
  if (tokenizer != nullptr && tokenizer->owned) delete tokenizer;  // engine-owned ones are not freed here
}

tinyllm_status tinyllm_encode(const tinyllm_tokenizer* tokenizer, const char* text, size_t text_len,
                              int32_t** ids, size_t* n_ids) {
  return guarded([&] {
    require(tokenizer, "tokenizer");
    require(ids, "ids");
    require(n_ids, "n_ids");
    *ids = nullptr;
    *n_ids = 0;
    std::vector<int32_t> out = tokenizer->tok->encode(text_of(text, text_len));
    *ids = copy_out(out.data(), out.size());
    *n_ids = out.size();
  });
}

tinyllm_status tinyllm_decode(const tinyllm_tokenizer* tokenizer, const int32_t* ids, size_t n_ids,
                              int skip_special, char** text, size_t* text_len) {
  return guarded([&] {
    require(tokenizer, "tokenizer");
    require(text, "text");
    if (n_ids > 0) require(ids, "ids");
    *text = nullptr;
    std::string s = tokenizer->tok->decode(std::vector<int32_t>(ids, ids + n_ids), skip_special != 0);
    *text = copy_string(s);
    if (text_len) *text_len = s.size();
  });
}

tinyllm_status tinyllm_token_to_id(const tinyllm_tokenizer* tokenizer, const char* token, int32_t* id) {
  return guarded([&] {
    require(tokenizer, "tokenizer");
    require(token, "token");
    require(id, "id");
    int32_t found = tokenizer->tok->token_to_id(token);
    if (found < 0) tinyllm::fail(TINYLLM_TOKENIZER_ERROR, std::string("unknown token \"") + token + "\"");
    *id = found;
  });
}

tinyllm_status tinyllm_vocab_size(const tinyllm_tokenizer* tokenizer, size_t* size) {
  return guarded([&] {
    require(tokenizer, "tokenizer");
    require(size, "size");
    *size = tokenizer->tok->vocab_size();
  });
}

tinyllm_status tinyllm_text_stream_new(const tinyllm_tokenizer* tokenizer, int skip_special,
                                       tinyllm_text_stream** out) {
  return guarded([&] {
    require(tokenizer, "tokenizer");
    require(out, "out");
    *out = new tinyllm_text_stream{tinyllm::TextStream(*tokenizer->tok, skip_special != 0), {}};
  });
}

tinyllm_status tinyllm_text_stream_push(tinyllm_text_stream* stream, int32_t id, const char** piece,
                                        size_t* piece_len) {
  return guarded([&] {
    require(stream, "stream");
    require(piece, "piece");
    stream->piece = stream->stream.push(id);
    *piece = stream->piece.c_str();
    if (piece_len) *piece_len = stream->piece.size();
  });
}

tinyllm_status tinyllm_text_stream_finish(tinyllm_text_stream* stream, const char** piece, size_t* piece_len) {
  return guarded([&] {
    require(stream, "stream");
    require(piece, "piece");
    stream->piece = stream->stream.finish();
    *piece = stream->piece.c_str();
    if (piece_len) *piece_len = stream->piece.size();
  });
}

void tinyllm_text_stream_free(tinyllm_text_stream* stream) { delete stream; }

void tinyllm_load_options_init(tinyllm_load_options* options) {
  if (options == nullptr) return;
  *options = tinyllm_load_options{};
  options->struct_size = sizeof(tinyllm_load_options);
  options->max_batch = 8;
}

tinyllm_status tinyllm_engine_load(const char* bundle, const tinyllm_load_options* options,
                                   tinyllm_engine** out) {
  return guarded([&] {
    require(bundle, "bundle");
    require(out, "out");
    *out = nullptr;
    tinyllm::LoadOptions o;
    if (options != nullptr) {
      bool earlier = options->struct_size == offsetof(tinyllm_load_options, fast_forward);
      if (!earlier && options->struct_size < sizeof(tinyllm_load_options))
        tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "options.struct_size is wrong: fill options with tinyllm_load_options_init");
      if (!earlier) o.fast_forward = options->fast_forward;
      if (options->engine) o.engine = options->engine;
      if (options->threads < 0) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "threads must be >= 0");
      o.threads = options->threads;
      o.max_batch = options->max_batch;
      o.max_seq_len = options->max_seq_len;
      o.verify_hashes = options->verify_hashes != 0;
    }
    auto e = std::make_unique<tinyllm_engine>();
    e->engine = tinyllm::Engine::load(bundle, o);
    e->tokenizer.tok = &e->engine->tokenizer();
    *out = e.release();
  });
}

void tinyllm_engine_free(tinyllm_engine* engine) { delete engine; }

const tinyllm_tokenizer* tinyllm_engine_tokenizer(const tinyllm_engine* engine) {
  return engine == nullptr ? nullptr : &engine->tokenizer;
}

tinyllm_status tinyllm_engine_get_info(const tinyllm_engine* engine, tinyllm_engine_info* info) {
  return guarded([&] {
    require(engine, "engine");
    require(info, "info");
    const tinyllm::Engine& e = *engine->engine;
    info->name = e.entry().name.c_str();
    info->target = e.info().target.c_str();
    info->precision = e.info().precision.c_str();
    info->max_seq_len = static_cast<int32_t>(e.max_seq_len());
    info->max_batch = static_cast<int32_t>(e.max_batch());
    info->lora_slots = static_cast<int32_t>(e.info().lora_slots);
    info->vocab_size = static_cast<int32_t>(e.vocab_size());
  });
}

void tinyllm_generation_config_init(tinyllm_generation_config* config) {
  if (config == nullptr) return;
  *config = tinyllm_generation_config{};
  config->struct_size = sizeof(tinyllm_generation_config);
  config->max_new_tokens = 128;
  config->top_p = 1.0;
}

tinyllm_status tinyllm_generate(tinyllm_engine* engine, const tinyllm_prompt* prompts, size_t n_prompts,
                                const tinyllm_generation_config* config, tinyllm_stream_fn on_text,
                                void* user, tinyllm_results** out) {
  return guarded([&] {
    require(engine, "engine");
    require(out, "out");
    *out = nullptr;
    if (n_prompts == 0) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "no prompts given");
    require(prompts, "prompts");
    tinyllm::GenerationConfig c;
    if (config != nullptr) {
      if (config->struct_size < sizeof(tinyllm_generation_config))
        tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "config.struct_size is wrong: fill config with tinyllm_generation_config_init");
      c.max_new_tokens = config->max_new_tokens;
      c.temperature = config->temperature;
      c.top_k = config->top_k;
      c.top_p = config->top_p;
      if (config->has_seed) c.seed = config->seed;
      if (config->n_stop > 0) require(config->stop, "config.stop");
      for (size_t i = 0; i < config->n_stop; ++i) {
        require(config->stop[i], "a stop string");
        c.stop.emplace_back(config->stop[i]);
      }
      c.ignore_eos = config->ignore_eos != 0;
    }
    const tinyllm::Tokenizer& tok = engine->engine->tokenizer();
    std::vector<tinyllm::PromptInput> inputs(n_prompts);
    for (size_t i = 0; i < n_prompts; ++i) {
      const tinyllm_prompt& p = prompts[i];
      if (p.ids != nullptr) inputs[i].ids.assign(p.ids, p.ids + p.n_ids);
      else inputs[i].ids = tok.encode(text_of(p.text, p.text_len));
      if (p.adapter) inputs[i].adapter = p.adapter;
    }
    tinyllm::StreamFn fn;
    if (on_text != nullptr)
      fn = [&](size_t index, std::string_view piece) { return on_text(user, index, piece.data(), piece.size()) == 0; };
    auto results = std::make_unique<tinyllm_results>();
    results->items = engine->engine->generate(inputs, c, fn);
    *out = results.release();
  });
}

size_t tinyllm_results_count(const tinyllm_results* results) {
  return results == nullptr ? 0 : results->items.size();
}

tinyllm_status tinyllm_results_get(const tinyllm_results* results, size_t index, tinyllm_result* out) {
  return guarded([&] {
    require(results, "results");
    require(out, "out");
    if (index >= results->items.size())
      tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "result index " + std::to_string(index) + " is out of range");
    const tinyllm::Generation& g = results->items[index];
    out->text = g.text.c_str();
    out->text_len = g.text.size();
    out->token_ids = g.token_ids.data();
    out->n_tokens = g.token_ids.size();
    out->prompt_tokens = g.prompt_tokens;
    out->finish_reason = g.length ? TINYLLM_FINISH_LENGTH : TINYLLM_FINISH_STOP;
  });
}

void tinyllm_results_free(tinyllm_results* results) { delete results; }

tinyllm_status tinyllm_engine_get_stats(const tinyllm_engine* engine, tinyllm_stats* stats) {
  return guarded([&] {
    require(engine, "engine");
    require(stats, "stats");
    tinyllm::EngineStats s = engine->engine->stats();
    stats->prefill_calls = s.runs.prefill_calls;
    stats->decode_steps = s.runs.decode_steps;
    stats->prompt_tokens = s.runs.prompt_tokens;
    stats->generated_tokens = s.generated_tokens;
    stats->prefill_seconds = s.runs.prefill_seconds;
    stats->decode_seconds = s.runs.decode_seconds;
    stats->generate_seconds = s.generate_seconds;
  });
}

void tinyllm_speculation_stats_init(tinyllm_speculation_stats* stats) {
  if (stats == nullptr) return;
  *stats = tinyllm_speculation_stats{};
  stats->struct_size = sizeof(tinyllm_speculation_stats);
}

tinyllm_status tinyllm_engine_get_speculation_stats(const tinyllm_engine* engine, tinyllm_speculation_stats* stats) {
  return guarded([&] {
    require(engine, "engine");
    require(stats, "stats");
    check_struct_size(stats->struct_size, sizeof(tinyllm_speculation_stats), "tinyllm_speculation_stats", "stats");
    tinyllm::EngineStats s = engine->engine->stats();
    stats->label_forwarded = s.label_forwarded;
    stats->forced_steps = s.forced_steps;
    stats->forced_drafted = s.forced_drafted;
    stats->forced_accepted = s.forced_accepted;
  });
}

}  // extern "C"
