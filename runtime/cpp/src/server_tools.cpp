// Tasks with tools on the server (runtime/toolrunner.py): a request whose row wrote its
// call leaves the loop for a tool worker, which runs the call (the callback blocks only
// that worker, never the decode loop), then settles the request with the result as its
// answer (`result: answer`, or a failed call), or queues a second row on the loop that
// decodes the answer with the call and its result in context (`result: context`); that
// row starts with the task's prompt, so the prefix cache serves it, and it keeps the
// request's deadline and cancellation.
#include <chrono>

#include "error.h"
#include "server_live.h"

namespace tinyllm {
namespace {

constexpr size_t kToolWorkers = 4;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void Server::take_call(std::unique_ptr<Live> live) {  // lock held
  ++tools_pending_;
  tool_queue_.push_back(std::move(live));
  if (tool_threads_.empty())
    for (size_t i = 0; i < kToolWorkers; ++i) tool_threads_.emplace_back([this] { tool_worker(); });
  tool_cond_.notify_one();
}

void Server::tool_worker() {
  while (true) {
    std::unique_ptr<Live> live;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      tool_cond_.wait(lock, [&] { return tools_stop_ || !tool_queue_.empty(); });
      if (tool_queue_.empty()) return;
      live = std::move(tool_queue_.front());
      tool_queue_.pop_front();
    }
    run_tool(std::move(live));
    std::lock_guard<std::mutex> lock(mutex_);
    --tools_pending_;
    cond_.notify_all();  // a draining loop waits for the calls in flight
  }
}

void Server::run_tool(std::unique_ptr<Live> live) {
  std::shared_ptr<Request> request = live->request;
  auto settle = [&](tinyllm_status status, const std::string& error, TaskResult result) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (status == TINYLLM_OK) {
      ++counts_.completed;
      counts_.invalid += result.parsed.valid ? 0 : 1;
    } else {
      ++(status == TINYLLM_CANCELLED ? counts_.cancelled : counts_.failed);
    }
    request->resolve(status, error, std::move(result));
  };
  auto left = [&] { return live->deadline_at > 0 ? live->deadline_at - now_seconds() : -1.0; };
  auto late = [&] {
    settle(TINYLLM_DEADLINE_EXCEEDED, "the request passed its deadline (" + std::to_string(request->options_.deadline_s) +
                                          " s after submit) during its tool call; give it a longer deadline_s or retry", {});
  };
  try {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (loop_done_) {  // closed without draining before the call ran: it never runs
        ++counts_.failed;
        request->resolve(TINYLLM_CLOSED, "the server closed before this request's tool call ran", {});
        return;
      }
    }
    if (request->cancelled_) return settle(TINYLLM_CANCELLED, "the request was cancelled", {});
    if (live->deadline_at > 0 && left() <= 0) return late();
    Generation generation;
    Row& row = live->row;
    generation.text = row.text;
    generation.token_ids = row.tokens;
    generation.prompt_tokens = row.prompt.size();
    generation.length = row.length || !row.done;
    ToolCall call;
    std::optional<TaskResult> done = engine_.run_call(row, generation, left(), &call);
    if (live->deadline_at > 0 && left() <= 0) return late();
    if (request->cancelled_) return settle(TINYLLM_CANCELLED, "the request was cancelled", {});
    if (done) {
      if (request->on_text_ && !done->generation.text.empty() && !request->on_text_(done->generation.text))
        return settle(TINYLLM_CANCELLED, "the request was cancelled by its streaming callback", {});
      return settle(TINYLLM_OK, "", std::move(*done));
    }
    // result: context: the answer decodes on the loop, after the call and its result
    auto next = std::make_unique<Live>();
    next->request = request;
    next->deadline_at = live->deadline_at;
    next->called = std::make_shared<Row>(std::move(live->row));
    next->call_generation = std::move(generation);
    next->call = std::move(call);
    std::lock_guard<std::mutex> lock(mutex_);
    if (loop_done_) {
      ++counts_.failed;
      request->resolve(TINYLLM_CLOSED, "the server closed before this request's answer was decoded", {});
      return;
    }
    next->id = next_id_++;
    pending_.push_back(next->id);
    live_.emplace(next->id, std::move(next));
    cond_.notify_all();
  } catch (const LibError& e) {
    settle(e.status(), e.what(), {});
  } catch (const std::exception& e) {
    settle(TINYLLM_RUNTIME_ERROR, std::string("the tool call failed: ") + e.what(), {});
  }
}

void Server::stop_tools() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tools_stop_ = true;
    loop_done_ = true;
  }
  tool_cond_.notify_all();
  for (std::thread& t : tool_threads_)
    if (t.joinable()) t.join();
}

}  // namespace tinyllm
