// Serving tasks from one engine (runtime/serving.py's decode loop): callers submit task
// requests from any thread; one scheduler thread runs them all, with continuous
// batching. Between decode steps, waiting requests join free KV rows (first come, first
// served), each row with its task's adapter slot; a request whose prompt starts with its
// task's cached prefix gets that KV copied into its row and prefills only the rest; a
// finished or cancelled request frees its row at once. The engine is held by the loop
// while requests are in flight (Engine::generate and run_tasks wait meanwhile).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine.h"
#include "prefixcache.h"

namespace tinyllm {

struct ServerOptions {
  size_t queue_size = 64;         // requests waiting beyond the rows in flight
  double prefix_cache_mb = 64.0;  // 0: no prefix cache
  bool constrain = true;          // label trie and JSON constraint
};

// One request's shared state: the caller waits on it, the loop resolves it.
class Request {
 public:
  // Block until the request is resolved; returns its status (TINYLLM_OK with a result).
  tinyllm_status wait();
  bool done() const;
  void cancel() { cancelled_ = true; }
  const TaskResult& result() const { return result_; }
  const std::string& error() const { return error_; }

 private:
  friend class Server;
  void resolve(tinyllm_status status, const std::string& error, TaskResult result);

  TaskRequest request_;
  TaskOptions options_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  std::condition_variable cond_;
  bool done_ = false;
  tinyllm_status status_ = TINYLLM_OK;
  std::string error_;
  TaskResult result_;
};

struct ServerStats {
  uint64_t submitted = 0, completed = 0, cancelled = 0, failed = 0, rejected = 0, invalid = 0;
  size_t queue_depth = 0, running = 0;
  size_t kv_cache_bytes = 0;
  PrefixCacheStats prefix_cache;
};

class Server {
 public:
  Server(Engine& engine, const ServerOptions& options);
  ~Server();  // close(true)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Queue a task request. Throws at once: TINYLLM_NOT_FOUND (an unknown task, or its
  // adapter missing), TINYLLM_CONTEXT_ERROR (a prompt that does not fit),
  // TINYLLM_QUEUE_FULL, TINYLLM_CLOSED (after close), TINYLLM_TOKENIZER_ERROR.
  std::shared_ptr<Request> submit(const TaskRequest& request, const TaskOptions& options);
  // Stop accepting requests; finish (`drain`) or fail with TINYLLM_CLOSED those in
  // flight; wait for the loop to end.
  void close(bool drain);
  ServerStats stats() const;

 private:
  struct Live;
  void loop();
  bool admit(std::vector<Live*>& fresh);
  void prefill(const std::vector<Live*>& fresh);
  void decode();
  void finish_done();
  void end(Live& live, tinyllm_status status, const std::string& error);
  void close_out(Live& live);

  Engine& engine_;
  ServerOptions options_;
  PrefixCache cache_;
  mutable std::mutex mutex_;  // guards the queue, the rows and the counters
  std::condition_variable cond_;
  std::deque<std::unique_ptr<Live>> waiting_;
  std::vector<std::unique_ptr<Live>> rows_;  // by KV row; null when free
  bool closing_ = false, drain_ = true;
  ServerStats counts_;
  std::thread thread_;
};

}  // namespace tinyllm
