// One step of the serving loop (the engine is held): prepare the requests submitted since
// the last step (their rows, their cached prefix) and give them to the scheduler; run its
// plan (prefill groups, then one decode run over the rows from the lowest to the highest
// taking a token); resolve what finished.
#include <algorithm>
#include <chrono>
#include <random>
#include <set>

#include "error.h"
#include "runtrace.h"
#include "server_live.h"

namespace tinyllm {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void Server::prepare() {
  std::vector<Live*> fresh;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (uint64_t id : pending_) fresh.push_back(live_.at(id).get());
    pending_.clear();
  }
  std::vector<Live*> ready;
  for (Live* live : fresh) {
    const TaskOptions& options = live->request->options_;
    try {
      TaskOptions o = options;
      o.constrain = options.constrain && options_.constrain;
      live->row = live->called ? engine_.answer_row(*live->called, live->call->result, o.constrain)
                               : engine_.task_row(live->request->request_, o);  // may fill an adapter slot
    } catch (const LibError& e) {  // e.g. no free adapter slot
      std::lock_guard<std::mutex> lock(mutex_);
      end(live->id, e.status(), e.what());
      continue;
    }
    std::random_device entropy;
    live->row.rng = std::make_unique<Pcg64>(options.seed ? *options.seed : (uint64_t{entropy()} << 32) | entropy());
    live->config.temperature = options.temperature;
    live->prepared = true;
    ready.push_back(live);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  double now = now_seconds();
  for (Live* live : ready) {
    SchedRequest r;
    r.id = live->id;
    r.task = live->row.task->name;
    r.prompt_len = static_cast<int64_t>(live->row.prompt.size());
    r.max_new_tokens = live->row.max_new_tokens;
    r.arrival = now;
    double deadline_s = live->request->options_.deadline_s;
    if (deadline_s > 0) r.deadline = live->deadline_at = live->deadline_at > 0 ? live->deadline_at : now + deadline_s;
    scheduler_.admit(std::move(r));  // never full: submit counted it against queue_size
  }
  // Cancelled requests leave at the next plan; a waiting request takes its task's cached
  // prefix as soon as there is one (until then it would fill it).
  for (auto& [id, live] : live_) {
    SchedRequest* r = scheduler_.find(id);
    if (r == nullptr) continue;
    if (live->request->cancelled_) scheduler_.cancel(id);
    if (r->running() || live->looked_up || scheduler_.config().fifo) continue;
    PrefixCache::Key key{live->row.task->name, live->row.slot};
    live->fill_cache = cache_.wants(key, live->row.prefix_len);
    if (live->fill_cache) continue;
    live->hit = cache_.lookup(key, live->row.prompt, live->row.prefix_len);
    live->looked_up = true;
    r->cached = static_cast<int64_t>(live->hit.length);
  }
}

StepPlan Server::plan(std::map<int64_t, uint64_t>& rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  StepPlan step = scheduler_.schedule(now_seconds());
  for (const SchedRequest& r : step.cancelled) end(r.id, TINYLLM_CANCELLED, "the request was cancelled");
  for (const SchedRequest& r : step.expired)
    end(r.id, TINYLLM_DEADLINE_EXCEEDED, "the request passed its deadline (" +
                                             std::to_string(live_.at(r.id)->request->options_.deadline_s) +
                                             " s after submit); give it a longer deadline_s or retry");
  for (const auto& [id, r] : scheduler_.requests())
    if (r.running()) rows[r.row] = id;
  for (const auto& group : step.prefill)
    for (const PrefillRow& p : group) {
      Live& live = *live_.at(p.request);
      if (p.start == 0 && live.fill_cache && !live.looked_up) cache_.count_miss();
      live.looked_up = true;
    }
  return step;
}

void Server::prefill(const std::vector<PrefillRow>& group) {
  DecoderSession& session = *engine_.session_;
  std::vector<Live*> lives;
  std::vector<std::vector<int32_t>> chunks;
  std::vector<int64_t> starts, slots;
  for (const PrefillRow& p : group) {
    Live* live;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live = live_.at(p.request).get();
    }
    if (p.start > 0 && p.start == static_cast<int64_t>(live->hit.length))  // a fresh row after its cached prefix
      session.write_kv(p.row, live->hit.entry->kv, p.start);
    const std::vector<int32_t>& prompt = live->row.prompt;
    chunks.emplace_back(prompt.begin() + p.start, prompt.begin() + p.end);
    starts.push_back(p.start);
    slots.push_back(live->row.slot);
    lives.push_back(live);
  }
  double now = trace_clock();
  for (Live* live : lives)  // the request's first prefill run: its queue wait ends here
    if (live->request->admitted_.load() < 0) live->request->admitted_.store(now);
  const float* logits = session.prefill_rows(group[0].row, chunks, starts, slots);
  size_t vocab = static_cast<size_t>(engine_.vocab_size());
  for (size_t i = 0; i < group.size(); ++i) {
    const PrefillRow& p = group[i];
    Live& live = *lives[i];
    size_t prefix = live.row.prefix_len;
    if (live.fill_cache && static_cast<size_t>(p.end) >= prefix) {
      live.fill_cache = false;
      CachedPrefix entry;
      entry.ids.assign(live.row.prompt.begin(), live.row.prompt.begin() + static_cast<std::ptrdiff_t>(prefix));
      entry.kv = session.read_kv(p.row, static_cast<int64_t>(prefix));
      std::lock_guard<std::mutex> lock(mutex_);
      cache_.store({live.row.task->name, live.row.slot}, std::move(entry));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      scheduler_.prefilled(p.request, p.end);
    }
    if (p.end == static_cast<int64_t>(live.row.prompt.size())) {
      const float* own = logits + i * vocab;
      advance(live, [&] {
        engine_.advance(live.row, own, live.config, false);
        return size_t{1};
      });
    }
  }
}

