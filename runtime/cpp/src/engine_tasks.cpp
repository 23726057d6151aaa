// Task requests on the engine (runtime/router.py route + runtime/serving.py _sample):
// the prompt is the task's rendered text around the input, the row decodes with the
// task's adapter, limit and constraint, and the output is parsed as the router parses it.
#include <algorithm>

#include "engine.h"
#include "error.h"
#include "row.h"

namespace tinyllm {

TaskPrompt Engine::task_prompt(const std::string& name, std::string_view text) const {
  const TaskEntry& entry = tasks_.task(name);
  if (!entry.exact)
    fail(TINYLLM_UNSUPPORTED, "task \"" + name + "\"'s chat template changes its input (it trims or escapes it), so "
                              "its prompt needs the template engine; serve this task from Python");
  if (!utf8::valid(text)) fail(TINYLLM_TOKENIZER_ERROR, "the input of task \"" + name + "\" is not valid UTF-8");
  TaskPrompt prompt;
  std::string rendered = entry.before;
  rendered.append(text);
  rendered += entry.after;
  prompt.ids = tokenizer_->encode(rendered);
  prompt.prefix_len = common_prefix(prompt.ids, entry.prefix_ids);
  return prompt;
}

JsonTokens& Engine::json_tokens() {
  if (!json_tokens_) {
    std::vector<std::string> texts(tokenizer_->vocab_size());
    for (size_t i = 0; i < texts.size(); ++i) texts[i] = tokenizer_->decode({static_cast<int32_t>(i)}, true);
    json_tokens_ = std::make_unique<JsonTokens>(std::move(texts), tokenizer_->eos_token_id());
  }
  return *json_tokens_;
}

void Engine::register_tool(const std::string& name, ToolRegistry::Fn fn) {
  std::string known;
  for (const auto& [task, entry] : tasks_.tasks())
    for (const std::string& tool : entry.tools.names) {
      if (tool == name) {
        tools_.add(name, fn);
        return;
      }
      known += (known.empty() ? "" : ", ") + tool;
    }
  fail(TINYLLM_NOT_FOUND, "no task of this engine calls a tool named \"" + name + "\"; its tasks call: " +
                              (known.empty() ? "no tools" : known));
}

void Engine::check_tools(const TaskEntry& entry, bool raw) const {
  if (entry.legacy_tools)
    fail(TINYLLM_UNSUPPORTED, "task \"" + entry.name + "\" calls tools, but this engine's task table was written "
                              "before tables carried tools (their schemas); re-export the engine with this tinyllm");
  if (!entry.has_tools) return;
  for (const std::string& name : entry.tools.names)
    if (!entry.tools.schemas.count(name))
      fail(TINYLLM_BUNDLE_ERROR, "task \"" + entry.name + "\" calls tool \"" + name + "\", whose argument schema is "
                                 "not in the task table (it was not registered when the engine was exported); "
                                 "register it in Python and re-export the engine");
  std::string missing = raw ? "" : tools_.missing(entry.tools);
  if (!missing.empty())
    fail(TINYLLM_NOT_FOUND, "task \"" + entry.name + "\" calls tool \"" + missing + "\", which has no callback: "
                            "register it with tinyllm_engine_register_tool before serving the task, or "
                            "ask for the call itself (raw_tool_calls)");
}

Row Engine::task_row(const TaskRequest& request, const TaskOptions& options) {
  TaskPrompt prompt = task_prompt(request.task, request.text);
  const TaskEntry& entry = tasks_.task(request.task);
  check_tools(entry, options.raw_tool_calls);
  Row row;
  row.task = &entry;
  row.prompt = std::move(prompt.ids);
  row.prefix_len = prompt.prefix_len;
  row.slot = session_->slots().slot_for(bundle_, entry.adapter);
  if (entry.has_tools) {  // the row writes a call (runtime/router.py route)
    row.calls_tool = true;
    row.raw_call = options.raw_tool_calls;
    row.max_new_tokens = options.max_new_tokens > 0 ? options.max_new_tokens : entry.tools.max_call_tokens;
    if (options.constrain) {
      auto it = call_shapes_.find(entry.name);
      if (it == call_shapes_.end()) it = call_shapes_.emplace(entry.name, CallShape::of(entry.tools, entry.name)).first;
      row.call.emplace(it->second);
    }
    return row;
  }
  row.first_line = entry.first_line;
  row.max_new_tokens = options.max_new_tokens > 0 ? options.max_new_tokens : entry.max_new_tokens;
  if (options.constrain && entry.output == "label") {
    auto it = tries_.find(entry.name);
    if (it == tries_.end()) it = tries_.emplace(entry.name, LabelTrie(entry.label_ids, tokenizer_->eos_token_id())).first;
    row.trie = &it->second;
  }
  if (options.constrain && entry.output == "json") row.json.emplace(entry.json_root.empty() ? 0 : entry.json_root[0]);
  return row;
}

Row Engine::answer_row(const Row& called, const std::string& result, bool constrain) {
  const TaskEntry& entry = *called.task;
  Row row;
  row.task = &entry;
  row.prompt = called.prompt;
  row.prompt.insert(row.prompt.end(), called.tokens.begin(), called.tokens.end());
  std::vector<int32_t> after = tokenizer_->encode(result_text(result));
  row.prompt.insert(row.prompt.end(), after.begin(), after.end());
  row.prefix_len = called.prefix_len;
  row.slot = called.slot;
  row.first_line = entry.first_line;
  row.max_new_tokens = entry.max_new_tokens;  // the answer's own limit, as after_call
  if (static_cast<int64_t>(row.prompt.size()) >= max_seq_len())
    fail(TINYLLM_CONTEXT_ERROR, "task \"" + entry.name + "\": the prompt, the call and its result have " +
                                    std::to_string(row.prompt.size()) + " tokens; the engine's context is " +
                                    std::to_string(max_seq_len()) + ": load the engine with a larger max_seq_len");
  if (constrain && entry.output == "label") {
    auto it = tries_.find(entry.name);
    if (it == tries_.end()) it = tries_.emplace(entry.name, LabelTrie(entry.label_ids, tokenizer_->eos_token_id())).first;
    row.trie = &it->second;
  }
  if (constrain && entry.output == "json") row.json.emplace(entry.json_root.empty() ? 0 : entry.json_root[0]);
  return row;
}

std::optional<TaskResult> Engine::run_call(const Row& row, const Generation& generation, double left_s, ToolCall* out) {
  // runtime/toolrunner.py execute: a call cut by its token limit is refused as such
  bool cut = generation.length && row.call && !row.call->complete();
  ToolCall call = execute_call(*row.task, generation.text, cut, row.tokens.size(), tools_, left_s);
  TaskResult result;
  result.generation = generation;
  if (call.ok && row.task->tools.result == "context") {
    *out = std::move(call);
    return std::nullopt;
  }
  if (call.ok) {  // result: answer
    result.generation.text = call.result;
    result.parsed = parse_output(*row.task, call.result);
  } else {
    result.generation.text.clear();
    result.parsed.valid = false;
    result.parsed.reason = call.error;
  }
  result.tool_call = std::move(call);
  return result;
}

TaskResult Engine::raw_call(const Row& row, const Generation& generation) const {
  bool cut = generation.length && row.call && !row.call->complete();
  ToolCall call = check_call(*row.task, generation.text, cut, row.tokens.size());
  TaskResult result;
  result.generation = generation;
  result.parsed.valid = call.error.empty();
  if (result.parsed.valid) {
    result.parsed.value = "{\"name\": " + json::quote(call.name) + ", \"arguments\": " + call.arguments + "}";
    call.error = "not run: the request asked for the call itself (raw_tool_calls)";
  } else {
    result.parsed.reason = call.error;
  }
  result.tool_call = std::move(call);
  return result;
}

TaskResult Engine::context_result(const Row& called, const Generation& call_gen, Generation answer, ToolCall call) const {
  TaskResult result;
  result.parsed = parse_output(*called.task, answer.text);
  result.generation = std::move(answer);
  std::vector<int32_t> ids = call_gen.token_ids;
  ids.insert(ids.end(), result.generation.token_ids.begin(), result.generation.token_ids.end());
  result.generation.token_ids = std::move(ids);
  result.generation.prompt_tokens = call_gen.prompt_tokens;
  result.tool_call = std::move(call);
  return result;
}

std::vector<TaskResult> Engine::run_tasks(const std::vector<TaskRequest>& requests, const TaskOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (options.max_new_tokens < 0)
    fail(TINYLLM_INVALID_ARGUMENT, "max_new_tokens must be >= 0 (0: the task's own), got " +
                                       std::to_string(options.max_new_tokens));
  GenerationConfig config;
  config.temperature = options.temperature;
  config.seed = options.seed;
  std::vector<Row> rows;
  std::vector<PromptInput> prompts;
  for (const TaskRequest& request : requests) {
    rows.push_back(task_row(request, options));
    prompts.push_back({rows.back().prompt, ""});
  }
  check(prompts, config);
  std::vector<Generation> generations = run_rows(rows, config, nullptr);
  std::vector<TaskResult> results(rows.size());
  // Tasks with tools: run each call (on this thread, in order), then decode the answers
  // of `result: context` tasks together, with the call and its result in context.
  std::vector<size_t> context;
  std::vector<ToolCall> calls;
  std::vector<Row> answers;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].calls_tool) {
      results[i].parsed = parse_output(*rows[i].task, generations[i].text);
      results[i].generation = std::move(generations[i]);
      continue;
    }
    if (rows[i].raw_call) {
      results[i] = raw_call(rows[i], generations[i]);
      continue;
    }
    ToolCall call;
    std::optional<TaskResult> done = run_call(rows[i], generations[i], -1, &call);
    if (done) {
      results[i] = std::move(*done);
      continue;
    }
    answers.push_back(answer_row(rows[i], call.result, options.constrain));
    context.push_back(i);
    calls.push_back(std::move(call));
  }
  if (answers.empty()) return results;
  std::vector<Generation> written = run_rows(answers, config, nullptr);
  for (size_t k = 0; k < context.size(); ++k) {
    size_t i = context[k];
    results[i] = context_result(rows[i], generations[i], std::move(written[k]), std::move(calls[k]));
  }
  return results;
}

}  // namespace tinyllm
