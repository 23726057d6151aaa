// The run trace of a DecoderSession (tinyllm/trace.h): one record per ONNX Runtime run
// while on. The session appends under its engine's lock; a profiler takes the records
// from another thread, so the trace has a lock of its own.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace tinyllm {

struct RunRecord {
  bool prefill = false;
  int64_t first_row = 0, rows = 0, tokens = 0, past = 0;
  double start = 0, end = 0;  // trace_clock() seconds
};

// Seconds on the steady clock (tinyllm_trace_clock).
double trace_clock();

class RunTrace {
 public:
  static constexpr size_t kMaxRecords = size_t{1} << 20;

  // Start (dropping what was held) or stop.
  void set(bool on);
  bool on() const { return on_.load(std::memory_order_relaxed); }
  void add(const RunRecord& record);
  // The records held so far (they are handed over), and the runs dropped since start.
  std::vector<RunRecord> take(size_t* dropped);

 private:
  std::atomic<bool> on_{false};
  std::mutex mutex_;
  std::vector<RunRecord> records_;
  size_t dropped_ = 0;
};

}  // namespace tinyllm
