// The scheduler (scheduler.h) driven with hand-built engine outputs: the cases of
// tests/runtime/test_scheduler.py, so the C++ policy is the Python one.
#include <algorithm>
#include <cmath>
#include <set>

#include "check.h"
#include "scheduler.h"

using tinyllm::SchedRequest;
using tinyllm::Scheduler;
using tinyllm::SchedulerConfig;
using tinyllm::StepPlan;

namespace {

SchedRequest req(uint64_t id, const std::string& task = "a", int64_t prompt = 10, int64_t out = 8, double at = 0) {
  SchedRequest r;
  r.id = id;
  r.task = task;
  r.prompt_len = prompt;
  r.max_new_tokens = out;
  r.arrival = at;
  return r;
}

SchedulerConfig config(size_t rows, double aging = 20.0) {
  SchedulerConfig c;
  c.max_rows = rows;
  c.aging = aging;
  return c;
}

// Play the engine: prefill, decode, finish requests that reached outputs[id] (else their limit).
std::vector<uint64_t> run_step(Scheduler& s, const StepPlan& plan, const std::map<uint64_t, int64_t>& outputs) {
  for (const auto& group : plan.prefill)
    for (const auto& p : group) {
      s.prefilled(p.request, p.end);
      if (p.end == s.find(p.request)->prompt_len) s.decoded(p.request);
    }
  auto limit = [&](const SchedRequest& r) {
    auto it = outputs.find(r.id);
    return it == outputs.end() ? r.max_new_tokens : it->second;
  };
  for (uint64_t id : plan.decode) {
    const SchedRequest& r = *s.find(id);
    if (r.generated < limit(r)) s.decoded(id);  // the server skips a row its prefill's token ended
  }
  std::vector<uint64_t> done;
  for (const auto& [id, r] : s.requests())
    if (r.generated >= limit(r)) done.push_back(id);
  for (uint64_t id : done) s.finish(id, true);
  return done;
}

void append(std::vector<uint64_t>& to, const std::vector<uint64_t>& more) { to.insert(to.end(), more.begin(), more.end()); }

}  // namespace

TEST_CASE(scheduler_shortest_predicted_work_runs_first) {
  Scheduler s(config(1, 0.0));
  s.predictor().observe("long", 10, 30);
  s.predictor().observe("short", 10, 2);
  const char* tasks[] = {"long", "short", "long", "short"};
  for (uint64_t i = 0; i < 4; ++i) s.admit(req(i, tasks[i], 10, 40));
  std::vector<uint64_t> order;
  for (int step = 0; step < 200; ++step) append(order, run_step(s, s.schedule(step * 0.01), {{0, 30}, {1, 2}, {2, 30}, {3, 2}}));
  CHECK((order == std::vector<uint64_t>{1, 3, 0, 2}));
}

TEST_CASE(scheduler_aging_lets_long_work_overtake_new_short_work) {
  for (double aging : {50.0, 0.0}) {
    Scheduler s(config(1, aging));
    s.predictor().observe("long", 10, 30);
    s.predictor().observe("short", 10, 2);
    s.admit(req(0, "long", 10, 40, 0.0));
    std::map<uint64_t, int64_t> outputs{{0, 30}};
    for (uint64_t i = 1; i < 5000; ++i) outputs[i] = 2;
    std::vector<uint64_t> order;
    double now = 0;
    uint64_t next = 1;
    for (int step = 0; step < 300; ++step) {
      if (s.waiting_count() < 3) s.admit(req(next++, "short", 10, 40, now));  // would starve request 0
      append(order, run_step(s, s.schedule(now), outputs));
      now += 0.05;
    }
    bool served = std::find(order.begin(), order.end(), 0) != order.end();
    CHECK_EQ(served, aging > 0);  // without aging (the control) it starves
  }
}

