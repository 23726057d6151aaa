#include "server.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "error.h"
#include "server_live.h"

namespace tinyllm {
namespace {

SchedulerConfig scheduler_config(const ServerOptions& options, int64_t max_batch) {
  SchedulerConfig c = options.scheduler;
  c.max_rows = static_cast<size_t>(max_batch);
  c.queue_size = options.queue_size;
  return c;
}

}  // namespace

void Request::resolve(tinyllm_status status, const std::string& error, TaskResult result) {
  std::lock_guard<std::mutex> lock(mutex_);
  status_ = status;
  error_ = error;
  result_ = std::move(result);
  done_ = true;
  cond_.notify_all();
}

tinyllm_status Request::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  cond_.wait(lock, [&] { return done_; });
  return status_;
}

bool Request::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

Server::Server(Engine& engine, const ServerOptions& options)
    : engine_(engine), options_(options),
      cache_(static_cast<size_t>(std::max(0.0, options.prefix_cache_mb) * 1024 * 1024)),
      scheduler_(scheduler_config(options, engine.max_batch())) {
  if (!(options.prefix_cache_mb >= 0))
    fail(TINYLLM_INVALID_ARGUMENT, "prefix_cache_mb must be >= 0");
  thread_ = std::thread([this] { loop(); });
}

Server::~Server() {
  close(true);
  stop_tools();  // waits for callbacks still running (they cannot be interrupted)
}

std::shared_ptr<Request> Server::submit(const TaskRequest& request, const TaskOptions& options, TaskTextFn on_text) {
  if (options.max_new_tokens < 0) fail(TINYLLM_INVALID_ARGUMENT, "max_new_tokens must be >= 0 (0: the task's own)");
  if (!(options.temperature >= 0)) fail(TINYLLM_INVALID_ARGUMENT, "temperature must be >= 0");
  if (!(options.deadline_s >= 0) || std::isinf(options.deadline_s))
    fail(TINYLLM_INVALID_ARGUMENT, "deadline_s must be a finite number of seconds >= 0 (0: no deadline)");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closing_) fail(TINYLLM_CLOSED, "the server is closed; start a new one to serve requests");
  }
  TaskPrompt prompt = engine_.task_prompt(request.task, request.text);
  const TaskEntry& entry = engine_.tasks().task(request.task);
  engine_.check_tools(entry, options.raw_tool_calls);
  if (!entry.adapter.empty() && !engine_.bundle_.adapters().count(entry.adapter))
    fail(TINYLLM_NOT_FOUND, "task \"" + entry.name + "\" needs the LoRA adapter \"" + entry.adapter +
                                "\", which the bundle does not have; re-export the engine from a bundle with it");
  int64_t limit = engine_.max_seq_len();
  if (prompt.ids.empty()) fail(TINYLLM_CONTEXT_ERROR, "the prompt is empty: it has no tokens");
  if (static_cast<int64_t>(prompt.ids.size()) >= limit)
    fail(TINYLLM_CONTEXT_ERROR, "the prompt has " + std::to_string(prompt.ids.size()) + " tokens; the engine's context is " +
                                    std::to_string(limit) + " tokens (prompt plus output): shorten the input, or load "
                                    "the engine with a larger max_seq_len");
  auto live = std::make_unique<Live>();
  live->request = std::make_shared<Request>();
  live->request->request_ = request;
  live->request->options_ = options;
  live->request->on_text_ = std::move(on_text);
  std::shared_ptr<Request> handle = live->request;
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_) fail(TINYLLM_CLOSED, "the server is closed; start a new one to serve requests");
  if (scheduler_.waiting_count() + pending_.size() >= options_.queue_size) {
    ++counts_.rejected;
    fail(TINYLLM_QUEUE_FULL, "the queue is full (" + std::to_string(options_.queue_size) +
                                 " requests waiting); retry later, or start the server with a larger queue_size");
  }
  live->id = next_id_++;
  pending_.push_back(live->id);
  live_.emplace(live->id, std::move(live));
  ++counts_.submitted;
  cond_.notify_all();
  return handle;
}

