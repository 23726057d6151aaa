#include "server.h"

#include <algorithm>
#include <random>

#include "error.h"
#include "server_live.h"

namespace tinyllm {

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
      rows_(static_cast<size_t>(engine.max_batch())) {
  if (!(options.prefix_cache_mb >= 0))
    fail(TINYLLM_INVALID_ARGUMENT, "prefix_cache_mb must be >= 0");
  thread_ = std::thread([this] { loop(); });
}

Server::~Server() { close(true); }

std::shared_ptr<Request> Server::submit(const TaskRequest& request, const TaskOptions& options) {
  if (options.max_new_tokens < 0) fail(TINYLLM_INVALID_ARGUMENT, "max_new_tokens must be >= 0 (0: the task's own)");
  if (!(options.temperature >= 0)) fail(TINYLLM_INVALID_ARGUMENT, "temperature must be >= 0");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closing_) fail(TINYLLM_CLOSED, "the server is closed; start a new one to serve requests");
  }
  TaskPrompt prompt = engine_.task_prompt(request.task, request.text);
  const TaskEntry& entry = engine_.tasks().task(request.task);
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
  std::shared_ptr<Request> handle = live->request;
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_) fail(TINYLLM_CLOSED, "the server is closed; start a new one to serve requests");
  if (waiting_.size() >= options_.queue_size) {
    ++counts_.rejected;
    fail(TINYLLM_QUEUE_FULL, "the queue is full (" + std::to_string(options_.queue_size) +
                                 " requests waiting); retry later, or start the server with a larger queue_size");
  }
  waiting_.push_back(std::move(live));
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
  s.queue_depth = waiting_.size();
  s.running = static_cast<size_t>(std::count_if(rows_.begin(), rows_.end(), [](const auto& l) { return l != nullptr; }));
  s.kv_cache_bytes = engine_.session_->kv_bytes();
  s.prefix_cache = cache_.stats();
  return s;
}

void Server::end(Live& live, tinyllm_status status, const std::string& error) {  // lock held
  if (status == TINYLLM_OK) {
    TaskResult result;
    Row& row = live.row;
    result.generation.text = row.text;
    result.generation.token_ids = row.tokens;
    result.generation.prompt_tokens = row.prompt.size();
    result.generation.length = row.length || !row.done;
    try {
      result.parsed = parse_output(*row.task, row.text);
    } catch (const LibError& e) {
      ++counts_.failed;
      live.request->resolve(e.status(), e.what(), {});
      return;
    }
    ++counts_.completed;
    counts_.invalid += result.parsed.valid ? 0 : 1;
    live.request->resolve(TINYLLM_OK, "", std::move(result));
    return;
  }
  ++(status == TINYLLM_CANCELLED ? counts_.cancelled : counts_.failed);
  live.request->resolve(status, error, {});
}

void Server::close_out(Live& live) {  // lock held
  if (live.request->cancelled_) end(live, TINYLLM_CANCELLED, "the request was cancelled");
  else end(live, TINYLLM_CLOSED, "the server closed before this request finished");
}

bool Server::admit(std::vector<Live*>& fresh) {  // lock held
  for (auto& live : waiting_)
    if (live && live->request->cancelled_) {
      end(*live, TINYLLM_CANCELLED, "the request was cancelled");
      live.reset();
    }
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), nullptr), waiting_.end());
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (rows_[r] && rows_[r]->request->cancelled_) {
      end(*rows_[r], TINYLLM_CANCELLED, "the request was cancelled");
      rows_[r].reset();
    }
    if (!rows_[r] && !waiting_.empty()) {
      rows_[r] = std::move(waiting_.front());
      waiting_.pop_front();
      rows_[r]->row.index = r;
      fresh.push_back(rows_[r].get());
    }
  }
  return std::any_of(rows_.begin(), rows_.end(), [](const auto& l) { return l != nullptr; });
}

void Server::loop() {
  std::unique_lock<std::mutex> engine_lock(engine_.mutex_, std::defer_lock);
  while (true) {
    std::vector<Live*> fresh;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto running = [&] { return std::any_of(rows_.begin(), rows_.end(), [](const auto& l) { return l != nullptr; }); };
      cond_.wait(lock, [&] { return closing_ || !waiting_.empty() || running(); });
      if (closing_ && (!drain_ || (waiting_.empty() && !running()))) {
        for (auto& live : waiting_) close_out(*live);
        for (auto& live : rows_)
          if (live) close_out(*live);
        waiting_.clear();
        for (auto& l : rows_) l.reset();
        return;
      }
      if (!admit(fresh)) continue;
    }
    if (!engine_lock.owns_lock()) engine_lock.lock();
    try {
      prefill(fresh);
      decode();
    } catch (const std::exception& e) {  // the session failed: fail what ran, keep serving
      std::lock_guard<std::mutex> lock(mutex_);
      tinyllm_status status = TINYLLM_RUNTIME_ERROR;
      if (const auto* lib = dynamic_cast<const LibError*>(&e)) status = lib->status();
      for (auto& live : rows_)
        if (live) end(*live, status, std::string("the engine step failed: ") + e.what());
      for (auto& l : rows_) l.reset();
    }
    finish_done();
    std::lock_guard<std::mutex> lock(mutex_);
    bool idle = std::none_of(rows_.begin(), rows_.end(), [](const auto& l) { return l != nullptr; });
    if (idle && engine_lock.owns_lock()) engine_lock.unlock();  // direct engine calls may run now
  }
}

}  // namespace tinyllm
