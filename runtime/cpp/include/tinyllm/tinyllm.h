/*
 * tinyllm C API: load a tinyllm bundle's exported engine, tokenize, and generate.
 *
 * Conventions (the whole API follows them):
 *  - Handles are opaque; each *_load / *_new has a matching *_free that accepts NULL.
 *  - Every function that can fail returns a tinyllm_status. On failure,
 *    tinyllm_last_error() returns a message saying what was wrong and what to do; the
 *    message is per thread and stays valid until that thread's next call into tinyllm.
 *  - No C++ exception ever crosses this boundary.
 *  - Strings are UTF-8. Text in is (pointer, length); text out is (pointer, length) and
 *    is also NUL-terminated.
 *  - Arrays and strings that the library allocates for the caller are released with
 *    tinyllm_free(). Pointers inside a tinyllm_results live as long as the results.
 *  - Option structs start with struct_size: fill them with the *_init function, then
 *    change what you need. Later versions only append fields.
 */
#ifndef TINYLLM_H
#define TINYLLM_H

#include <stddef.h>
#include <stdint.h>

#if defined(TINYLLM_STATIC)
#define TINYLLM_API
#elif defined(_WIN32) && defined(TINYLLM_BUILDING)
#define TINYLLM_API __declspec(dllexport)
#elif defined(_WIN32)
#define TINYLLM_API __declspec(dllimport)
#else
#define TINYLLM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Version of the library, e.g. "0.1.0". */
TINYLLM_API const char* tinyllm_version(void);

typedef enum tinyllm_status {
  TINYLLM_OK = 0,
  TINYLLM_INVALID_ARGUMENT = 1, /* a NULL handle or pointer, or an option out of range */
  TINYLLM_BUNDLE_ERROR = 2,     /* a missing, corrupt or unreadable bundle */
  TINYLLM_TOKENIZER_ERROR = 3,  /* invalid UTF-8, a negative token id, an unsupported tokenizer */
  TINYLLM_CONTEXT_ERROR = 4,    /* a prompt that is empty or does not fit the context */
  TINYLLM_RUNTIME_ERROR = 5,    /* ONNX Runtime could not be loaded or failed */
  TINYLLM_UNSUPPORTED = 6,      /* something this version of the library does not do yet */
  TINYLLM_CANCELLED = 7,        /* a streaming callback asked to stop */
  TINYLLM_OUT_OF_MEMORY = 8,
  TINYLLM_INTERNAL_ERROR = 9,
  TINYLLM_NOT_FOUND = 10,         /* an unknown task, or a task's adapter the bundle lacks */
  TINYLLM_QUEUE_FULL = 11,        /* the server's queue is full: retry later */
  TINYLLM_CLOSED = 12,            /* the server is shut down (or shut down before the end) */
  TINYLLM_DEADLINE_EXCEEDED = 13  /* a request passed its deadline */
} tinyllm_status;

/** The calling thread's message for its last failed call ("" if none). */
TINYLLM_API const char* tinyllm_last_error(void);

/** A short constant name for a status, e.g. "TINYLLM_BUNDLE_ERROR". */
TINYLLM_API const char* tinyllm_status_name(tinyllm_status status);

/** Release an array or string that the library returned. NULL is ignored. */
TINYLLM_API void tinyllm_free(void* p);

/* ---- Tokenizer ------------------------------------------------------------------- */

typedef struct tinyllm_tokenizer tinyllm_tokenizer;

/**
 * Load a tokenizer: `path` is a tokenizer.json file, or a folder holding tokenizer.json
 * (and optionally tokenizer_config.json, for the end-of-sequence and padding tokens).
 */
TINYLLM_API tinyllm_status tinyllm_tokenizer_load(const char* path, tinyllm_tokenizer** out);
TINYLLM_API void tinyllm_tokenizer_free(tinyllm_tokenizer* tokenizer);