TEST_CASE(scheduler_at_most_beta_tasks_per_step_and_every_task_progresses) {
  SchedulerConfig c = config(6, 1.0);
  c.max_tasks_per_step = 2;
  Scheduler s(c);
  const char* tasks[] = {"a", "b", "c", "a", "b", "c"};
  for (uint64_t i = 0; i < 6; ++i) s.admit(req(i, tasks[i], 10, 5));
  std::vector<uint64_t> done;
  for (int step = 0; step < 100; ++step) {
    StepPlan plan = s.schedule(step * 0.1);
    std::set<std::string> used;
    for (uint64_t id : plan.decode) used.insert(s.find(id)->task);
    for (const auto& g : plan.prefill)
      for (const auto& p : g) used.insert(s.find(p.request)->task);
    CHECK(used.size() <= 2);
    append(done, run_step(s, plan, {}));
  }
  std::sort(done.begin(), done.end());
  CHECK((done == std::vector<uint64_t>{0, 1, 2, 3, 4, 5}));
}

TEST_CASE(scheduler_similar_lengths_prefill_together_in_contiguous_rows) {
  Scheduler s(config(4, 0.0));
  int64_t lengths[] = {10, 12, 40, 11};
  for (uint64_t i = 0; i < 4; ++i) s.admit(req(i, "a", lengths[i]));
  StepPlan plan = s.schedule(0.0);
  CHECK_EQ(plan.prefill.size(), 1u);
  std::vector<uint64_t> ids;
  std::vector<int64_t> rows;
  for (const auto& p : plan.prefill[0]) {
    ids.push_back(p.request);
    rows.push_back(p.row);
    CHECK_EQ(p.start, 0);
  }
  CHECK((ids == std::vector<uint64_t>{0, 3, 1}));  // the 40-token prompt waits
  CHECK((rows == std::vector<int64_t>{0, 1, 2}));
  run_step(s, plan, {});
  plan = s.schedule(0.1);
  CHECK(plan.prefill.size() == 1 && plan.prefill[0].size() == 1 && plan.prefill[0][0].request == 2);
  CHECK((plan.decode == std::vector<uint64_t>{0, 1, 3, 2}));  // 2 decodes right after its prefill
}

TEST_CASE(scheduler_long_prompt_prefills_in_chunks_while_others_decode) {
  SchedulerConfig c = config(2, 0.0);
  c.chunk_size = 16;
  c.prefill_tokens = 32;
  Scheduler s(c);
  s.admit(req(0, "a", 8, 20));
  run_step(s, s.schedule(0.0), {});
  s.admit(req(1, "a", 40, 4));
  std::vector<std::pair<int64_t, int64_t>> chunks;
  std::vector<bool> decodes;
  for (int step = 1; step < 5; ++step) {
    StepPlan plan = s.schedule(step * 0.1);
    CHECK(std::find(plan.decode.begin(), plan.decode.end(), 0) != plan.decode.end());  // never frozen
    for (const auto& g : plan.prefill)
      for (const auto& p : g)
        if (p.request == 1) chunks.emplace_back(p.start, p.end);
    decodes.push_back(std::find(plan.decode.begin(), plan.decode.end(), 1) != plan.decode.end());
    run_step(s, plan, {});
  }
  CHECK((chunks == std::vector<std::pair<int64_t, int64_t>>{{0, 16}, {16, 32}, {32, 40}}));
  CHECK((decodes == std::vector<bool>{false, false, true, true}));  // from the step of its last chunk on
  CHECK(s.find(1)->decoding() && s.find(1)->row == 1);
}

TEST_CASE(scheduler_cached_prefix_prefills_alone_after_it) {
  Scheduler s(config(4, 0.0));
  SchedRequest a = req(0, "a", 30), b = req(1, "a", 30);
  b.cached = 20;
  s.admit(a);
  s.admit(b);
  StepPlan plan = s.schedule(0.0);
  CHECK_EQ(plan.prefill.size(), 2u);
  CHECK(plan.prefill[0].size() == 1 && plan.prefill[0][0].request == 1 && plan.prefill[0][0].start == 20 &&
        plan.prefill[0][0].end == 30);
  CHECK(plan.prefill[1].size() == 1 && plan.prefill[1][0].request == 0 && plan.prefill[1][0].start == 0);
}

