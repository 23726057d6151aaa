// The C boundary of the server (see the Serving section of tinyllm.h).
#include <cstddef>

#include "c_api.h"
#include "server.h"
#include "tinyllm/trace.h"

using namespace tinyllm::capi;

struct tinyllm_server {
  std::unique_ptr<tinyllm::Server> server;
};

struct tinyllm_request {
  std::shared_ptr<tinyllm::Request> request;
};

extern "C" {

void tinyllm_server_options_init(tinyllm_server_options* options) {
  if (options == nullptr) return;
  *options = tinyllm_server_options{};
  options->struct_size = sizeof(tinyllm_server_options);
  options->queue_size = 64;
  options->prefix_cache_mb = 64.0;
  tinyllm::SchedulerConfig d;
  options->max_tasks_per_step = static_cast<int32_t>(d.max_tasks_per_step);
  options->chunk_size = static_cast<int32_t>(d.chunk_size);
  options->prefill_tokens = static_cast<int32_t>(d.prefill_tokens);
  options->length_ratio = d.length_ratio;
  options->aging = d.aging;
  options->prompt_weight = d.prompt_weight;
  options->fifo = d.fifo ? 1 : 0;
}

tinyllm_status tinyllm_server_start(tinyllm_engine* engine, const tinyllm_server_options* options,
                                    tinyllm_server** out) {
  return guarded([&] {
    require(engine, "engine");
    require(out, "out");
    *out = nullptr;
    tinyllm::ServerOptions o;
    if (options != nullptr) {
      check_struct_size(options->struct_size, sizeof(tinyllm_server_options), "tinyllm_server_options");
      if (options->queue_size < 0) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "queue_size must be >= 0");
      o.queue_size = static_cast<size_t>(options->queue_size);
      o.prefix_cache_mb = options->prefix_cache_mb;
      for (int32_t v : {options->max_tasks_per_step, options->chunk_size, options->prefill_tokens})
        if (v < 1) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "max_tasks_per_step, chunk_size and prefill_tokens must be >= 1");
      o.scheduler.max_tasks_per_step = static_cast<size_t>(options->max_tasks_per_step);
      o.scheduler.chunk_size = options->chunk_size;
      o.scheduler.prefill_tokens = options->prefill_tokens;
      o.scheduler.length_ratio = options->length_ratio;
      o.scheduler.aging = options->aging;
      o.scheduler.prompt_weight = options->prompt_weight;
      o.scheduler.fifo = options->fifo != 0;
    }
    if (engine->engine->tasks().tasks().empty())
      tinyllm::fail(TINYLLM_NOT_FOUND, "the engine has no task table (tasks.json): export it from a bundle with tasks");
    auto s = std::make_unique<tinyllm_server>();
    s->server = std::make_unique<tinyllm::Server>(*engine->engine, o);
    *out = s.release();
  });
}

tinyllm_status tinyllm_server_submit(tinyllm_server* server, const tinyllm_task_request* request,
                                     const tinyllm_task_options* options, tinyllm_request** out) {
  return tinyllm_server_submit_stream(server, request, options, nullptr, nullptr, out);
}

tinyllm_status tinyllm_server_submit_stream(tinyllm_server* server, const tinyllm_task_request* request,
                                            const tinyllm_task_options* options, tinyllm_task_text_fn on_text,
                                            void* user, tinyllm_request** out) {
  return guarded([&] {
    require(server, "server");
    require(request, "request");
    require(out, "out");
    *out = nullptr;
    require(request->task, "request.task");
    tinyllm::TaskRequest r{request->task, std::string(text_of(request->text, request->text_len))};
    auto handle = std::make_unique<tinyllm_request>();
    tinyllm::TaskTextFn stream;
    if (on_text != nullptr)
      stream = [on_text, user](std::string_view piece) { return on_text(user, piece.data(), piece.size()) == 0; };
    handle->request = server->server->submit(r, task_options(options), std::move(stream));
    *out = handle.release();
  });
}

tinyllm_status tinyllm_request_wait(tinyllm_request* request, tinyllm_task_result* out) {
  return guarded([&] {
    require(request, "request");
    require(out, "out");
    tinyllm_status status = request->request->wait();
    if (status != TINYLLM_OK) tinyllm::fail(status, request->request->error());
    const tinyllm::TaskResult& r = request->request->result();
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

tinyllm_status tinyllm_request_get_tool_call(const tinyllm_request* request, tinyllm_tool_call* out) {
  return guarded([&] {
    require(request, "request");
    require(out, "out");
    if (!request->request->done() || request->request->wait() != TINYLLM_OK)
      tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "the request has no answer: call tinyllm_request_wait first (it must return TINYLLM_OK)");
    tool_call_out(request->request->result(), out);
  });
}

int tinyllm_request_done(const tinyllm_request* request) {
  return request != nullptr && request->request->done() ? 1 : 0;
}

double tinyllm_request_admitted(const tinyllm_request* request) {
  return request != nullptr ? request->request->admitted() : -1.0;
}

void tinyllm_request_cancel(tinyllm_request* request) {
  if (request != nullptr) request->request->cancel();
}

void tinyllm_request_free(tinyllm_request* request) { delete request; }

tinyllm_status tinyllm_server_close(tinyllm_server* server, int drain) {
  return guarded([&] {
    require(server, "server");
    server->server->close(drain != 0);
  });
}

void tinyllm_server_free(tinyllm_server* server) { delete server; }

tinyllm_status tinyllm_server_get_stats(const tinyllm_server* server, tinyllm_server_stats* stats) {
  return guarded([&] {
    require(server, "server");
    require(stats, "stats");
    tinyllm::ServerStats s = server->server->stats();
    *stats = tinyllm_server_stats{s.submitted, s.completed, s.cancelled, s.failed, s.rejected, s.invalid,
                                  s.queue_depth, s.running, s.kv_cache_bytes, s.prefix_cache.entries,
                                  s.prefix_cache.bytes, s.prefix_cache.max_bytes, s.prefix_cache.hits,
                                  s.prefix_cache.misses, s.prefix_cache.tokens_saved};
  });
}

void tinyllm_loop_stats_init(tinyllm_loop_stats* stats) {
  if (stats == nullptr) return;
  *stats = tinyllm_loop_stats{};
  stats->struct_size = sizeof(tinyllm_loop_stats);
}

tinyllm_status tinyllm_server_get_loop_stats(const tinyllm_server* server, tinyllm_loop_stats* stats) {
  return guarded([&] {
    require(server, "server");
    require(stats, "stats");
    // A program built with the trace.h before decode_rows passes the struct up to there.
    bool earlier = stats->struct_size == offsetof(tinyllm_loop_stats, decode_rows);
    if (!earlier) check_struct_size(stats->struct_size, sizeof(tinyllm_loop_stats), "tinyllm_loop_stats", "stats");
    tinyllm::LoopStats s = server->server->loop_stats();
    stats->steps = s.steps;
    stats->decode_steps = s.decode_steps;
    stats->busy_seconds = s.busy_seconds;
    if (earlier) return;
    stats->decode_rows = s.decode_rows;
    stats->decode_placeholder_rows = s.decode_placeholder_rows;
  });
}

}  // extern "C"
