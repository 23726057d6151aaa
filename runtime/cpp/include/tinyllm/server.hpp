// C++17 wrapper of the task and serving parts of the C API (tinyllm.h): run a bundle's
// tasks on an Engine, or serve them from many threads through a Server. Errors throw
// tinyllm::Error with the status and the message.
#ifndef TINYLLM_SERVER_HPP
#define TINYLLM_SERVER_HPP

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tinyllm/tinyllm.hpp"

namespace tinyllm {

// The call a task with tools made (see tinyllm_tool_call).
struct ToolCall {
  std::string name, arguments;  // arguments: JSON text
  bool ok = false;              // `result` is the tool's text; else `error` says why not
  std::string result, error;
  double seconds = 0;
};

// One task answer: `value` is the label, the JSON text or the answer line when `valid`.
struct TaskOutput {
  std::string text, value, reason;
  bool valid = false;
  std::vector<int32_t> token_ids;
  size_t prompt_tokens = 0;
  tinyllm_finish_reason finish_reason = TINYLLM_FINISH_STOP;
  std::optional<ToolCall> tool_call;  // a task with tools: its call
};

// A tool (see tinyllm_tool_fn): the call's arguments (JSON text) in, the result text
// out; throwing fails the call, with the exception's what() as the reason.
using ToolFunction = std::function<std::string(std::string_view arguments)>;

namespace detail {
inline int call_tool(void* user, const char* arguments, size_t len, tinyllm_tool_reply* reply) {
  try {
    std::string result = (*static_cast<const ToolFunction*>(user))(std::string_view(arguments, len));
    return tinyllm_tool_reply_set(reply, result.data(), result.size()) == TINYLLM_OK ? 0 : 1;
  } catch (const std::exception& e) {  // nothing crosses the C boundary
    tinyllm_tool_reply_set(reply, e.what(), std::char_traits<char>::length(e.what()));
  } catch (...) {
  }
  return 1;
}

inline std::optional<ToolCall> tool_call(tinyllm_status status, const tinyllm_tool_call& c) {
  if (status == TINYLLM_NOT_FOUND) return std::nullopt;  // a task without tools
  check(status);
  return ToolCall{std::string(c.name, c.name_len),     std::string(c.arguments, c.arguments_len), c.ok != 0,
                  std::string(c.result, c.result_len), std::string(c.error, c.error_len),        c.seconds};
}

inline TaskOutput task_output(const tinyllm_task_result& r) {
  TaskOutput o;
  o.text.assign(r.text, r.text_len);
  o.value.assign(r.value, r.value_len);
  o.reason = r.reason;
  o.valid = r.valid != 0;
  o.token_ids.assign(r.token_ids, r.token_ids + r.n_tokens);
  o.prompt_tokens = r.prompt_tokens;
  o.finish_reason = r.finish_reason;
  return o;
}
}  // namespace detail

// Register `*fn` as the tool `name` of the engine's tasks; `*fn` must outlive the engine
// (and any server on it), and may be called from several threads at once.
inline void register_tool(Engine& engine, const std::string& name, const ToolFunction* fn) {
  detail::check(tinyllm_engine_register_tool(engine.get(), name.c_str(), &detail::call_tool,
                                             const_cast<ToolFunction*>(fn)));
}

// The tasks the engine serves, by name.
inline std::vector<std::string> task_names(const Engine& engine) {
  std::vector<std::string> names(tinyllm_engine_task_count(engine.get()));
  for (size_t i = 0; i < names.size(); ++i) names[i] = tinyllm_engine_task_name(engine.get(), i);
  return names;
}

// Run one task request on the engine (greedy, constrained, as the Python runtime).
inline TaskOutput run_task(Engine& engine, const std::string& task, const std::string& text) {
  tinyllm_task_request request{task.c_str(), text.data(), text.size()};
  tinyllm_task_results* results = nullptr;
  detail::check(tinyllm_run_tasks(engine.get(), &request, 1, nullptr, &results));
  std::unique_ptr<tinyllm_task_results, void (*)(tinyllm_task_results*)> owned(results, tinyllm_task_results_free);
  tinyllm_task_result r{};
  detail::check(tinyllm_task_results_get(results, 0, &r));
  TaskOutput out = detail::task_output(r);
  tinyllm_tool_call call{};
  out.tool_call = detail::tool_call(tinyllm_task_results_get_tool_call(results, 0, &call), call);
  return out;
}

// Per-request options of Server::submit.
struct SubmitOptions {
  int32_t max_new_tokens = 0;  // 0: the task's own limit
  double deadline_s = 0;       // > 0: fail with TINYLLM_DEADLINE_EXCEEDED after this long
  bool raw_tool_calls = false; // a task with tools answers with its call, not run (tinyllm.h)
  // Streaming: each new piece of the answer's text, on the server's thread; return false
  // to cancel the request.
  std::function<bool(std::string_view)> on_text;
};

// A submitted request: wait() gives the answer or throws its failure.
class Request {
 public:
  Request(Request&&) = default;
  Request& operator=(Request&&) = delete;
  // A streaming request still running is cancelled and waited for: its callback must not
  // outlive it.
  ~Request() {
    if (on_text_ && request_ && !done()) {
      cancel();
      tinyllm_task_result r{};
      (void)tinyllm_request_wait(request_.get(), &r);
    }
  }
  TaskOutput wait() {
    tinyllm_task_result r{};
    detail::check(tinyllm_request_wait(request_.get(), &r));
    TaskOutput out = detail::task_output(r);
    tinyllm_tool_call call{};
    out.tool_call = detail::tool_call(tinyllm_request_get_tool_call(request_.get(), &call), call);
    return out;
  }
  bool done() const { return tinyllm_request_done(request_.get()) != 0; }
  void cancel() { tinyllm_request_cancel(request_.get()); }

