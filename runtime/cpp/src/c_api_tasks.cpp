// The C boundary of task requests (see the Tasks section of tinyllm.h).
#include "c_api.h"

using namespace tinyllm::capi;

extern "C" {

size_t tinyllm_engine_task_count(const tinyllm_engine* engine) {
  return engine == nullptr ? 0 : engine->engine->tasks().tasks().size();
}

const char* tinyllm_engine_task_name(const tinyllm_engine* engine, size_t index) {
  if (engine == nullptr || index >= engine->engine->tasks().tasks().size()) return nullptr;
  auto it = engine->engine->tasks().tasks().begin();
  std::advance(it, static_cast<std::ptrdiff_t>(index));
  return it->first.c_str();
}

const char* tinyllm_engine_task_kind(const tinyllm_engine* engine, const char* task) {
  if (engine == nullptr || task == nullptr) return nullptr;
  const auto& tasks = engine->engine->tasks().tasks();
  auto it = tasks.find(task);
  return it == tasks.end() ? nullptr : it->second.output.c_str();
}

tinyllm_status tinyllm_task_prompt(const tinyllm_engine* engine, const char* task, const char* text,
                                   size_t text_len, int32_t** ids, size_t* n_ids, size_t* prefix_len) {
  return guarded([&] {
    require(engine, "engine");
    require(task, "task");
    require(ids, "ids");
    require(n_ids, "n_ids");
    *ids = nullptr;
    *n_ids = 0;
    tinyllm::TaskPrompt prompt = engine->engine->task_prompt(task, text_of(text, text_len));
    *ids = copy_out(prompt.ids.data(), prompt.ids.size());
    *n_ids = prompt.ids.size();
    if (prefix_len) *prefix_len = prompt.prefix_len;
  });
}

void tinyllm_task_options_init(tinyllm_task_options* options) {
  if (options == nullptr) return;
  *options = tinyllm_task_options{};
  options->struct_size = sizeof(tinyllm_task_options);
  options->constrain = 1;
}

tinyllm_status tinyllm_run_tasks(tinyllm_engine* engine, const tinyllm_task_request* requests, size_t n,
                                 const tinyllm_task_options* options, tinyllm_task_results** out) {
  return guarded([&] {
    require(engine, "engine");
    require(out, "out");
    *out = nullptr;
    if (n == 0) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "no task requests given");
    require(requests, "requests");
    std::vector<tinyllm::TaskRequest> list(n);
    for (size_t i = 0; i < n; ++i) {
      require(requests[i].task, "a request's task");
      list[i].task = requests[i].task;
      list[i].text = std::string(text_of(requests[i].text, requests[i].text_len));
    }
    auto results = std::make_unique<tinyllm_task_results>();
    results->items = engine->engine->run_tasks(list, task_options(options));
    *out = results.release();
  });
}

size_t tinyllm_task_results_count(const tinyllm_task_results* results) {
  return results == nullptr ? 0 : results->items.size();
}

tinyllm_status tinyllm_task_results_get(const tinyllm_task_results* results, size_t index, tinyllm_task_result* out) {
  return guarded([&] {
    require(results, "results");
    require(out, "out");
    if (index >= results->items.size())
      tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "result index " + std::to_string(index) + " is out of range");
    const tinyllm::TaskResult& r = results->items[index];
    out->text = r.generation.text.c_str();
    out->text_len = r.generation.text.size();
    out->value = r.parsed.value.c_str();
    out->value_len = r.parsed.value.size();
    out->valid = r.parsed.valid ? 1 : 0;
    out->reason = r.parsed.reason.c_str();
    out->token_ids = r.generation.token_ids.data();
    out->n_tokens = r.generation.token_ids.size();
    out->prompt_tokens = r.generation.prompt_tokens;
    out->finish_reason = r.generation.length ? TINYLLM_FINISH_LENGTH : TINYLLM_FINISH_STOP;
  });
}

void tinyllm_task_results_free(tinyllm_task_results* results) { delete results; }

tinyllm_status tinyllm_task_results_get_tool_call(const tinyllm_task_results* results, size_t index,
                                                  tinyllm_tool_call* out) {
  return guarded([&] {
    require(results, "results");
    require(out, "out");
    if (index >= results->items.size())
      tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "result index " + std::to_string(index) + " is out of range");
    tool_call_out(results->items[index], out);
  });
}

tinyllm_status tinyllm_tool_reply_set(tinyllm_tool_reply* reply, const char* text, size_t text_len) {
  return guarded([&] {
    require(reply, "reply");
    reply->text = std::string(text_of(text, text_len));
  });
}

tinyllm_status tinyllm_engine_register_tool(tinyllm_engine* engine, const char* name, tinyllm_tool_fn fn,
                                            void* user) {
  return guarded([&] {
    require(engine, "engine");
    require(name, "name");
    if (fn == nullptr) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "fn is NULL: a tool needs a callback");
    engine->engine->register_tool(name, {fn, user});
  });
}

}  // extern "C"
