// The C boundary of the run trace (tinyllm/trace.h).
#include "c_api.h"
#include "runtrace.h"
#include "tinyllm/trace.h"

using namespace tinyllm::capi;

extern "C" {

double tinyllm_trace_clock(void) { return tinyllm::trace_clock(); }

tinyllm_status tinyllm_engine_trace(tinyllm_engine* engine, int on) {
  return guarded([&] {
    require(engine, "engine");
    engine->engine->trace().set(on != 0);
  });
}

tinyllm_status tinyllm_engine_trace_take(tinyllm_engine* engine, tinyllm_run_record** records, size_t* n,
                                         size_t* dropped) {
  return guarded([&] {
    require(engine, "engine");
    require(records, "records");
    require(n, "n");
    *records = nullptr;
    *n = 0;
    std::vector<tinyllm::RunRecord> taken = engine->engine->trace().take(dropped);
    std::vector<tinyllm_run_record> out;
    out.reserve(taken.size());
    for (const tinyllm::RunRecord& r : taken)
      out.push_back(tinyllm_run_record{r.prefill ? TINYLLM_RUN_PREFILL : TINYLLM_RUN_DECODE,
                                       static_cast<int32_t>(r.first_row), static_cast<int32_t>(r.rows),
                                       static_cast<int32_t>(r.tokens), r.past, r.start, r.end});
    *records = copy_out(out.data(), out.size());
    *n = out.size();
  });
}

}  // extern "C"