/** Token ids of `text` (no special tokens are added). Free *ids with tinyllm_free. */
TINYLLM_API tinyllm_status tinyllm_encode(const tinyllm_tokenizer* tokenizer, const char* text,
                                          size_t text_len, int32_t** ids, size_t* n_ids);

/** Text of `ids`; special tokens are left out when skip_special != 0; ids the tokenizer
 * does not know decode to nothing (as in the tokenizers library). Free *text. */
TINYLLM_API tinyllm_status tinyllm_decode(const tinyllm_tokenizer* tokenizer, const int32_t* ids,
                                          size_t n_ids, int skip_special, char** text,
                                          size_t* text_len);

/** The id of a token given by its text (a vocabulary entry or an added token). */
TINYLLM_API tinyllm_status tinyllm_token_to_id(const tinyllm_tokenizer* tokenizer,
                                               const char* token, int32_t* id);

/** Number of ids the tokenizer knows (added tokens included). */
TINYLLM_API tinyllm_status tinyllm_vocab_size(const tinyllm_tokenizer* tokenizer, size_t* size);

/**
 * Incremental decoding: push ids one at a time and get the text they complete. A piece
 * never ends inside a UTF-8 sequence: incomplete bytes are held back until they complete
 * (or until finish, where an incomplete tail becomes U+FFFD). The pieces joined equal
 * tinyllm_decode of all the ids.
 */
typedef struct tinyllm_text_stream tinyllm_text_stream;

TINYLLM_API tinyllm_status tinyllm_text_stream_new(const tinyllm_tokenizer* tokenizer,
                                                   int skip_special, tinyllm_text_stream** out);
/** *piece stays valid until the next call on this stream. */
TINYLLM_API tinyllm_status tinyllm_text_stream_push(tinyllm_text_stream* stream, int32_t id,
                                                    const char** piece, size_t* piece_len);
TINYLLM_API tinyllm_status tinyllm_text_stream_finish(tinyllm_text_stream* stream,
                                                      const char** piece, size_t* piece_len);
TINYLLM_API void tinyllm_text_stream_free(tinyllm_text_stream* stream);

/* ---- Engine ---------------------------------------------------------------------- */

typedef struct tinyllm_engine tinyllm_engine;

typedef struct tinyllm_load_options {
  size_t struct_size;
  const char* engine;    /* engine name under engines/ (NULL: the first onnx-cpu engine) */
  int32_t threads;       /* intra-op threads (0: the CPUs this process may run on) */
  int32_t max_batch;     /* rows generated together; KV memory is reserved for all (8) */
  int32_t max_seq_len;   /* context per row (0: the export's maximum, capped at 4096) */
  int32_t verify_hashes; /* nonzero: check every file's sha256 (sizes are always checked) */
  /* Added after the fields above (a struct_size ending at verify_hashes, from an earlier
   * tinyllm.h, is accepted and gets the defaults of the fields it lacks). */
  int32_t fast_forward; /* forced text in one verify run (docs/cpp.md): 0 on where it keeps
                           greedy outputs exact (fp32 engines whose graph verifies), -1 off,
                           1 on (TINYLLM_UNSUPPORTED where it is not exact) (0) */
} tinyllm_load_options;

TINYLLM_API void tinyllm_load_options_init(tinyllm_load_options* options);

/** Load an exported engine of a bundle (`bundle` is the NAME.tllm folder). */
TINYLLM_API tinyllm_status tinyllm_engine_load(const char* bundle,
                                               const tinyllm_load_options* options,
                                               tinyllm_engine** out);
TINYLLM_API void tinyllm_engine_free(tinyllm_engine* engine);

/** The engine's tokenizer (owned by the engine; NULL for a NULL engine). */
TINYLLM_API const tinyllm_tokenizer* tinyllm_engine_tokenizer(const tinyllm_engine* engine);

