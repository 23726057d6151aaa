// One exported decoder (the `ort` flavour) in an ONNX Runtime session, with its KV cache.
//
// One KV buffer per layer and kind, [max_batch, KV, max_seq, H], is allocated once and
// bound as both past_* and present_* (GroupQueryAttention writes each row's new entries
// at that row's own position, seqlens_k). The logits land in a bound [max_batch, V]
// buffer. Prefill takes right-padded prompts; decode feeds one token per row of a run of
// rows.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bundle.h"
#include "lora.h"
#include "ort.h"
#include "runtrace.h"

namespace tinyllm {

// A zero-filled float buffer whose pages are only touched when written (calloc).
class FloatBuffer {
 public:
  explicit FloatBuffer(size_t n);
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> data_;
  size_t n_;
};

struct RunTimes {
  uint64_t prefill_calls = 0, decode_steps = 0, prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

class DecoderSession {
 public:
  DecoderSession(const std::string& model_path, const ModelConfig& config, const EngineInfo& info,
                 int64_t max_batch, int64_t max_seq_len, int threads, int32_t pad_id);

  // Start one sequence per row from its prompt; returns last-token logits [b, V].
  const float* prefill(const std::vector<std::vector<int32_t>>& prompts,
                       const std::vector<int64_t>& lora_index);
  // Continue rows start..start+b-1: row i holds past[i] tokens and chunks[i] follow them
  // (with past > 0 only one row at a time: ONNX Runtime's CPU GroupQueryAttention
  // continues after past tokens for one row). Returns the logits of those rows [b, V].
  const float* prefill_rows(int64_t start, const std::vector<std::vector<int32_t>>& chunks,
                            const std::vector<int64_t>& past, const std::vector<int64_t>& lora_index);
  // The first n positions of `row` in every KV buffer, each [KV heads, n, head_dim].
  std::vector<std::vector<float>> read_kv(int64_t row, int64_t n) const;
  // Put the first n positions of read_kv's arrays at the first positions of `row`.
  void write_kv(int64_t row, const std::vector<std::vector<float>>& kv, int64_t n);
  size_t kv_bytes() const;
  // One token per row start..start+b-1; `held[i]` is the tokens row start+i already
  // holds. Returns the logits of those rows [b, V].
  const float* decode(const std::vector<int32_t>& tokens, const std::vector<int64_t>& held,
                      const std::vector<int64_t>& lora_index, int64_t start = 0);
  // A verify run (a speculative decoder's): feed `tokens` after the `past` tokens `row`
  // holds, in one run, with adapter slot `slot`; returns the logits after each of them
  // [n, V]. The row's KV then holds all n; a caller that keeps fewer counts fewer (later
  // tokens overwrite the rest, and attention reads only a row's length). Counted, and
  // traced, as a decode run of one row.
  const float* verify(int64_t row, const std::vector<int32_t>& tokens, int64_t past, int64_t slot);
  // The graph takes logits_index [B, P] (several positions a row), so verify runs work;
  // engines exported before it declare [B] only.
  bool verifies() const { return verifies_; }

  AdapterSlots& slots() { return slots_; }
  int64_t max_batch() const { return max_batch_; }
  int64_t max_seq_len() const { return max_seq_; }
  int64_t vocab_size() const { return vocab_; }
  const RunTimes& times() const { return times_; }
  RunTrace& trace() { return trace_; }

 private:
  struct Binding {
    ort::Ptr<OrtIoBinding> io;
    std::vector<ort::Ptr<OrtValue>> values;  // kept alive while bound
  };
  void check_graph(const std::string& model_path) const;
  Binding& binding(int64_t start, int64_t b);
  // Bind rows start..start+b-1 of the KV cache and the LoRA slots, and `logits` (shape
  // `logits_shape`) as the logits output.
  Binding make_binding(int64_t start, int64_t b, float* logits, const std::vector<int64_t>& logits_shape);
  // Run `bind` (positions > 0: logits_index is [b, positions], a verify run).
  const float* run(Binding& bind, int64_t start, int64_t b, int64_t width, const std::vector<int64_t>& lora_index,
                   bool prefill, int64_t positions = 0);

  ModelConfig config_;
  EngineInfo info_;
  int64_t max_batch_, max_seq_, vocab_;
  int32_t pad_id_;
  ort::Ptr<OrtSession> session_;
  std::vector<FloatBuffer> kv_;  // key.0, value.0, key.1, ...
  FloatBuffer logits_;
  std::vector<float> verify_logits_;  // [n, V] of the last verify run
  bool verifies_ = false;
  AdapterSlots slots_;
  std::map<std::pair<int64_t, int64_t>, Binding> bindings_;  // by (first row, rows)
  // Per-call inputs, bound from these buffers before each run.
  std::vector<int64_t> ids_, logits_index_, lora_index_;
  std::vector<int32_t> seqlens_;
  int32_t total_ = 0;
  RunTimes times_;
  RunTrace trace_;
  int64_t traced_tokens_ = 0, traced_past_ = 0;  // the next run's, for its trace record
};

}  // namespace tinyllm
