// C++17 wrapper of the task and serving parts of the C API (tinyllm.h): run a bundle's
// tasks on an Engine, or serve them from many threads through a Server. Errors throw
// tinyllm::Error with the status and the message.
#ifndef TINYLLM_SERVER_HPP
#define TINYLLM_SERVER_HPP

#include <memory>
#include <string>
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

// A submitted request: wait() gives the answer or throws its failure.
class Request {
 public:
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
  explicit Request(tinyllm_request* raw) : request_(raw) {}
  std::unique_ptr<tinyllm_request, Deleter> request_;
};

// Serves an engine's tasks to any number of threads (see tinyllm_server_start). Destroy
// it before its engine; the destructor finishes the requests in flight.
class Server {
 public:
  explicit Server(Engine& engine, int32_t queue_size = 64, double prefix_cache_mb = 64.0) {
    tinyllm_server_options o;
    tinyllm_server_options_init(&o);
    o.queue_size = queue_size;
    o.prefix_cache_mb = prefix_cache_mb;
    tinyllm_server* raw = nullptr;
    detail::check(tinyllm_server_start(engine.get(), &o, &raw));
    server_.reset(raw);
  }

  Request submit(const std::string& task, const std::string& text) {
    tinyllm_task_request request{task.c_str(), text.data(), text.size()};
    tinyllm_request* raw = nullptr;
    detail::check(tinyllm_server_submit(server_.get(), &request, nullptr, &raw));
    return Request(raw);
  }

  void close(bool drain = true) { detail::check(tinyllm_server_close(server_.get(), drain ? 1 : 0)); }

  tinyllm_server_stats stats() const {
    tinyllm_server_stats s{};
    detail::check(tinyllm_server_get_stats(server_.get(), &s));
    return s;
  }

 private:
  struct Deleter {
    void operator()(tinyllm_server* p) const noexcept { tinyllm_server_free(p); }
  };
  std::unique_ptr<tinyllm_server, Deleter> server_;
};

}  // namespace tinyllm

#endif  // TINYLLM_SERVER_HPP