typedef struct tinyllm_engine_info {
  const char* name;      /* the engine's folder name, e.g. "onnx-cpu-int4" */
  const char* target;    /* "onnx-cpu" */
  const char* precision; /* "fp32", "int8", "int4" */
  int32_t max_seq_len;   /* context per row as loaded */
  int32_t max_batch;
  int32_t lora_slots;    /* 0: the engine has no multi-LoRA inputs */
  int32_t vocab_size;    /* rows of the logits */
} tinyllm_engine_info;

/** Strings in *info live as long as the engine. */
TINYLLM_API tinyllm_status tinyllm_engine_get_info(const tinyllm_engine* engine,
                                                   tinyllm_engine_info* info);

typedef struct tinyllm_generation_config {
  size_t struct_size;
  int32_t max_new_tokens; /* >= 1 (128) */
  double temperature;     /* 0: greedy (0) */
  int32_t top_k;          /* 0: off */
  double top_p;           /* in (0, 1] (1) */
  int32_t has_seed;       /* nonzero: sampling is repeatable; row i uses seed + i */
  uint64_t seed;
  const char* const* stop; /* stop strings: generation ends there, and they are cut */
  size_t n_stop;
  int32_t ignore_eos; /* nonzero: do not stop at end-of-sequence tokens (benchmarks) */
} tinyllm_generation_config;

TINYLLM_API void tinyllm_generation_config_init(tinyllm_generation_config* config);

typedef struct tinyllm_prompt {
  const char* text; /* UTF-8 prompt; used when ids is NULL */
  size_t text_len;
  const int32_t* ids; /* or the prompt's token ids */
  size_t n_ids;
  const char* adapter; /* a task of the bundle whose LoRA adapter this row uses; NULL: none */
} tinyllm_prompt;

/**
 * Streaming callback: `piece` is new text of prompt `index` (never a partial UTF-8
 * sequence, never text a stop string will cut). Return 0 to go on, nonzero to cancel
 * (tinyllm_generate then returns TINYLLM_CANCELLED).
 */
typedef int (*tinyllm_stream_fn)(void* user, size_t index, const char* piece, size_t piece_len);

typedef enum tinyllm_finish_reason {
  TINYLLM_FINISH_STOP = 0,  /* an end-of-sequence token or a stop string */
  TINYLLM_FINISH_LENGTH = 1 /* max_new_tokens, or the context limit */
} tinyllm_finish_reason;

typedef struct tinyllm_results tinyllm_results;

/**
 * Generate for `n_prompts` prompts, batched up to max_batch rows at a time. Results are
 * the same as one prompt at a time. `config` and `on_text` may be NULL (greedy; no
 * streaming). Free *out with tinyllm_results_free.
 */
TINYLLM_API tinyllm_status tinyllm_generate(tinyllm_engine* engine, const tinyllm_prompt* prompts,
                                            size_t n_prompts,
                                            const tinyllm_generation_config* config,
                                            tinyllm_stream_fn on_text, void* user,
                                            tinyllm_results** out);

typedef struct tinyllm_result {
  const char* text; /* generated text (stop string cut) */
  size_t text_len;
  const int32_t* token_ids; /* generated ids (an end-of-sequence token is not included) */
  size_t n_tokens;
  size_t prompt_tokens;
  tinyllm_finish_reason finish_reason;
} tinyllm_result;

TINYLLM_API size_t tinyllm_results_count(const tinyllm_results* results);
TINYLLM_API tinyllm_status tinyllm_results_get(const tinyllm_results* results, size_t index,
                                               tinyllm_result* out);
TINYLLM_API void tinyllm_results_free(tinyllm_results* results);

typedef struct tinyllm_stats {
  uint64_t prefill_calls;    /* prefill runs of the graph */
  uint64_t decode_steps;     /* decode runs of the graph (verify runs included) */
  uint64_t prompt_tokens;    /* tokens prefilled */
  uint64_t generated_tokens; /* tokens generated (a label's forced tail included) */
  double prefill_seconds;    /* wall time of prefill runs, inside ONNX Runtime */
  double decode_seconds;     /* wall time of decode runs, inside ONNX Runtime */
  double generate_seconds;   /* wall time of tinyllm_generate calls, all included */
} tinyllm_stats;

