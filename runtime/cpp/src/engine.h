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
#include "callconstraint.h"
#include "constraints.h"
#include "forcing.h"
#include "session.h"
#include "taskoutput.h"
#include "tasks.h"
#include "tokenizer.h"
#include "tools.h"

namespace tinyllm {

struct LoadOptions {
  std::string engine;
  int threads = 0;
  int64_t max_batch = 8;
  int64_t max_seq_len = 0;
  bool verify_hashes = false;
  // Forced text in one verify run (runtime/speculative.py check_exact): 0 on where exact
  // (fp32 engines whose graph verifies), -1 off, 1 on (refused where not exact).
  int fast_forward = 0;
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
  uint64_t label_forwarded = 0;  // label tokens the trie forced, written without a model run
  // Verify runs of forced text (runtime/speculative.py SpeculationStats): runs, tokens
  // drafted, tokens kept.
  uint64_t forced_steps = 0, forced_drafted = 0, forced_accepted = 0;
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
  bool raw_tool_calls = false;  // a task with tools answers with its call, not run
};

struct TaskResult {
  Generation generation;
  ParsedOutput parsed;
  std::optional<ToolCall> tool_call;  // a task with tools: the call its model wrote
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
  // The tool callbacks tasks with tools call (thread-safe; see tinyllm_engine_register_tool).
  ToolRegistry& tools() { return tools_; }
  const ToolRegistry& tools() const { return tools_; }
  // Register `fn` as tool `name`: a tool some task of the table calls (else NOT_FOUND).
  void register_tool(const std::string& name, ToolRegistry::Fn fn);

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineEntry& entry() const { return entry_; }
  const EngineInfo& info() const { return info_; }
  int64_t max_batch() const { return session_->max_batch(); }
  int64_t max_seq_len() const { return session_->max_seq_len(); }
  int64_t vocab_size() const { return session_->vocab_size(); }
  bool verifies() const { return session_->verifies(); }  // the graph takes [B, P] logits_index
  bool fast_forwards() const { return fast_forward_; }     // forced text goes in one verify run
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
  // Pick a row's next token from its logits [V] and apply the stop rules and constraints.
  void advance(Row& row, const float* logits, const GenerationConfig& config, bool live_text);
  bool stops(int32_t token, const GenerationConfig& config) const;  // an end-of-sequence id
  // Add a token to a row's output and apply runtime/live.py stopped().
  void append(Row& row, int32_t token, const GenerationConfig& config, bool live_text);
  // A label row: append the tail its trie forces, when it runs to the label's end.
  void finish_label(Row& row, const GenerationConfig& config, bool live_text);
  // Forced text in one step: the tokens a greedy constrained row's constraint forces
  // next (within its token budget and the context), empty when none or fast-forward is
  // off; `verify` feeds the row's next token and `draft` at KV row `kv_row` in one run
  // and advances the row by the logits of each position as plain steps would, keeping
  // draft tokens while they equal its picks (runtime/serving.py _verify and accept);
  // returns the picks it made (positions whose logits it sampled).
  std::vector<int32_t> forced_draft(const Row& row, const GenerationConfig& config);
  size_t verify(Row& row, int64_t kv_row, const std::vector<int32_t>& draft, const GenerationConfig& config,
                bool live_text);
  void stream(Row& row, const GenerationConfig& config, const StreamFn& on_text) const;
  Row task_row(const TaskRequest& request, const TaskOptions& options);
  // Refuse a task with tools this engine cannot run: a table without tools, a tool
  // without a schema, a tool without a callback (unless `raw`: no tool runs).
  void check_tools(const TaskEntry& entry, bool raw) const;
  // The row that writes a `result: context` task's answer after its call (`called`, a
  // finished call row) returned `result` (runtime/router.py after_call).
  Row answer_row(const Row& called, const std::string& result, bool constrain);
  // A call row's outcome: its call run, and the answer when that is the result
  // (`result: answer`) or the call failed; nullopt for `result: context` with a result
  // (then `*call` holds it and answer_row decodes the answer).
  std::optional<TaskResult> run_call(const Row& row, const Generation& generation, double left_s, ToolCall* call);
  // A raw call's result (raw_tool_calls): the call checked against its tool's schema is
  // the answer, {"name": ..., "arguments": {...}} (runtime/router.py check_call).
  TaskResult raw_call(const Row& row, const Generation& generation) const;
  // A `result: context` answer (`answer`, from answer_row) with its call attached.
  TaskResult context_result(const Row& called, const Generation& call_gen, Generation answer, ToolCall call) const;
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
  std::unique_ptr<Forcing> forcing_;
  bool fast_forward_ = false;
  std::map<std::string, std::shared_ptr<const CallShape>> call_shapes_;
  ToolRegistry tools_;
  mutable std::mutex mutex_;
  EngineStats stats_;
};

}  // namespace tinyllm
