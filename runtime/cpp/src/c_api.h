// Private to the C boundary (c_api*.cpp): the handles' definitions, and the guard that
// turns every exception into a status and the calling thread's message.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "engine.h"
#include "error.h"
#include "tinyllm/tinyllm.h"
#include "tokenizer.h"

struct tinyllm_tokenizer {
  std::unique_ptr<tinyllm::Tokenizer> owned;
  const tinyllm::Tokenizer* tok = nullptr;
};

struct tinyllm_text_stream {
  tinyllm::TextStream stream;
  std::string piece;
};

struct tinyllm_engine {
  std::unique_ptr<tinyllm::Engine> engine;
  tinyllm_tokenizer tokenizer;
};

struct tinyllm_results {
  std::vector<tinyllm::Generation> items;
};

namespace tinyllm::capi {

inline thread_local std::string last_error;

inline tinyllm_status record(tinyllm_status status, const std::string& message) {
  last_error = message;
  return status;
}

// A versioned struct (options, or stats the caller reads) must be the size this library
// was built with (its _init sets it); `what` names the argument in the message.
inline void check_struct_size(size_t given, size_t expected, const char* type, const char* what = "options") {
  if (given != expected)
    tinyllm::fail(TINYLLM_INVALID_ARGUMENT, std::string(what) + ".struct_size is " + std::to_string(given) +
                                                "; this library's " + type + " has " + std::to_string(expected) +
                                                " bytes: fill " + what + " with " + type +
                                                "_init (a program built with another tinyllm.h must be rebuilt)");
}

// A task request's options from the C struct (null: the task's own defaults).
inline tinyllm::TaskOptions task_options(const tinyllm_task_options* options) {
  tinyllm::TaskOptions o;
  if (options == nullptr) return o;
  // A caller built with the tinyllm.h before raw_tool_calls gets the fields it has.
  bool earlier = options->struct_size == offsetof(tinyllm_task_options, raw_tool_calls);
  if (!earlier) check_struct_size(options->struct_size, sizeof(tinyllm_task_options), "tinyllm_task_options");
  o.max_new_tokens = options->max_new_tokens;
  o.temperature = options->temperature;
  if (options->has_seed) o.seed = options->seed;
  o.constrain = options->constrain != 0;
  o.deadline_s = options->deadline_s;
  o.raw_tool_calls = !earlier && options->raw_tool_calls != 0;
  return o;
}

// Run `body`, turning every exception into a status and a message.
template <typename Fn>
tinyllm_status guarded(Fn&& body) {
  try {
    last_error.clear();
    body();
    return TINYLLM_OK;
  } catch (const tinyllm::LibError& e) {
    return record(e.status(), e.what());
  } catch (const std::bad_alloc&) {
    return record(TINYLLM_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return record(TINYLLM_INTERNAL_ERROR, std::string("internal error: ") + e.what());
  } catch (...) {
    return record(TINYLLM_INTERNAL_ERROR, "internal error (unknown exception)");
  }
}

inline void require(const void* p, const char* what) {
  if (p == nullptr) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, std::string(what) + " is NULL");
}

template <typename T>
T* copy_out(const T* data, size_t n) {
  auto* out = static_cast<T*>(std::malloc(std::max<size_t>(n, 1) * sizeof(T)));
  if (out == nullptr) throw std::bad_alloc();
  if (n) std::memcpy(out, data, n * sizeof(T));
  return out;
}

inline char* copy_string(const std::string& s) {
  char* out = copy_out(s.c_str(), s.size() + 1);
  return out;
}

inline std::string_view text_of(const char* text, size_t len) {
  if (text == nullptr && len > 0) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "text is NULL");
  return text == nullptr ? std::string_view() : std::string_view(text, len);
}

}  // namespace tinyllm::capi


struct tinyllm_task_results {
  std::vector<tinyllm::TaskResult> items;
};

namespace tinyllm::capi {

// Fill a tinyllm_tool_call from a result's call (TINYLLM_NOT_FOUND: it has none).
inline void tool_call_out(const tinyllm::TaskResult& r, tinyllm_tool_call* out) {
  if (!r.tool_call) tinyllm::fail(TINYLLM_NOT_FOUND, "this result's task has no tools: it made no tool call");
  const tinyllm::ToolCall& c = *r.tool_call;
  *out = tinyllm_tool_call{c.name.c_str(),   c.name.size(),   c.arguments.c_str(), c.arguments.size(),
                           c.ok ? 1 : 0,     c.result.c_str(), c.result.size(),    c.error.c_str(),
                           c.error.size(),   c.seconds};
}

}  // namespace tinyllm::capi