void Server::close(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    drain_ = drain_ && drain;
    cond_.notify_all();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

ServerStats Server::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ServerStats s = counts_;
  s.running = scheduler_.running_count();
  s.queue_depth = scheduler_.waiting_count() + pending_.size();
  s.kv_cache_bytes = engine_.session_->kv_bytes();
  s.prefix_cache = cache_.stats();
  return s;
}

LoopStats Server::loop_stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return loop_;
}

void Server::end(uint64_t id, tinyllm_status status, const std::string& error) {  // lock held
  auto it = live_.find(id);
  if (it == live_.end()) return;
  std::unique_ptr<Live> live = std::move(it->second);
  live_.erase(it);
  if (status != TINYLLM_OK) {
    ++(status == TINYLLM_CANCELLED ? counts_.cancelled : counts_.failed);
    live->request->resolve(status, error, {});
    return;
  }
  if (live->row.calls_tool && !live->row.raw_call) return take_call(std::move(live));  // run off the loop
  TaskResult result;
  Row& row = live->row;
  result.generation.text = row.text;
  result.generation.token_ids = row.tokens;
  result.generation.prompt_tokens = row.prompt.size();
  result.generation.length = row.length || !row.done;
  try {
    if (row.raw_call)  // the call itself is the answer
      result = engine_.raw_call(row, result.generation);
    else if (live->call)  // the answer after a `result: context` call
      result = engine_.context_result(*live->called, live->call_generation, std::move(result.generation), *live->call);
    else
      result.parsed = parse_output(*row.task, row.text);
  } catch (const LibError& e) {
    ++counts_.failed;
    live->request->resolve(e.status(), e.what(), {});
    return;
  }
  ++counts_.completed;
  counts_.invalid += result.parsed.valid ? 0 : 1;
  live->request->resolve(TINYLLM_OK, "", std::move(result));
}

void Server::fail_all(const std::vector<uint64_t>& ids, tinyllm_status status, const std::string& error) {  // lock held
  for (uint64_t id : ids) {
    if (scheduler_.find(id)) scheduler_.finish(id, false);
    end(id, status, error);
  }
}

void Server::loop() {
  std::unique_lock<std::mutex> engine_lock(engine_.mutex_, std::defer_lock);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Draining waits for tool calls too: a `result: context` call still queues its answer.
      cond_.wait(lock, [&] { return (closing_ && (!drain_ || tools_pending_ == 0)) || !live_.empty(); });
      if (closing_ && (!drain_ || (live_.empty() && tools_pending_ == 0))) {
        loop_done_ = true;
        std::vector<uint64_t> cancelled, closed;
        for (auto& [id, live] : live_) (live->request->cancelled_ ? cancelled : closed).push_back(id);
        fail_all(cancelled, TINYLLM_CANCELLED, "the request was cancelled");
        fail_all(closed, TINYLLM_CLOSED, "the server closed before this request finished");
        pending_.clear();
        return;
      }
    }
    if (!engine_lock.owns_lock()) engine_lock.lock();
    auto began = std::chrono::steady_clock::now();  // the step: waits for work or the engine excluded
    prepare();
    std::map<int64_t, uint64_t> rows;  // KV row -> request, for the rows in flight
    StepPlan step = plan(rows);
    DecodeRun decoded;
    try {
      for (const auto& group : step.prefill) prefill(group);
      decoded = decode(step, rows);
    } catch (const std::exception& e) {  // the session failed: fail what ran, keep serving
      tinyllm_status status = TINYLLM_RUNTIME_ERROR;
      if (const auto* lib = dynamic_cast<const LibError*>(&e)) status = lib->status();
      std::vector<uint64_t> ids;
      for (const auto& [row, id] : rows) ids.push_back(id);
      std::lock_guard<std::mutex> lock(mutex_);
      fail_all(ids, status, std::string("the engine step failed: ") + e.what());
    }
    finish_done(began, decoded);
    std::lock_guard<std::mutex> lock(mutex_);
    if (live_.empty() && engine_lock.owns_lock()) engine_lock.unlock();  // direct engine calls may run now
  }
}

}  // namespace tinyllm
