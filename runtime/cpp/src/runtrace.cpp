#include "runtrace.h"

#include <chrono>

namespace tinyllm {

double trace_clock() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void RunTrace::set(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (on) {
    records_.clear();
    dropped_ = 0;
  }
  on_.store(on, std::memory_order_relaxed);
}

void RunTrace::add(const RunRecord& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!on_.load(std::memory_order_relaxed)) return;
  if (records_.size() >= kMaxRecords) {
    ++dropped_;
    return;
  }
  records_.push_back(record);
}

std::vector<RunRecord> RunTrace::take(size_t* dropped) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<RunRecord> out;
  out.swap(records_);
  if (dropped != nullptr) *dropped = dropped_;
  return out;
}

}  // namespace tinyllm