Server::DecodeRun Server::decode(const StepPlan& step, const std::map<int64_t, uint64_t>& rows) {
  // The run spans the rows from the lowest to the highest whose request takes a token (a
  // request its prefill's first token ended, or failed, takes none).
  std::set<uint64_t> planned(step.decode.begin(), step.decode.end());
  std::map<int64_t, Live*> taking;  // by KV row
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [row, id] : rows) {
      Live* live = live_.at(id).get();
      if (planned.count(id) && !live->row.done) taking[row] = live;
    }
  }
  if (taking.empty()) return {};
  if (taking.size() == 1) {  // one row decodes: the text its constraint forces goes in one run
    int64_t row = taking.begin()->first;
    Live* live = taking.begin()->second;
    std::vector<int32_t> draft = engine_.forced_draft(live->row, live->config);
    if (!draft.empty()) {
      advance(*live, [&] { return engine_.verify(live->row, row, draft, live->config, false); });
      return {1, 1};
    }
  }
  int64_t low = taking.begin()->first, high = taking.rbegin()->first;
  size_t width = static_cast<size_t>(high - low) + 1;
  // Rows inside the run that skip this step (a prompt between chunks, a task left out of
  // the step) feed a placeholder at their next position, which their real token
  // overwrites later; free rows feed one at position 0 (overwritten before any use).
  std::vector<int32_t> tokens(width, engine_.tokenizer().pad_token_id());
  std::vector<int64_t> held(width, 0), lora(width, 0);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = rows.lower_bound(low); it != rows.end() && it->first <= high; ++it) {
      const Row& state = live_.at(it->second)->row;
      const SchedRequest& r = *scheduler_.find(it->second);
      size_t k = static_cast<size_t>(it->first - low);
      held[k] = r.decoding() ? static_cast<int64_t>(state.prompt.size() + state.tokens.size()) - 1 : r.prefilled;
      lora[k] = state.slot;
      if (taking.count(it->first)) tokens[k] = state.tokens.back();
    }
  }
  const float* logits = engine_.session_->decode(tokens, held, lora, low);
  size_t vocab = static_cast<size_t>(engine_.vocab_size());
  for (const auto& taken : taking) {
    Live* live = taken.second;
    const float* own = logits + static_cast<size_t>(taken.first - low) * vocab;
    advance(*live, [&] {
      engine_.advance(live->row, own, live->config, false);
      return size_t{1};
    });
  }
  return {width, taking.size()};
}

void Server::advance(Live& live, const std::function<size_t()>& take) {
  size_t picks = 1;
  try {
    picks = take();
    if (live.request->on_text_ && (!live.row.calls_tool || live.row.raw_call)) {  // a call run is not the answer
      auto on_text = [&](size_t, std::string_view text) { return live.request->on_text_(text); };
      engine_.stream(live.row, live.config, on_text);
    }
  } catch (const LibError& e) {  // fails this request alone; the other rows go on
    live.status = e.status();
    live.error = e.status() == TINYLLM_CANCELLED ? "the request was cancelled by its streaming callback" : e.what();
    live.row.done = true;
  } catch (const std::exception& e) {
    live.status = TINYLLM_RUNTIME_ERROR;
    live.error = std::string("the request failed while decoding: ") + e.what();
    live.row.done = true;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < picks; ++i) scheduler_.decoded(live.id);
}

void Server::finish_done(std::chrono::steady_clock::time_point began, const DecodeRun& decoded) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<uint64_t> done;
  for (const auto& [id, live] : live_)
    if (live->prepared && live->row.done && scheduler_.find(id)) done.push_back(id);
  for (uint64_t id : done) {
    Live& live = *live_.at(id);
    scheduler_.finish(id, live.status == TINYLLM_OK);
    end(id, live.status, live.error);
  }
  // Counted under the lock that resolved the step's requests: a client that reads the
  // loop stats after its answer sees this step.
  ++loop_.steps;
  loop_.decode_steps += decoded.rows > 0 ? 1 : 0;
  loop_.decode_rows += decoded.rows;
  loop_.decode_placeholder_rows += decoded.rows - decoded.tokens;
  loop_.busy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  cond_.notify_all();
}

}  // namespace tinyllm
