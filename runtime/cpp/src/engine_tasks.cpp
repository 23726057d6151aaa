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

Row Engine::task_row(const TaskRequest& request, const TaskOptions& options) {
  TaskPrompt prompt = task_prompt(request.task, request.text);
  const TaskEntry& entry = tasks_.task(request.task);
  Row row;
  row.task = &entry;
  row.prompt = std::move(prompt.ids);
  row.prefix_len = prompt.prefix_len;
  row.slot = session_->slots().slot_for(bundle_, entry.adapter);
  row.max_new_tokens = options.max_new_tokens > 0 ? options.max_new_tokens : entry.max_new_tokens;
  if (options.constrain && entry.output == "label") {
    auto it = tries_.find(entry.name);
    if (it == tries_.end()) it = tries_.emplace(entry.name, LabelTrie(entry.label_ids, tokenizer_->eos_token_id())).first;
    row.trie = &it->second;
  }
  if (options.constrain && entry.output == "json") row.json.emplace(entry.json_root.empty() ? 0 : entry.json_root[0]);
  return row;
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
  std::vector<TaskResult> results;
  for (size_t i = 0; i < rows.size(); ++i) {
    ParsedOutput parsed = parse_output(*rows[i].task, generations[i].text);
    results.push_back({std::move(generations[i]), std::move(parsed)});
  }
  return results;
}

}  // namespace tinyllm