/* ---- Tasks ----------------------------------------------------------------------- */

/*
 * An engine exported with a task table (engines/NAME/tasks.json) serves its bundle's
 * tasks: the prompt is the task's rendered text around the input, the task's adapter
 * is used, label tasks only write one of their labels and JSON tasks only valid JSON
 * (constrained decoding), and the output is parsed and checked as the Python runtime
 * does (the value, a valid flag and the reason when invalid).
 */

/** Number of tasks the engine serves (0 without a task table). */
TINYLLM_API size_t tinyllm_engine_task_count(const tinyllm_engine* engine);
/** Name of task `index` (in name order); NULL when out of range. Lives as the engine. */
TINYLLM_API const char* tinyllm_engine_task_name(const tinyllm_engine* engine, size_t index);
/** A task's output kind: "label", "json" or "text"; NULL for an unknown task. */
TINYLLM_API const char* tinyllm_engine_task_kind(const tinyllm_engine* engine, const char* task);

/** The prompt token ids of a task's input, and how many of them are the task's fixed
 * prefix (the part the prefix cache may hold). Free *ids with tinyllm_free. */
TINYLLM_API tinyllm_status tinyllm_task_prompt(const tinyllm_engine* engine, const char* task,
                                               const char* text, size_t text_len, int32_t** ids,
                                               size_t* n_ids, size_t* prefix_len);

typedef struct tinyllm_task_options {
  size_t struct_size;
  int32_t max_new_tokens; /* 0: the task's own limit */
  double temperature;     /* 0: greedy (0) */
  int32_t has_seed;       /* nonzero: sampling is repeatable */
  uint64_t seed;
  int32_t constrain;      /* nonzero: constrained decoding of label and JSON tasks (1) */
  double deadline_s;      /* serving: end with TINYLLM_DEADLINE_EXCEEDED this many seconds
                             after submit (0: no deadline; tinyllm_run_tasks ignores it) */
  /* Added after the fields above (a struct_size ending at deadline_s, from an earlier
   * tinyllm.h, is accepted and gets the fields it has). */
  int32_t raw_tool_calls; /* nonzero: a task with tools answers with its call, checked but
                             not run (Python's execute_tools=False); see Tools (0) */
} tinyllm_task_options;

TINYLLM_API void tinyllm_task_options_init(tinyllm_task_options* options);

typedef struct tinyllm_task_request {
  const char* task; /* a task the engine serves */
  const char* text; /* the input, UTF-8 */
  size_t text_len;
} tinyllm_task_request;

typedef struct tinyllm_task_result {
  const char* text; /* the raw generated text (cut at the end of the answer) */
  size_t text_len;
  const char* value; /* the parsed answer: the label, the JSON text, or the answer line */
  size_t value_len;  /* ("" when not valid) */
  int32_t valid;
  const char* reason; /* why the output is not valid ("" when valid) */
  const int32_t* token_ids;
  size_t n_tokens;
  size_t prompt_tokens;
  tinyllm_finish_reason finish_reason;
} tinyllm_task_result;

typedef struct tinyllm_task_results tinyllm_task_results;

/** Run `n` task requests, batched as tinyllm_generate batches prompts. Each answer
 * equals the Python runtime's Engine.run(task, text). `options` may be NULL. */
TINYLLM_API tinyllm_status tinyllm_run_tasks(tinyllm_engine* engine,
                                             const tinyllm_task_request* requests, size_t n,
                                             const tinyllm_task_options* options,
                                             tinyllm_task_results** out);
TINYLLM_API size_t tinyllm_task_results_count(const tinyllm_task_results* results);
TINYLLM_API tinyllm_status tinyllm_task_results_get(const tinyllm_task_results* results,
                                                    size_t index, tinyllm_task_result* out);