 private:
  friend class Server;
  struct Deleter {
    void operator()(tinyllm_request* p) const noexcept { tinyllm_request_free(p); }
  };
  using TextFn = std::function<bool(std::string_view)>;
  Request(tinyllm_request* raw, std::unique_ptr<TextFn> on_text) : on_text_(std::move(on_text)), request_(raw) {}
  std::unique_ptr<TextFn> on_text_;  // outlives the request (freed after it)
  std::unique_ptr<tinyllm_request, Deleter> request_;
};

// Serves an engine's tasks to any number of threads (see tinyllm_server_start). Destroy
// it before its engine; the destructor finishes the requests in flight.
class Server {
 public:
  explicit Server(Engine& engine, int32_t queue_size = 64, double prefix_cache_mb = 64.0)
      : Server(engine, options(queue_size, prefix_cache_mb)) {}
  // All the knobs (scheduler included): fill `options` with tinyllm_server_options_init.
  Server(Engine& engine, const tinyllm_server_options& options) {
    tinyllm_server* raw = nullptr;
    detail::check(tinyllm_server_start(engine.get(), &options, &raw));
    server_.reset(raw);
  }

  Request submit(const std::string& task, const std::string& text, const SubmitOptions& options = {}) {
    tinyllm_task_request request{task.c_str(), text.data(), text.size()};
    tinyllm_task_options o;
    tinyllm_task_options_init(&o);
    o.max_new_tokens = options.max_new_tokens;
    o.deadline_s = options.deadline_s;
    o.raw_tool_calls = options.raw_tool_calls ? 1 : 0;
    std::unique_ptr<Request::TextFn> on_text;
    if (options.on_text) on_text = std::make_unique<Request::TextFn>(options.on_text);
    tinyllm_request* raw = nullptr;
    detail::check(tinyllm_server_submit_stream(server_.get(), &request, &o, on_text ? &forward : nullptr,
                                               on_text.get(), &raw));
    return Request(raw, std::move(on_text));
  }

  void close(bool drain = true) { detail::check(tinyllm_server_close(server_.get(), drain ? 1 : 0)); }

  tinyllm_server_stats stats() const {
    tinyllm_server_stats s{};
    detail::check(tinyllm_server_get_stats(server_.get(), &s));
    return s;
  }

 private:
  static tinyllm_server_options options(int32_t queue_size, double prefix_cache_mb) {
    tinyllm_server_options o;
    tinyllm_server_options_init(&o);
    o.queue_size = queue_size;
    o.prefix_cache_mb = prefix_cache_mb;
    return o;
  }
  static int forward(void* user, const char* piece, size_t len) {
    try {
      return (*static_cast<Request::TextFn*>(user))(std::string_view(piece, len)) ? 0 : 1;
    } catch (...) {
      return 1;  // an exception must not cross the C boundary: cancel instead
    }
  }
  struct Deleter {
    void operator()(tinyllm_server* p) const noexcept { tinyllm_server_free(p); }
  };
  std::unique_ptr<tinyllm_server, Deleter> server_;
};

}  // namespace tinyllm

#endif  // TINYLLM_SERVER_HPP
