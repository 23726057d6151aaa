// Serving tasks from one engine (runtime/serving.py's decode loop): callers submit task
// requests from any thread; one loop thread runs them all. Each step it asks the
// Scheduler (scheduler.h: the Python runtime's policy) for a plan: prompts of similar
// length prefilled together into free KV rows, long prompts one chunk per step, at most
// max_tasks_per_step tasks, shortest predicted work first with aging, deadlines. Each row
// decodes with its task's adapter slot; a request whose prompt starts with its task's
// cached prefix gets that KV copied into its row and prefills only the rest; a finished,
// cancelled or expired request frees its row at once. The engine is held by the loop
// while requests are in flight (Engine::generate and run_tasks wait meanwhile).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <optional>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine.h"
#include "prefixcache.h"
#include "scheduler.h"

namespace tinyllm {

struct ServerOptions {
  size_t queue_size = 64;         // requests waiting beyond the rows in flight
  double prefix_cache_mb = 64.0;  // 0: no prefix cache
  bool constrain = true;          // label trie and JSON constraint
  SchedulerConfig scheduler;      // max_rows and queue_size are set from the above
};

// Streaming: the new text of a request's answer (UTF-8, never a partial character), on
// the loop thread; return false to cancel the request.
using TaskTextFn = std::function<bool(std::string_view)>;

// One request's shared state: the caller waits on it, the loop resolves it.
class Request {
 public:
  // Block until the request is resolved; returns its status (TINYLLM_OK with a result).
  tinyllm_status wait();
  bool done() const;
  void cancel() { cancelled_ = true; }
  const TaskResult& result() const { return result_; }
  const std::string& error() const { return error_; }
  // trace_clock() seconds when its first prefill run started; < 0 until then.
  double admitted() const { return admitted_.load(); }

 private:
  friend class Server;
  void resolve(tinyllm_status status, const std::string& error, TaskResult result);

  TaskRequest request_;
  TaskOptions options_;
  TaskTextFn on_text_;
  std::atomic<bool> cancelled_{false};
  std::atomic<double> admitted_{-1.0};
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

// The loop's own step timer and decode-run counters (tinyllm_loop_stats). A decode run
// computes the rows from the lowest to the highest taking a token; placeholder rows are
// those inside it that took none (a row between prompt chunks, a task left out, a free
// row).
struct LoopStats {
  uint64_t steps = 0, decode_steps = 0;  // decode_steps: steps that ran a decode run
  uint64_t decode_rows = 0, decode_placeholder_rows = 0;
  double busy_seconds = 0;
};

class Server {
 public:
  Server(Engine& engine, const ServerOptions& options);
  ~Server();  // close(true)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Queue a task request. Throws at once: TINYLLM_NOT_FOUND (an unknown task, or its
  // adapter missing), TINYLLM_CONTEXT_ERROR (a prompt that does not fit),
  // TINYLLM_QUEUE_FULL, TINYLLM_CLOSED (after close), TINYLLM_TOKENIZER_ERROR. A request
  // whose options.deadline_s passes ends with TINYLLM_DEADLINE_EXCEEDED. `on_text` (may
  // be empty) receives the answer's text as it is generated.
  std::shared_ptr<Request> submit(const TaskRequest& request, const TaskOptions& options,
                                  TaskTextFn on_text = nullptr);
  // Stop accepting requests; finish (`drain`) or fail with TINYLLM_CLOSED those in
  // flight; wait for the loop to end.
  void close(bool drain);
  ServerStats stats() const;
  LoopStats loop_stats() const;

 private:
  struct Live;
  struct DecodeRun {  // one step's decode run: rows computed, rows that took a token
    size_t rows = 0, tokens = 0;
  };
  void loop();
  void prepare();
  StepPlan plan(std::map<int64_t, uint64_t>& rows);
  void prefill(const std::vector<PrefillRow>& group);
  DecodeRun decode(const StepPlan& plan, const std::map<int64_t, uint64_t>& rows);
  // Take a row's next token(s) (`take`: an engine advance or verify run, returning the
  // picks it made, each reported to the scheduler as Python's loop does) and stream
  // them; a failure fails this request alone.
  void advance(Live& live, const std::function<size_t()>& take);
  // Resolve the requests that finished, and count the step that began at `began`.
  void finish_done(std::chrono::steady_clock::time_point began, const DecodeRun& decoded);
  void fail_all(const std::vector<uint64_t>& ids, tinyllm_status status, const std::string& error);
  void end(uint64_t id, tinyllm_status status, const std::string& error);
  // Tasks with tools (server_tools.cpp): a finished call row goes to the tool workers,
  // which run the call off the loop, then answer or queue the answer's decoding.
  void take_call(std::unique_ptr<Live> live);  // lock held
  void tool_worker();
  void run_tool(std::unique_ptr<Live> live);
  void stop_tools();

  Engine& engine_;
  ServerOptions options_;
  PrefixCache cache_;
  mutable std::mutex mutex_;  // guards the scheduler, the requests, the cache, the counters
  std::condition_variable cond_;
  Scheduler scheduler_;
  std::map<uint64_t, std::unique_ptr<Live>> live_;  // by request id, as in scheduler_
  std::vector<uint64_t> pending_;  // submitted, not yet prepared and given to scheduler_
  uint64_t next_id_ = 1;
  bool closing_ = false, drain_ = true;
  ServerStats counts_;
  LoopStats loop_;  // written by the loop at the end of each step
  std::thread thread_;
  // The tool workers: calls waiting, calls taken and not yet settled, the threads.
  std::deque<std::unique_ptr<Live>> tool_queue_;
  size_t tools_pending_ = 0;
  bool loop_done_ = false, tools_stop_ = false;
  std::condition_variable tool_cond_;
  std::vector<std::thread> tool_threads_;
};

}  // namespace tinyllm