TINYLLM_API void tinyllm_task_results_free(tinyllm_task_results* results);

/* ---- Tools ----------------------------------------------------------------------- */

/*
 * A task with tools (docs/tools.md) does not write its answer: its model writes a call,
 * {"name": "<tool>", "arguments": {...}}, constrained to the tools' argument schemas
 * (the task table carries them), the arguments are checked against the schema, and the
 * tool runs: here, a C callback registered by name on the engine. With `result: answer`
 * the tool's text is the task's answer (parsed and verified like any output of the
 * task); with `result: context` the model reads "\nResult: <text>\n" after its call and
 * writes the answer. A call that does not parse, names another tool, breaks the schema,
 * or whose callback fails or runs out of time makes the output invalid with the reason
 * (valid = 0, reason), as in Python. A request of a task whose tools are not all
 * registered fails at once with TINYLLM_NOT_FOUND naming the missing tool.
 *
 * Raw calls (raw_tool_calls in tinyllm_task_options; Python's execute_tools=False, what
 * `tinyllm serve` answers a client that sent tools): no tool runs and no callback is
 * needed. The call is decoded under the same constraint and checked (it parses, names
 * one of the task's tools, its arguments fit the schema); the answer is the call: text
 * is the call as written (streamed like any answer), value {"name": "<tool>",
 * "arguments": {...}} with valid = 1, or valid = 0 and the reason. Its tinyllm_tool_call
 * has the name and arguments, ok = 0 and error "not run: ..." (or the reason).
 */
typedef struct tinyllm_tool_reply tinyllm_tool_reply;

/**
 * A tool. `arguments` is the call's arguments as a JSON object (UTF-8, NUL-terminated,
 * valid during the call), already checked against the tool's schema. Set the result
 * text, or the reason of a failure, with tinyllm_tool_reply_set (the library copies it)
 * and return 0 for a result, nonzero for a failure.
 *
 * Threads: tinyllm_run_tasks calls it on the caller's thread, with the engine held; a
 * server calls it on one of its tool threads (up to 4 calls at once, off the decode
 * loop), so a tool may run concurrently with itself. It must not call into the same
 * engine or server. Time: each tool has a time limit (its timeout_s when the engine was
 * exported, shortened to what is left of the request's deadline). A C callback cannot be
 * interrupted: it always runs to its end, and one that returns after its limit is a
 * failed call ("no result within ... s"), its result dropped. Bound the work yourself.
 */
typedef int (*tinyllm_tool_fn)(void* user, const char* arguments, size_t arguments_len,
                               tinyllm_tool_reply* reply);

/** Set a tool's reply text (valid UTF-8, at most 4096 characters for a result). */
TINYLLM_API tinyllm_status tinyllm_tool_reply_set(tinyllm_tool_reply* reply, const char* text,
                                                  size_t text_len);

/**
 * Register `fn` (with `user`, passed back on every call) as the tool `name` of this
 * engine's tasks; registering a name again replaces it. TINYLLM_NOT_FOUND when no task
 * of the engine calls a tool of that name. `user` must stay valid while the engine (and
 * any server on it) may call the tool: until they are freed.
 */
TINYLLM_API tinyllm_status tinyllm_engine_register_tool(tinyllm_engine* engine, const char* name,
                                                        tinyllm_tool_fn fn, void* user);

/** The call a task with tools made (the Python runtime's TaskOutput.tool_call). The
 * strings live as long as the results (or the request) they came from. */
typedef struct tinyllm_tool_call {
  const char* name; /* the tool the model named ("" when the call did not parse) */
  size_t name_len;
  const char* arguments; /* its arguments as JSON text ("" when the call did not parse) */
  size_t arguments_len;
  int32_t ok;         /* nonzero: result holds the tool's text; 0: error says why not */
  const char* result; /* "" when not ok */
  size_t result_len;
  const char* error; /* "" when ok */
  size_t error_len;
  double seconds; /* the call's own time: its parse, the argument check, the callback */
} tinyllm_tool_call;

