// The engine: a bundle's exported engine, its tokenizer and the decode loop. Generation
// has the Python engine's semantics (runtime/engine.py generate_ids): prompts batched
// up to max_batch rows (right-padded prefill, then one decode step per token), row i
// sampling with seed + i, end-of-sequence tokens and stop strings ending a row,
// max_new_tokens and the context limit ending it with "length".
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bundle.h"
#include "constraints.h"
#include "session.h"
#include "taskoutput.h"
#include "tasks.h"
#include "tokenizer.h"

namespace tinyllm {

struct LoadOptions {
  std::string engine;
  int threads = 0;
  int64_t max_batch = 8;
  int64_t max_seq_len = 0;
  bool verify_hashes = false;
};

struct GenerationConfig {
  int64_t max_new_tokens = 128;
  double temperature = 0;
  int64_t top_k = 0;
  double top_p = 1.0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
};

struct PromptInput {
  std::vector<int32_t> ids;
  std::string adapter;  // "" = base model
};

struct Generation {
  std::string text;
  std::vector<int32_t> token_ids;
  size_t prompt_tokens = 0;
  bool length = false;  // finish reason: false = stop, true = length
};

struct EngineStats {
  RunTimes runs;
  uint64_t generated_tokens = 0;
  double generate_seconds = 0;
};

struct TaskRequest {
  std::string task, text;
};

struct TaskOptions {
  int64_t max_new_tokens = 0;  // 0: the task's own limit
  double temperature = 0;
  std::optional<uint64_t> seed;
  bool constrain = true;
  double deadline_s = 0;  // serving: give up this many seconds after submit (0: never)
};

struct TaskResult {
  Generation generation;
  ParsedOutput parsed;
};

struct TaskPrompt {
  std::vector<int32_t> ids;
  size_t prefix_len = 0;  // leading ids that are the task's fixed prefix
};

struct Row;

// Streaming: (prompt index, new text); return false to cancel.
using StreamFn = std::function<bool(size_t, std::string_view)>;

class Engine {
 public:
  static std::unique_ptr<Engine> load(const std::string& bundle, const LoadOptions& options);

  // Throws TINYLLM_CANCELLED when the callback cancels.
  std::vector<Generation> generate(const std::vector<PromptInput>& prompts,
                                   const GenerationConfig& config, const StreamFn& on_text);

  // Task requests (the engine's task table), answered as the Python runtime answers them.
  std::vector<TaskResult> run_tasks(const std::vector<TaskRequest>& requests, const TaskOptions& options);
  TaskPrompt task_prompt(const std::string& task, std::string_view text) const;
  // The task table (an empty one when the engine was exported without it).
  const TaskTable& tasks() const { return tasks_; }

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineEntry& entry() const { return entry_; }
  const EngineInfo& info() const { return info_; }
  int64_t max_batch() const { return session_->max_batch(); }
  int64_t max_seq_len() const { return session_->max_seq_len(); }
  int64_t vocab_size() const { return session_->vocab_size(); }
  EngineStats stats() const;
  // The session's run trace (tinyllm/trace.h; it has a lock of its own).
  RunTrace& trace() { return session_->trace(); }

 private:
  friend class Server;  // the serving loop drives the session and rows directly
  void check(const std::vector<PromptInput>& prompts, const GenerationConfig& config) const;
  // Generate rows (prompt, slot, limits and rules set) in chunks of max_batch.
  std::vector<Generation> run_rows(std::vector<Row>& rows, const GenerationConfig& config,
                                   const StreamFn& on_text);
  void run_chunk(Row* rows, size_t count, const GenerationConfig& config, const StreamFn& on_text);
  int32_t pick(Row& row, const float* logits, const GenerationConfig& config);
  void advance(Row& row, const float* logits, const GenerationConfig& config, bool live_text);
  void stream(Row& row, const GenerationConfig& config, const StreamFn& on_text) const;
  Row task_row(const TaskRequest& request, const TaskOptions& options);
  JsonTokens& json_tokens();

  Bundle bundle_;
  EngineEntry entry_;
  EngineInfo info_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<DecoderSession> session_;
  std::vector<int32_t> stop_ids_;
  TaskTable tasks_;
  std::map<std::string, LabelTrie> tries_;
  std::unique_ptr<JsonTokens> json_tokens_;
  mutable std::mutex mutex_;
  EngineStats stats_;
};

}  // namespace tinyllm