TEST_CASE(scheduler_full_queue_is_an_immediate_error_and_nothing_is_lost) {
  SchedulerConfig c = config(2);
  c.queue_size = 3;
  Scheduler s(c);
  s.admit(req(0));
  s.admit(req(1));
  s.schedule(0.0);  // both take a row: the queue is empty again
  for (uint64_t i = 2; i < 5; ++i) s.admit(req(i));
  CHECK_FAILS(s.admit(req(5)), TINYLLM_QUEUE_FULL, "queue is full (3 requests waiting, 2 running)");
  CHECK_EQ(s.requests().size(), 5u);
  std::vector<uint64_t> done;
  for (int step = 0; step < 100; ++step) append(done, run_step(s, s.schedule(step * 0.1), {}));
  std::sort(done.begin(), done.end());
  CHECK((done == std::vector<uint64_t>{0, 1, 2, 3, 4}));
}

TEST_CASE(scheduler_cancel_and_deadline_free_rows) {
  Scheduler s(config(1));
  s.admit(req(0, "a", 10, 50));
  SchedRequest timed = req(1, "a", 10, 5);
  timed.deadline = 0.5;
  s.admit(timed);
  s.admit(req(2, "a", 10, 3));
  run_step(s, s.schedule(0.0), {});
  uint64_t running = 99;
  for (const auto& [id, r] : s.requests())
    if (r.running()) running = id;
  s.cancel(running);
  StepPlan plan = s.schedule(0.1);
  CHECK(plan.cancelled.size() == 1 && plan.cancelled[0].id == running);
  run_step(s, plan, {});
  plan = s.schedule(1.0);  // request 1's deadline passed, wherever it is
  CHECK(plan.expired.size() == 1 && plan.expired[0].id == 1 && s.find(1) == nullptr);
  std::set<uint64_t> done{running, 1};
  for (int step = 0; step < 100 && !s.requests().empty(); ++step)
    for (uint64_t id : run_step(s, s.schedule(1.0), {})) done.insert(id);
  CHECK((done == std::set<uint64_t>{0, 1, 2}));
  CHECK((s.free_rows() == std::vector<bool>{true}));
}

TEST_CASE(scheduler_fifo_runs_static_batches_in_arrival_order) {
  SchedulerConfig c = config(2);
  c.fifo = true;
  Scheduler s(c);
  int64_t lengths[] = {5, 50, 7};
  for (uint64_t i = 0; i < 3; ++i) s.admit(req(i, "a", lengths[i], 3 + static_cast<int64_t>(i)));
  StepPlan plan = s.schedule(0.0);
  CHECK(plan.prefill.size() == 1 && plan.prefill[0].size() == 2 && plan.prefill[0][1].end == 50);
  run_step(s, plan, {});
  int steps = 0;
  while (s.find(1) != nullptr && steps < 100) {
    plan = s.schedule(0.1);
    CHECK(plan.prefill.empty());  // nobody joins a running static batch
    run_step(s, plan, {});
    ++steps;
  }
  plan = s.schedule(0.2);
  // Request 1's 4 tokens: its prefill's and one decode in the first step, then 2 steps.
  CHECK(plan.prefill.size() == 1 && plan.prefill[0][0].request == 2 && steps == 2);
}

TEST_CASE(scheduler_length_predictor_learns_task_mean_and_input_slope) {
  tinyllm::LengthPredictor p(0.2);
  CHECK_EQ(p.predict("t", 10, 64), 32.0);  // no data: half the limit
  for (int k = 0; k < 10; ++k)
    for (int64_t x : {10, 20, 30, 40}) p.observe("t", x, x / 2 + 3);
  CHECK(std::fabs(p.predict("t", 20, 64) - 13.0) <= 0.5);
  CHECK(std::fabs(p.predict("t", 60, 64) - 33.0) <= 1.5);
  CHECK_EQ(p.predict("t", 500, 64), 64.0);  // capped by the request's limit
  p.observe("u", 10, 4);
  CHECK_EQ(p.predict("u", 99, 64), 4.0);  // one observation: no slope yet
}

TEST_CASE(scheduler_bad_config) {
  SchedulerConfig c;
  c.max_tasks_per_step = 0;
  CHECK_FAILS(Scheduler{c}, TINYLLM_INVALID_ARGUMENT, "max_tasks_per_step must be >= 1");
  c = SchedulerConfig{};
  c.chunk_size = 64;
  c.prefill_tokens = 32;
  CHECK_FAILS(Scheduler{c}, TINYLLM_INVALID_ARGUMENT, "must be >= chunk_size");
}