/** The tool call of result `index`; TINYLLM_NOT_FOUND when its task has no tools. */
TINYLLM_API tinyllm_status tinyllm_task_results_get_tool_call(const tinyllm_task_results* results,
                                                              size_t index, tinyllm_tool_call* out);

/* ---- Serving ---------------------------------------------------------------------- */

/*
 * A server answers task requests submitted from any thread: one scheduler thread runs
 * them all on the engine with continuous batching (requests join free rows between
 * decode steps, each row with its task's adapter), and the per-task prefix cache (the
 * KV of the prompt text every request of a task starts with). Answers equal
 * tinyllm_run_tasks's. While requests are in flight the server holds the engine
 * (tinyllm_generate and tinyllm_run_tasks wait). Free the server before its engine.
 */
typedef struct tinyllm_server tinyllm_server;
typedef struct tinyllm_request tinyllm_request;

typedef struct tinyllm_server_options {
  size_t struct_size;
  int32_t queue_size;     /* requests waiting beyond the rows in flight (64) */
  double prefix_cache_mb; /* memory for the prefix cache; 0 turns it off (64) */
  /* The scheduler (the Python runtime's SchedulerConfig, same defaults): */
  int32_t max_tasks_per_step; /* distinct tasks in one step (4) */
  int32_t chunk_size;         /* longer prompts are prefilled alone, a chunk per step (256) */
  int32_t prefill_tokens;     /* padded prompt tokens prefilled per step, >= chunk_size (512) */
  double length_ratio;        /* prompts prefilled together differ at most this factor (1.5) */
  double aging;               /* units of predicted work forgiven per second waited (20) */
  double prompt_weight;       /* cost of a prompt token against a generated one (0.05) */
  int32_t fifo;               /* nonzero: static batches in arrival order, no cache (0) */
} tinyllm_server_options;

TINYLLM_API void tinyllm_server_options_init(tinyllm_server_options* options);
TINYLLM_API tinyllm_status tinyllm_server_start(tinyllm_engine* engine,
                                                const tinyllm_server_options* options,
                                                tinyllm_server** out);

/**
 * Queue a request. Fails at once with TINYLLM_NOT_FOUND (an unknown task, or its adapter
 * missing), TINYLLM_CONTEXT_ERROR (the prompt does not fit), TINYLLM_QUEUE_FULL,
 * TINYLLM_CLOSED (the server is closed), TINYLLM_TOKENIZER_ERROR or
 * TINYLLM_INVALID_ARGUMENT (a bad option, or struct_size not from
 * tinyllm_task_options_init). Free *out with
 * tinyllm_request_free (which does not cancel it).
 */
TINYLLM_API tinyllm_status tinyllm_server_submit(tinyllm_server* server,
                                                 const tinyllm_task_request* request,
                                                 const tinyllm_task_options* options,
                                                 tinyllm_request** out);
/**
 * Streaming: called on the server's thread with each new piece of the answer's text
 * (UTF-8, whole characters; the pieces concatenate to the result's text). Keep it short:
 * every request waits while it runs. Return 0 to go on, nonzero to cancel the request.
 */
typedef int (*tinyllm_task_text_fn)(void* user, const char* piece, size_t piece_len);

/** tinyllm_server_submit with a streaming callback (`on_text` may be NULL); `user` must
 * stay valid until the request is done (tinyllm_request_free does not stop it: cancel
 * and wait first). */
TINYLLM_API tinyllm_status tinyllm_server_submit_stream(tinyllm_server* server,
                                                        const tinyllm_task_request* request,
                                                        const tinyllm_task_options* options,
                                                        tinyllm_task_text_fn on_text, void* user,
                                                        tinyllm_request** out);
/** Wait for the answer: TINYLLM_OK and *out filled (valid as long as the request), or
 * the request's failure (TINYLLM_CANCELLED, TINYLLM_CLOSED, ...) with its message. */
