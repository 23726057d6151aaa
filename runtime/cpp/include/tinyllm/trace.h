/*
 * tinyllm run trace: when and how each ONNX Runtime run of an engine ran, for profilers
 * (`tinyllm profile --runtime cpp`). Off until asked for; while on, each run of the
 * engine (from tinyllm_generate, tinyllm_run_tasks or a server's loop) appends one
 * record of a few dozen bytes. Follows the conventions of tinyllm.h.
 */
#ifndef TINYLLM_TRACE_H
#define TINYLLM_TRACE_H

#include "tinyllm/tinyllm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tinyllm_run_kind {
  TINYLLM_RUN_PREFILL = 0, /* prompt tokens of one or more rows */
  TINYLLM_RUN_DECODE = 1   /* one token per row (or a verify run: several, one row) */
} tinyllm_run_kind;

typedef struct tinyllm_run_record {
  int32_t kind;      /* a tinyllm_run_kind */
  int32_t first_row; /* the first KV row the run computed */
  int32_t rows;      /* rows computed (a server's decode run: its lowest to highest row
                        taking a token) */
  int32_t tokens;    /* prefill: prompt tokens fed, padding not counted; decode: rows (a
                        verify run of forced text: the tokens it fed its one row) */
  int64_t past;      /* prefill, verify: tokens the first row already held (a cached
                        prefix; a verify run's row length) */
  double start;      /* seconds on tinyllm_trace_clock() */
  double end;
} tinyllm_run_record;

/** The trace's clock in seconds (monotonic; its origin is arbitrary). */
TINYLLM_API double tinyllm_trace_clock(void);

/** Start (on != 0; records kept so far are dropped) or stop tracing the engine's runs.
 * At most 1,048,576 records are held; later runs are counted as dropped. */
TINYLLM_API tinyllm_status tinyllm_engine_trace(tinyllm_engine* engine, int on);

/** Take the records held so far, in run order (the trace keeps running if on), and how
 * many runs were dropped since tracing started. Free *records with tinyllm_free. */
TINYLLM_API tinyllm_status tinyllm_engine_trace_take(tinyllm_engine* engine,
                                                     tinyllm_run_record** records, size_t* n,
                                                     size_t* dropped);

/*
 * The serving loop's own step timer, for the time a server spends outside ONNX Runtime
 * (busy_seconds less the runs' time in tinyllm_engine_get_stats). A step is one turn of
 * the server's loop while requests are in flight: it takes the requests submitted since
 * the last step (their prompt ids, adapter slot and cached prefix), plans, runs the
 * engine (prefill runs, then at most one decode run), samples, constrains and streams,
 * and resolves the requests that finished. Always on (two clock reads per step).
 *
 * A decode run computes the rows from the lowest to the highest that take a token (a
 * prompt whose prefill ends in a step decodes in that step's run); a placeholder row is
 * one inside the run that took none (a prompt between chunks, a task left out of the
 * step, a free row).
 */
typedef struct tinyllm_loop_stats {
  size_t struct_size;    /* set by tinyllm_loop_stats_init */
  uint64_t steps;        /* loop steps since tinyllm_server_start */
  uint64_t decode_steps; /* of which ran a decode run (the decode runs) */
  double busy_seconds;   /* wall time of the steps, ONNX Runtime's runs included; the loop's
                            waits for work, and for the engine while a direct call holds it,
                            are not */
  /* Added after the fields above (a struct_size ending at busy_seconds, from an earlier
   * trace.h, gets those fields only). */
  uint64_t decode_rows;             /* rows the decode runs computed */
  uint64_t decode_placeholder_rows; /* of which took no token */
} tinyllm_loop_stats;

TINYLLM_API void tinyllm_loop_stats_init(tinyllm_loop_stats* stats);
/** The server's loop counters; stats->struct_size must be this library's (from
 * tinyllm_loop_stats_init) or an earlier trace.h's (the fields it has are filled), else
 * TINYLLM_INVALID_ARGUMENT naming both sizes. */
TINYLLM_API tinyllm_status tinyllm_server_get_loop_stats(const tinyllm_server* server,
                                                         tinyllm_loop_stats* stats);

#ifdef __cplusplus
}
#endif

#endif /* TINYLLM_TRACE_H */
