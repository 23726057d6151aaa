// tinyllm C++ wrapper: header-only, C++17, over the C API in tinyllm.h. Handles are
// RAII objects and failures throw tinyllm::Error (with the C status and message).
#ifndef TINYLLM_HPP
#define TINYLLM_HPP

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tinyllm/tinyllm.h"

namespace tinyllm {

class Error : public std::runtime_error {
 public:
  Error(tinyllm_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  tinyllm_status status() const noexcept { return status_; }

 private:
  tinyllm_status status_;
};

namespace detail {
inline void check(tinyllm_status status) {
  if (status != TINYLLM_OK) throw Error(status, tinyllm_last_error());
}
struct Free {
  void operator()(void* p) const noexcept { tinyllm_free(p); }
};
}  // namespace detail

// A tokenizer, owned (Tokenizer::load) or borrowed from an engine.
class Tokenizer {
 public:
  static Tokenizer load(const std::string& path) {
    tinyllm_tokenizer* raw = nullptr;
    detail::check(tinyllm_tokenizer_load(path.c_str(), &raw));
    return Tokenizer(raw, true);
  }

  std::vector<int32_t> encode(std::string_view text) const {
    int32_t* ids = nullptr;
    size_t n = 0;
    detail::check(tinyllm_encode(get(), text.data(), text.size(), &ids, &n));
    std::unique_ptr<int32_t, detail::Free> owned(ids);
    return std::vector<int32_t>(ids, ids + n);
  }

  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const {
    char* text = nullptr;
    size_t n = 0;
    detail::check(tinyllm_decode(get(), ids.data(), ids.size(), skip_special ? 1 : 0, &text, &n));
    std::unique_ptr<char, detail::Free> owned(text);
    return std::string(text, n);
  }

  int32_t token_to_id(const std::string& token) const {
    int32_t id = -1;
    detail::check(tinyllm_token_to_id(get(), token.c_str(), &id));
    return id;
  }

  const tinyllm_tokenizer* get() const { return owned_ ? owned_.get() : borrowed_; }

 private:
  friend class Engine;
  struct Deleter {
    void operator()(tinyllm_tokenizer* p) const noexcept { tinyllm_tokenizer_free(p); }
  };
  Tokenizer(tinyllm_tokenizer* raw, bool owned) {
    if (owned) owned_.reset(raw);
  }
  explicit Tokenizer(const tinyllm_tokenizer* borrowed) : borrowed_(borrowed) {}
  std::unique_ptr<tinyllm_tokenizer, Deleter> owned_;
  const tinyllm_tokenizer* borrowed_ = nullptr;
};

struct LoadOptions {
  std::string engine;  // "" = the first onnx-cpu engine
  int threads = 0;
  int max_batch = 8;
  int max_seq_len = 0;
  bool verify_hashes = false;
  int fast_forward = 0;  // forced text in one verify run: 0 where exact, -1 off, 1 on
};

struct GenerationConfig {
  int max_new_tokens = 128;
  double temperature = 0;
  int top_k = 0;
  double top_p = 1.0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
};

struct Prompt {
  std::string text;            // used when ids is empty
  std::vector<int32_t> ids;
  std::string adapter;         // a task with a LoRA adapter; "" = base model
};

struct Generation {
  std::string text;
  std::vector<int32_t> token_ids;
  size_t prompt_tokens = 0;
  tinyllm_finish_reason finish_reason = TINYLLM_FINISH_STOP;
};

// (prompt index, new text) -> false to cancel.
using OnText = std::function<bool(size_t, std::string_view)>;

class Engine {
 public:
  static Engine load(const std::string& bundle, const LoadOptions& options = {}) {
    tinyllm_load_options o;
    tinyllm_load_options_init(&o);
    o.engine = options.engine.empty() ? nullptr : options.engine.c_str();
    o.threads = options.threads;
    o.max_batch = options.max_batch;
    o.max_seq_len = options.max_seq_len;
    o.verify_hashes = options.verify_hashes ? 1 : 0;
    o.fast_forward = options.fast_forward;
    tinyllm_engine* raw = nullptr;
    detail::check(tinyllm_engine_load(bundle.c_str(), &o, &raw));
    return Engine(raw);
  }