TINYLLM_API tinyllm_status tinyllm_request_wait(tinyllm_request* request, tinyllm_task_result* out);
/** The tool call of an answered request (after tinyllm_request_wait returned TINYLLM_OK);
 * TINYLLM_NOT_FOUND when its task has no tools, TINYLLM_INVALID_ARGUMENT before. */
TINYLLM_API tinyllm_status tinyllm_request_get_tool_call(const tinyllm_request* request,
                                                         tinyllm_tool_call* out);
/** Nonzero once the request is answered (tinyllm_request_wait then returns at once). */
TINYLLM_API int tinyllm_request_done(const tinyllm_request* request);
/** When the server started the request's first prefill run, in seconds on
 * tinyllm_trace_clock() (tinyllm/trace.h): its queue wait ends there. Negative until the
 * request has a KV row (waiting, or refused, cancelled or expired before one). */
TINYLLM_API double tinyllm_request_admitted(const tinyllm_request* request);
/** Ask the server to drop the request (it ends with TINYLLM_CANCELLED unless done). */
TINYLLM_API void tinyllm_request_cancel(tinyllm_request* request);
TINYLLM_API void tinyllm_request_free(tinyllm_request* request);

/** Stop accepting requests; finish those in flight (drain != 0) or fail them with
 * TINYLLM_CLOSED; returns when the scheduler thread has ended. */
TINYLLM_API tinyllm_status tinyllm_server_close(tinyllm_server* server, int drain);
/** Close (draining) and free. NULL is ignored. */
TINYLLM_API void tinyllm_server_free(tinyllm_server* server);

typedef struct tinyllm_server_stats {
  uint64_t submitted, completed, cancelled, failed, rejected, invalid;
  size_t queue_depth, running;
  size_t kv_cache_bytes;
  size_t prefix_entries, prefix_bytes, prefix_max_bytes; /* the prefix cache's memory */
  uint64_t prefix_hits, prefix_misses, prefix_tokens_saved;
} tinyllm_server_stats;

TINYLLM_API tinyllm_status tinyllm_server_get_stats(const tinyllm_server* server,
                                                    tinyllm_server_stats* stats);

/** Counters since the engine was loaded. */
TINYLLM_API tinyllm_status tinyllm_engine_get_stats(const tinyllm_engine* engine,
                                                    tinyllm_stats* stats);

/*
 * Tokens the engine wrote without a model run of their own (the Python runtime's
 * stats()["speculation"], same names), whoever asked for them (tinyllm_generate,
 * tinyllm_run_tasks or a server). A label task's trie often allows one token only until
 * the label ends: masked greedy picks it and masked sampling draws it with probability
 * 1, so the loop appends that tail at once and ends the row (label_forwarded). A greedy
 * row whose tool call or JSON literal can only go on with fixed text drafts that text's
 * tokens and feeds them in one verify run, picking every token from its logits as single
 * steps would (forced_*; the load option fast_forward).
 */
typedef struct tinyllm_speculation_stats {
  size_t struct_size;       /* set by tinyllm_speculation_stats_init */
  uint64_t label_forwarded; /* label tokens the trie forced, written without a model run */
  uint64_t forced_steps;    /* verify runs of forced text (counted in decode_steps too) */
  uint64_t forced_drafted;  /* tokens they drafted */
  uint64_t forced_accepted; /* of which the model's picks kept */
} tinyllm_speculation_stats;

TINYLLM_API void tinyllm_speculation_stats_init(tinyllm_speculation_stats* stats);
/** The engine's speculation counters since it was loaded; stats->struct_size must be
 * this library's (from tinyllm_speculation_stats_init), else TINYLLM_INVALID_ARGUMENT. */
TINYLLM_API tinyllm_status tinyllm_engine_get_speculation_stats(const tinyllm_engine* engine,
                                                                tinyllm_speculation_stats* stats);

#ifdef __cplusplus
}
#endif

#endif /* TINYLLM_H */
