#include "scheduler.h"

#include <algorithm>
#include <cmath>

#include "error.h"

namespace tinyllm {

void SchedulerConfig::check() const {
  auto positive = [](const char* name, double v) {
    if (v < 1) fail(TINYLLM_INVALID_ARGUMENT, std::string(name) + " must be >= 1, got " + std::to_string(v));
  };
  positive("max_rows", static_cast<double>(max_rows));
  positive("max_tasks_per_step", static_cast<double>(max_tasks_per_step));
  positive("chunk_size", static_cast<double>(chunk_size));
  if (prefill_tokens < chunk_size)
    fail(TINYLLM_INVALID_ARGUMENT, "prefill_tokens (" + std::to_string(prefill_tokens) + ") must be >= chunk_size (" +
                                       std::to_string(chunk_size) + ")");
  if (!(length_ratio >= 1) || !(aging >= 0) || !(prompt_weight >= 0))
    fail(TINYLLM_INVALID_ARGUMENT, "length_ratio must be >= 1, aging and prompt_weight >= 0");
}

double SchedRequest::remaining_work(double prompt_weight) const {
  double out = std::max(predicted_out - static_cast<double>(generated), 1.0);
  return out + prompt_weight * static_cast<double>(prompt_len - std::max(prefilled, cached));
}

double LengthPredictor::predict(const std::string& task, int64_t prompt_len, int64_t max_new_tokens) const {
  auto it = tasks_.find(task);
  double guess;
  if (it == tasks_.end() || it->second.n == 0) {
    guess = static_cast<double>(max_new_tokens) / 2;
  } else {
    const Moments& m = it->second;
    double slope = m.n > 1 && m.var_x > 1e-6 ? m.cov_xy / m.var_x : 0.0;
    guess = m.mean_y + slope * (static_cast<double>(prompt_len) - m.mean_x);
  }
  return std::min(std::max(guess, 1.0), static_cast<double>(max_new_tokens));
}

void LengthPredictor::observe(const std::string& task, int64_t prompt_len, int64_t output_len) {
  Moments& m = tasks_[task];
  m.n += 1;
  double a = std::max(decay_, 1.0 / static_cast<double>(m.n));
  double dx = static_cast<double>(prompt_len) - m.mean_x, dy = static_cast<double>(output_len) - m.mean_y;
  m.mean_x += a * dx;
  m.mean_y += a * dy;
  m.var_x = (1 - a) * (m.var_x + a * dx * dx);
  m.cov_xy = (1 - a) * (m.cov_xy + a * dx * dy);
}

Scheduler::Scheduler(const SchedulerConfig& config) : config_(config), free_rows_(config.max_rows, true) {
  config_.check();
}

size_t Scheduler::running_count() const {
  return static_cast<size_t>(std::count(free_rows_.begin(), free_rows_.end(), false));
}

SchedRequest* Scheduler::find(uint64_t id) {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second;
}

void Scheduler::admit(SchedRequest request) {
  if (waiting_count() >= config_.queue_size)
    fail(TINYLLM_QUEUE_FULL, "the queue is full (" + std::to_string(config_.queue_size) + " requests waiting, " +
                                 std::to_string(config_.max_rows) +
                                 " running); retry later, or start the server with a larger queue_size");
  if (requests_.count(request.id)) fail(TINYLLM_INTERNAL_ERROR, "request id " + std::to_string(request.id) + " is already scheduled");
  request.predicted_out = predictor_.predict(request.task, request.prompt_len, request.max_new_tokens);
  request.row = -1;
  requests_.emplace(request.id, std::move(request));
}

void Scheduler::cancel(uint64_t id) {
  if (SchedRequest* r = find(id)) r->cancelled = true;
}

SchedRequest Scheduler::finish(uint64_t id, bool observe) {
  auto it = requests_.find(id);
  if (it == requests_.end()) fail(TINYLLM_INTERNAL_ERROR, "request " + std::to_string(id) + " is not scheduled");
  SchedRequest r = std::move(it->second);
  requests_.erase(it);
  if (r.row >= 0) free_rows_[static_cast<size_t>(r.row)] = true;
  if (observe) predictor_.observe(r.task, r.prompt_len, r.generated);
  return r;
}

StepPlan Scheduler::schedule(double now) {
  std::vector<SchedRequest> expired, cancelled;
  std::vector<uint64_t> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  for (uint64_t id : ids) {
    const SchedRequest& r = requests_.at(id);
    if (r.cancelled) cancelled.push_back(finish(id, false));
    else if (r.deadline && now >= *r.deadline) expired.push_back(finish(id, false));
  }
  StepPlan plan = config_.fifo ? plan_fifo() : plan_continuous(now);
  // A prompt whose last chunk is prefilled now takes its second token in this step's
  // decode run, so rows whose prefills end in different steps decode in the same runs
  // from then on: left for the next step, such a row would be computed as a placeholder
  // inside the run (it spans the rows from the lowest to the highest decoding) and would
  // need a run of its own after the others finish.
  for (const auto& group : plan.prefill)
    for (const PrefillRow& p : group)
      if (p.end >= requests_.at(p.request).prompt_len) plan.decode.push_back(p.request);
  plan.expired = std::move(expired);
  plan.cancelled = std::move(cancelled);
  return plan;
}

double Scheduler::priority(const SchedRequest& r, double now) const {
  return r.remaining_work(config_.prompt_weight) - config_.aging * (now - r.arrival);
}

StepPlan Scheduler::plan_fifo() {
  StepPlan plan;
  if (running_count() > 0) {
    for (const auto& [id, r] : requests_)
      if (r.decoding()) plan.decode.push_back(id);
    return plan;
  }
  std::vector<PrefillRow> rows;
  for (auto& [id, r] : requests_) {
    if (rows.size() == config_.max_rows) break;
    int64_t row = static_cast<int64_t>(rows.size());
    take(r, row);
    rows.push_back({id, row, 0, r.prompt_len});
  }
  if (!rows.empty()) plan.prefill.push_back(std::move(rows));
  return plan;
}

StepPlan Scheduler::plan_continuous(double now) {
  size_t free = static_cast<size_t>(std::count(free_rows_.begin(), free_rows_.end(), true));
  std::vector<std::pair<double, SchedRequest*>> order;
  for (auto& [id, r] : requests_) order.emplace_back(priority(r, now), &r);
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second->id < b.second->id;
  });
  std::vector<std::string> tasks;
  std::vector<SchedRequest*> admitted;
  for (auto& [p, r] : order) {
    if (!r->running()) {
      if (free == 0) continue;
      --free;
    }
    if (std::find(tasks.begin(), tasks.end(), r->task) == tasks.end()) {
      if (tasks.size() == config_.max_tasks_per_step) continue;
      tasks.push_back(r->task);
    }
    if (!r->running()) admitted.push_back(r);
  }
  auto chosen_task = [&](const SchedRequest& r) { return std::find(tasks.begin(), tasks.end(), r.task) != tasks.end(); };
  StepPlan plan;
  int64_t budget = config_.prefill_tokens;
  for (auto& [id, r] : requests_)
    if (r.running() && !r.decoding() && chosen_task(r)) {  // a long prompt's next chunk
      int64_t end = std::min(r.prefilled + config_.chunk_size, r.prompt_len);
      plan.prefill.push_back({{id, r.row, r.prefilled, end}});
      budget -= end - r.prefilled;
    }
  std::vector<std::vector<PrefillRow>> cached = admit_cached(admitted, budget);
  for (auto& g : cached) {
    budget -= g[0].end - g[0].start;
    plan.prefill.push_back(std::move(g));
  }
  std::vector<SchedRequest*> fresh;
  for (SchedRequest* r : admitted)
    if (r->cached == 0) fresh.push_back(r);
  std::vector<PrefillRow> group = new_group(fresh, budget);
  if (!group.empty()) plan.prefill.push_back(std::move(group));
  for (auto& [id, r] : requests_)
    if (r.decoding() && chosen_task(r)) plan.decode.push_back(id);
  return plan;
}