  Tokenizer tokenizer() const { return Tokenizer(tinyllm_engine_tokenizer(engine_.get())); }

  tinyllm_engine_info info() const {
    tinyllm_engine_info i{};
    detail::check(tinyllm_engine_get_info(engine_.get(), &i));
    return i;
  }

  tinyllm_stats stats() const {
    tinyllm_stats s{};
    detail::check(tinyllm_engine_get_stats(engine_.get(), &s));
    return s;
  }

  tinyllm_speculation_stats speculation_stats() const {
    tinyllm_speculation_stats s;
    tinyllm_speculation_stats_init(&s);
    detail::check(tinyllm_engine_get_speculation_stats(engine_.get(), &s));
    return s;
  }

  std::vector<Generation> generate(const std::vector<Prompt>& prompts,
                                   const GenerationConfig& config = {},
                                   const OnText& on_text = nullptr) {
    tinyllm_generation_config c;
    tinyllm_generation_config_init(&c);
    c.max_new_tokens = config.max_new_tokens;
    c.temperature = config.temperature;
    c.top_k = config.top_k;
    c.top_p = config.top_p;
    c.has_seed = config.seed.has_value() ? 1 : 0;
    c.seed = config.seed.value_or(0);
    std::vector<const char*> stop;
    for (const std::string& s : config.stop) stop.push_back(s.c_str());
    c.stop = stop.data();
    c.n_stop = stop.size();
    c.ignore_eos = config.ignore_eos ? 1 : 0;
    std::vector<tinyllm_prompt> raw(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      raw[i].text = prompts[i].text.data();
      raw[i].text_len = prompts[i].text.size();
      raw[i].ids = prompts[i].ids.empty() ? nullptr : prompts[i].ids.data();
      raw[i].n_ids = prompts[i].ids.size();
      raw[i].adapter = prompts[i].adapter.empty() ? nullptr : prompts[i].adapter.c_str();
    }
    struct Context {
      const OnText* fn;
      std::exception_ptr error;
    } context{&on_text, nullptr};
    tinyllm_stream_fn callback = nullptr;
    if (on_text) {
      callback = [](void* user, size_t index, const char* piece, size_t len) -> int {
        auto* ctx = static_cast<Context*>(user);
        try {
          return (*ctx->fn)(index, std::string_view(piece, len)) ? 0 : 1;
        } catch (...) {  // never unwind through the C library: rethrow after it returns
          ctx->error = std::current_exception();
          return 1;
        }
      };
    }
    tinyllm_results* results = nullptr;
    tinyllm_status status = tinyllm_generate(engine_.get(), raw.data(), raw.size(), &c, callback,
                                             &context, &results);
    if (context.error) std::rethrow_exception(context.error);
    detail::check(status);
    std::unique_ptr<tinyllm_results, void (*)(tinyllm_results*)> owned(results, tinyllm_results_free);
    std::vector<Generation> out(tinyllm_results_count(results));
    for (size_t i = 0; i < out.size(); ++i) {
      tinyllm_result r{};
      detail::check(tinyllm_results_get(results, i, &r));
      out[i].text.assign(r.text, r.text_len);
      out[i].token_ids.assign(r.token_ids, r.token_ids + r.n_tokens);
      out[i].prompt_tokens = r.prompt_tokens;
      out[i].finish_reason = r.finish_reason;
    }
    return out;
  }

  Generation generate(const std::string& prompt, const GenerationConfig& config = {},
                      const OnText& on_text = nullptr) {
    return generate(std::vector<Prompt>{Prompt{prompt, {}, {}}}, config, on_text).front();
  }

  tinyllm_engine* get() const { return engine_.get(); }

 private:
  struct Deleter {
    void operator()(tinyllm_engine* p) const noexcept { tinyllm_engine_free(p); }
  };
  explicit Engine(tinyllm_engine* raw) : engine_(raw) {}
  std::unique_ptr<tinyllm_engine, Deleter> engine_;
};

}  // namespace tinyllm

#endif  // TINYLLM_HPP
