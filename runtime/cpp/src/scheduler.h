// The serving scheduler (runtime/scheduler.py, same policy and knobs): plain data, no
// tensors. Each step the server asks schedule() for a StepPlan (which requests prefill
// which prompt tokens into which KV rows, which rows decode, which requests expired or
// were cancelled), runs it, and reports back (prefilled, decoded, finish).
//
// Policy continuous: candidates in order of predicted remaining work (a LengthPredictor
// estimate of the output plus a small cost per prompt token) minus an aging credit per
// second waited; at most max_tasks_per_step distinct tasks run in one step; prompts of
// similar length are prefilled together in contiguous rows; a prompt longer than
// chunk_size is prefilled alone, one chunk per step; a request with a cached task prefix
// is prefilled alone after it. Policy fifo: static batches in arrival order.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tinyllm {

struct SchedulerConfig {
  size_t max_rows = 8;
  size_t queue_size = 64;  // 0: no request waits (each needs a free row at submit)
  size_t max_tasks_per_step = 4;
  int64_t chunk_size = 256;
  int64_t prefill_tokens = 512;
  double length_ratio = 1.5;
  double aging = 20.0;
  double prompt_weight = 0.05;
  bool fifo = false;
  // Throws TINYLLM_INVALID_ARGUMENT naming the bad knob.
  void check() const;
};

struct SchedRequest {
  uint64_t id = 0;
  std::string task;
  int64_t prompt_len = 0, max_new_tokens = 0;
  double arrival = 0;
  std::optional<double> deadline;
  double predicted_out = 1;
  int64_t prefilled = 0, generated = 0, cached = 0;
  int64_t row = -1;  // -1: waiting
  bool cancelled = false;

  bool running() const { return row >= 0; }
  bool decoding() const { return row >= 0 && prefilled >= prompt_len; }
  double remaining_work(double prompt_weight) const;
};

// Prompt tokens [start, end) of one request go into KV row `row`.
struct PrefillRow {
  uint64_t request;
  int64_t row, start, end;
};

// What one step does. `decode` lists the requests that take one token from the step's
// decode run, after the prefills: those already decoding and those whose prompt the
// prefills complete (the server skips one that its first token ended).
struct StepPlan {
  std::vector<std::vector<PrefillRow>> prefill;  // each group: contiguous rows, in order
  std::vector<uint64_t> decode;
  std::vector<SchedRequest> expired, cancelled;
  bool empty() const { return prefill.empty() && decode.empty() && expired.empty() && cancelled.empty(); }
};

// Per-task output length: mean_y + b (x - mean_x) from exponentially weighted moments.
class LengthPredictor {
 public:
  explicit LengthPredictor(double decay = 0.1) : decay_(decay) {}
  double predict(const std::string& task, int64_t prompt_len, int64_t max_new_tokens) const;
  void observe(const std::string& task, int64_t prompt_len, int64_t output_len);

 private:
  struct Moments {
    int64_t n = 0;
    double mean_x = 0, mean_y = 0, var_x = 0, cov_xy = 0;
  };
  double decay_;
  std::map<std::string, Moments> tasks_;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerConfig& config);

  // Queue a request (its output length is predicted now); throws TINYLLM_QUEUE_FULL.
  void admit(SchedRequest request);
  void cancel(uint64_t id);
  void prefilled(uint64_t id, int64_t end) { requests_.at(id).prefilled = end; }
  void decoded(uint64_t id) { ++requests_.at(id).generated; }
  // Remove a request, free its row, learn its output length when `observe`.
  SchedRequest finish(uint64_t id, bool observe);
  // The next step's plan; expired (now >= deadline) and cancelled requests leave here.
  StepPlan schedule(double now);
  // Lower runs first: predicted remaining work minus the aging credit.
  double priority(const SchedRequest& r, double now) const;

  SchedRequest* find(uint64_t id);
  const std::map<uint64_t, SchedRequest>& requests() const { return requests_; }
  size_t running_count() const;
  size_t waiting_count() const { return requests_.size() - running_count(); }
  const SchedulerConfig& config() const { return config_; }
  LengthPredictor& predictor() { return predictor_; }
  const std::vector<bool>& free_rows() const { return free_rows_; }

 private:
  StepPlan plan_fifo();
  StepPlan plan_continuous(double now);
  std::vector<std::vector<PrefillRow>> admit_cached(const std::vector<SchedRequest*>& admitted, int64_t budget);
  std::vector<PrefillRow> new_group(const std::vector<SchedRequest*>& admitted, int64_t budget);
  void take(SchedRequest& r, int64_t row);
  std::pair<int64_t, int64_t> run_of_free_rows(size_t n) const;

  SchedulerConfig config_;
  LengthPredictor predictor_;
  std::map<uint64_t, SchedRequest> requests_;  // by id = arrival order
  std::vector<bool> free_rows_;
};

}  // namespace tinyllm
