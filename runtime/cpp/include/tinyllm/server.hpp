// C++17 wrapper of the task and serving parts of the C API (tinyllm.h): run a bundle's
// tasks on an Engine, or serve them from many threads through a Server. Errors throw
// tinyllm::Error with the status and the message.
#ifndef TINYLLM_SERVER_HPP
#define TINYLLM_SERVER_HPP

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tinyllm/tinyllm.hpp"

namespace tinyllm {

// One task answer: `value` is the label, the JSON text or the answer line when `valid`.
struct TaskOutput {
  std::string text, value, reason;
  bool valid = false;
  std::vector<int32_t> token_ids;
  size_t prompt_tokens = 0;
  tinyllm_finish_reason finish_reason = TINYLLM_FINISH_STOP;
};

namespace detail {
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
  return detail::task_output(r);
}

// Per-request options of Server::submit.
struct SubmitOptions {
  int32_t max_new_tokens = 0;  // 0: the task's own limit
  double deadline_s = 0;       // > 0: fail with TINYLLM_DEADLINE_EXCEEDED after this long
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
    return detail::task_output(r);
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