std::vector<std::vector<PrefillRow>> Scheduler::admit_cached(const std::vector<SchedRequest*>& admitted, int64_t budget) {
  std::vector<std::vector<PrefillRow>> groups;
  for (SchedRequest* r : admitted) {
    int64_t end = std::min(r->prompt_len, r->cached + config_.chunk_size);
    if (r->cached > 0 && end - r->cached <= budget) {
      auto [start, size] = run_of_free_rows(1);
      if (size < 1) fail(TINYLLM_INTERNAL_ERROR, "no free KV row for an admitted request");
      take(*r, start);
      r->prefilled = r->cached;  // the server copies the cached KV into the row
      groups.push_back({{r->id, r->row, r->cached, end}});
      budget -= end - r->cached;
    }
  }
  return groups;
}

std::vector<PrefillRow> Scheduler::new_group(const std::vector<SchedRequest*>& admitted, int64_t budget) {
  if (admitted.empty()) return {};
  SchedRequest& first = *admitted[0];
  if (first.prompt_len > config_.chunk_size) {
    if (budget < config_.chunk_size) return {};
    auto [row, size] = run_of_free_rows(1);
    if (size < 1) fail(TINYLLM_INTERNAL_ERROR, "no free KV row for an admitted request");
    take(first, row);
    return {{first.id, row, 0, config_.chunk_size}};
  }
  if (first.prompt_len > budget) return {};
  std::vector<SchedRequest*> chosen = {&first};
  int64_t shortest = first.prompt_len, longest = first.prompt_len;
  for (size_t i = 1; i < admitted.size(); ++i) {
    int64_t lo = std::min(shortest, admitted[i]->prompt_len), hi = std::max(longest, admitted[i]->prompt_len);
    bool similar = static_cast<double>(hi) <= config_.length_ratio * static_cast<double>(lo);
    if (similar && hi * static_cast<int64_t>(chosen.size() + 1) <= budget) {
      chosen.push_back(admitted[i]);
      shortest = lo;
      longest = hi;
    }
  }
  auto [start, size] = run_of_free_rows(chosen.size());
  chosen.resize(std::min(chosen.size(), static_cast<size_t>(size)));
  std::vector<PrefillRow> group;
  for (size_t offset = 0; offset < chosen.size(); ++offset) {
    int64_t row = start + static_cast<int64_t>(offset);
    take(*chosen[offset], row);
    group.push_back({chosen[offset]->id, row, 0, chosen[offset]->prompt_len});
  }
  return group;
}

void Scheduler::take(SchedRequest& r, int64_t row) {
  free_rows_[static_cast<size_t>(row)] = false;
  r.row = row;
}

std::pair<int64_t, int64_t> Scheduler::run_of_free_rows(size_t n) const {
  std::pair<int64_t, int64_t> best{0, 0};
  size_t row = 0;
  while (row < free_rows_.size()) {
    if (!free_rows_[row]) {
      ++row;
      continue;
    }
    size_t end = row;
    while (end < free_rows_.size() && free_rows_[end] && end - row < n) ++end;
    if (end - row >= n) return {static_cast<int64_t>(row), static_cast<int64_t>(n)};
    if (static_cast<int64_t>(end - row) > best.second) best = {static_cast<int64_t>(row), static_cast<int64_t>(end - row)};
    row = end;
  }
  return best;
}

}  // namespace tinyllm
