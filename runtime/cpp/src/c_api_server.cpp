// The C boundary of the server (see the Serving section of tinyllm.h).
#include "c_api.h"
#include "server.h"

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
}

tinyllm_status tinyllm_server_start(tinyllm_engine* engine, const tinyllm_server_options* options,
                                    tinyllm_server** out) {
  return guarded([&] {
    require(engine, "engine");
    require(out, "out");
    *out = nullptr;
    tinyllm::ServerOptions o;
    if (options != nullptr) {
      if (options->struct_size < sizeof(tinyllm_server_options))
        tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "options.struct_size is wrong: fill options with tinyllm_server_options_init");
      if (options->queue_size < 0) tinyllm::fail(TINYLLM_INVALID_ARGUMENT, "queue_size must be >= 0");
      o.queue_size = static_cast<size_t>(options->queue_size);
      o.prefix_cache_mb = options->prefix_cache_mb;
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
  return guarded([&] {
    require(server, "server");
    require(request, "request");
    require(out, "out");
    *out = nullptr;
    require(request->task, "request.task");
    tinyllm::TaskRequest r{request->task, std::string(text_of(request->text, request->text_len))};
    auto handle = std::make_unique<tinyllm_request>();
    handle->request = server->server->submit(r, task_options(options));
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

int tinyllm_request_done(const tinyllm_request* request) {
  return request != nullptr && request->request->done() ? 1 : 0;
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

}  // extern "C"
