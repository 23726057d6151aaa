#include "session.h"

#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>

#include "error.h"

namespace tinyllm {
namespace {

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return 1;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

FloatBuffer::FloatBuffer(size_t n) : data_(static_cast<float*>(std::calloc(std::max<size_t>(n, 1), sizeof(float)))), n_(n) {
  if (!data_) fail(TINYLLM_OUT_OF_MEMORY, "cannot allocate " + std::to_string(n * sizeof(float)) + " bytes");
  // A large calloc is fresh zero pages that become resident as they are written: a KV row
  // then costs the tokens it holds. Huge pages would make each head's first token cost
  // 2 MiB (where transparent huge pages are "always"), so they are declined.
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return;
  auto begin = reinterpret_cast<uintptr_t>(data_.get());
  uintptr_t first = (begin + page - 1) / page * page;
  uintptr_t last = (begin + n * sizeof(float)) / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_NOHUGEPAGE);
}

void FloatBuffer::Free::operator()(float* p) const { std::free(p); }

DecoderSession::DecoderSession(const std::string& model_path, const ModelConfig& config,
                               const EngineInfo& info, int64_t max_batch, int64_t max_seq_len,
                               int threads, int32_t pad_id)
    : config_(config), info_(info), max_batch_(max_batch), max_seq_(max_seq_len),
      vocab_(config.vocab_size), pad_id_(pad_id),
      logits_(static_cast<size_t>(max_batch * config.vocab_size)), slots_(config, info) {
  const OrtApi& api = ort::api();
  OrtSessionOptions* raw_options = nullptr;
  ort::check(api.CreateSessionOptions(&raw_options), "create session options");
  ort::Ptr<OrtSessionOptions> options(raw_options);
  ort::check(api.SetIntraOpNumThreads(options.get(), threads > 0 ? threads : usable_cpus()), "set threads");
  ort::check(api.SetInterOpNumThreads(options.get(), 1), "set threads");
  ort::check(api.SetSessionGraphOptimizationLevel(options.get(), ORT_ENABLE_ALL), "set the optimization level");
  OrtSession* raw = nullptr;
  OrtStatus* status = api.CreateSession(ort::env(), model_path.c_str(), options.get(), &raw);
  if (status != nullptr) {
    std::string message = api.GetErrorMessage(status);
    api.ReleaseStatus(status);
    fail(TINYLLM_BUNDLE_ERROR, model_path + ": ONNX Runtime cannot load this engine (" + message + ")");
  }
  session_.reset(raw);
  check_graph(model_path);
  verifies_ = ort::input_rank(session_.get(), "logits_index") != 1;
  size_t kv = static_cast<size_t>(max_batch * config.num_key_value_heads * max_seq_len * config.head_dim);
  for (int64_t i = 0; i < 2 * config.num_hidden_layers; ++i) kv_.emplace_back(kv);
}

void DecoderSession::check_graph(const std::string& model_path) const {
  std::vector<std::string> names = ort::input_names(session_.get());
  std::set<std::string> have(names.begin(), names.end());
  std::vector<std::string> want = {"input_ids", "logits_index", "seqlens_k", "total_sequence_length"};
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    want.push_back("past_key." + std::to_string(i));
    want.push_back("past_value." + std::to_string(i));
  }
  if (info_.lora_slots > 0) {
    want.push_back("lora_index");
    for (const std::string& kind : info_.lora_targets) {
      want.push_back("lora_A." + kind);
      want.push_back("lora_B." + kind);
    }
  }
  for (const std::string& name : want)
    if (!have.count(name))
      fail(TINYLLM_BUNDLE_ERROR, model_path + ": the graph has no input \"" + name +
                                     "\"; it does not match its engine.json (re-export the engine)");
  if (have.size() != want.size())
    fail(TINYLLM_BUNDLE_ERROR, model_path + ": the graph has inputs its engine.json does not explain");
  if (ort::input_rank(session_.get(), "input_ids") != 2)
    fail(TINYLLM_BUNDLE_ERROR, model_path + ": the graph's input_ids is not [batch, seq] (re-export the engine)");
}

DecoderSession::Binding& DecoderSession::binding(int64_t start, int64_t b) {
  auto it = bindings_.find({start, b});
  if (it != bindings_.end()) return it->second;
  Binding bind = make_binding(start, b, logits_.data() + start * vocab_, {b, vocab_});
  return bindings_.emplace(std::make_pair(start, b), std::move(bind)).first->second;
}

DecoderSession::Binding DecoderSession::make_binding(int64_t start, int64_t b, float* logits_data,
                                                     const std::vector<int64_t>& logits_shape) {
  const OrtApi& api = ort::api();
  Binding bind;
  OrtIoBinding* raw = nullptr;
  ort::check(api.CreateIoBinding(session_.get(), &raw), "create an IO binding");
  bind.io.reset(raw);
  std::vector<int64_t> kv_shape = {b, config_.num_key_value_heads, max_seq_, config_.head_dim};
  size_t row_floats = static_cast<size_t>(config_.num_key_value_heads * max_seq_ * config_.head_dim);
  size_t kv_bytes = static_cast<size_t>(b) * row_floats * sizeof(float);
  for (int64_t layer = 0; layer < config_.num_hidden_layers; ++layer) {
    for (int kind = 0; kind < 2; ++kind) {
      const char* name = kind == 0 ? "key" : "value";
      float* rows = kv_[2 * layer + kind].data() + static_cast<size_t>(start) * row_floats;
      auto value = ort::tensor(rows, kv_bytes, kv_shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
      std::string suffix = std::string(name) + "." + std::to_string(layer);
      ort::check(api.BindInput(bind.io.get(), ("past_" + suffix).c_str(), value.get()), "bind the KV cache");
      ort::check(api.BindOutput(bind.io.get(), ("present_" + suffix).c_str(), value.get()), "bind the KV cache");
      bind.values.push_back(std::move(value));
    }
  }
  size_t logits_floats = 1;
  for (int64_t d : logits_shape) logits_floats *= static_cast<size_t>(d);
  auto logits = ort::tensor(logits_data, logits_floats * sizeof(float), logits_shape, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  ort::check(api.BindOutput(bind.io.get(), "logits", logits.get()), "bind the logits");
  bind.values.push_back(std::move(logits));
  for (auto& [name, tensor] : slots_.tensors()) {  // bound once; slots are filled in place
    auto value = ort::tensor(tensor.data(), tensor.size() * sizeof(float), slots_.shape(name),
                             ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    ort::check(api.BindInput(bind.io.get(), name.c_str(), value.get()), "bind the LoRA slots");
    bind.values.push_back(std::move(value));
  }
  return bind;
}

const float* DecoderSession::run(Binding& bind, int64_t start, int64_t b, int64_t width,
                                 const std::vector<int64_t>& lora_index, bool prefill, int64_t positions) {
  const OrtApi& api = ort::api();
  auto i64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  auto i32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
  std::vector<ort::Ptr<OrtValue>> inputs;
  auto bind_input = [&](const char* name, void* data, size_t bytes, std::vector<int64_t> shape,
                        ONNXTensorElementDataType type) {
    inputs.push_back(ort::tensor(data, bytes, shape, type));
    ort::check(api.BindInput(bind.io.get(), name, inputs.back().get()), std::string("bind ") + name);
  };
  bind_input("input_ids", ids_.data(), ids_.size() * 8, {b, width}, i64);
  std::vector<int64_t> index_shape = positions > 0 ? std::vector<int64_t>{b, positions} : std::vector<int64_t>{b};
  bind_input("logits_index", logits_index_.data(), logits_index_.size() * 8, index_shape, i64);
  bind_input("seqlens_k", seqlens_.data(), seqlens_.size() * 4, {b}, i32);
  bind_input("total_sequence_length", &total_, 4, {}, i32);
  if (slots_.enabled()) {
    lora_index_.assign(lora_index.begin(), lora_index.end());
    lora_index_.resize(static_cast<size_t>(b), 0);
    bind_input("lora_index", lora_index_.data(), lora_index_.size() * 8, {b}, i64);
  }
  bool traced = trace_.on();
  double traced_start = traced ? trace_clock() : 0;
  auto began = std::chrono::steady_clock::now();
  ort::check(api.RunWithBinding(session_.get(), nullptr, bind.io.get()), "run the engine");
  double took = seconds_since(began);
  if (traced) trace_.add({prefill, start, b, traced_tokens_, traced_past_, traced_start, trace_clock()});
  if (prefill) {
    ++times_.prefill_calls;
    times_.prefill_seconds += took;
  } else {
    ++times_.decode_steps;
    times_.decode_seconds += took;
  }
  return positions > 0 ? verify_logits_.data() : logits_.data() + start * vocab_;
}

const float* DecoderSession::prefill(const std::vector<std::vector<int32_t>>& prompts,
                                     const std::vector<int64_t>& lora_index) {
  int64_t b = static_cast<int64_t>(prompts.size());
  if (b < 1 || b > max_batch_)
    fail(TINYLLM_INVALID_ARGUMENT, "batch of " + std::to_string(b) + " prompts; this engine takes 1 to " +
                                       std::to_string(max_batch_));
  return prefill_rows(0, prompts, std::vector<int64_t>(static_cast<size_t>(b), 0), lora_index);
}

const float* DecoderSession::prefill_rows(int64_t start, const std::vector<std::vector<int32_t>>& chunks,
                                          const std::vector<int64_t>& past, const std::vector<int64_t>& lora_index) {
  int64_t b = static_cast<int64_t>(chunks.size());
  if (b < 1 || start < 0 || start + b > max_batch_ || past.size() != chunks.size())
    fail(TINYLLM_INTERNAL_ERROR, "rows " + std::to_string(start) + ".." + std::to_string(start + b - 1) +
                                     " are outside 0.." + std::to_string(max_batch_ - 1));
  int64_t width = 0, longest_past = 0;
  for (size_t row = 0; row < chunks.size(); ++row) {
    if (chunks[row].empty()) fail(TINYLLM_INTERNAL_ERROR, "every prefilled chunk needs at least one token");
    if (b > 1 && past[row] > 0) fail(TINYLLM_INTERNAL_ERROR, "a prompt continues after past tokens only one row at a time");
    if (past[row] + static_cast<int64_t>(chunks[row].size()) > max_seq_)
      fail(TINYLLM_CONTEXT_ERROR, "a sequence exceeds the engine's context of " + std::to_string(max_seq_));
    width = std::max<int64_t>(width, static_cast<int64_t>(chunks[row].size()));
    longest_past = std::max(longest_past, past[row]);
  }
  ids_.assign(static_cast<size_t>(b * width), pad_id_);
  logits_index_.resize(b);
  seqlens_.resize(b);
  for (int64_t row = 0; row < b; ++row) {
    const auto& p = chunks[row];
    std::copy(p.begin(), p.end(), ids_.begin() + row * width);
    logits_index_[row] = static_cast<int64_t>(p.size()) - 1;
    seqlens_[row] = static_cast<int32_t>(past[row] + static_cast<int64_t>(p.size())) - 1;
    times_.prompt_tokens += p.size();
  }
  total_ = static_cast<int32_t>(longest_past + width);
  traced_tokens_ = 0;
  for (const auto& chunk : chunks) traced_tokens_ += static_cast<int64_t>(chunk.size());
  traced_past_ = past[0];
  return run(binding(start, b), start, b, width, lora_index, true);
}

std::vector<std::vector<float>> DecoderSession::read_kv(int64_t row, int64_t n) const {
  size_t heads = static_cast<size_t>(config_.num_key_value_heads), h = static_cast<size_t>(config_.head_dim);
  size_t seq = static_cast<size_t>(max_seq_), count = static_cast<size_t>(n);
  std::vector<std::vector<float>> out;
  for (const FloatBuffer& buf : kv_) {
    std::vector<float> part(heads * count * h);
    const float* base = buf.data() + static_cast<size_t>(row) * heads * seq * h;
    for (size_t k = 0; k < heads; ++k) std::copy_n(base + k * seq * h, count * h, part.data() + k * count * h);
    out.push_back(std::move(part));
  }
  return out;
}

void DecoderSession::write_kv(int64_t row, const std::vector<std::vector<float>>& kv, int64_t n) {
  size_t heads = static_cast<size_t>(config_.num_key_value_heads), h = static_cast<size_t>(config_.head_dim);
  size_t seq = static_cast<size_t>(max_seq_), count = static_cast<size_t>(n);
  if (kv.size() != kv_.size()) fail(TINYLLM_INTERNAL_ERROR, "cached KV has the wrong number of buffers");
  for (size_t i = 0; i < kv_.size(); ++i) {
    size_t stored = kv[i].size() / (heads * h);
    if (count > stored) fail(TINYLLM_INTERNAL_ERROR, "cached KV is shorter than asked");
    float* base = kv_[i].data() + static_cast<size_t>(row) * heads * seq * h;
    for (size_t k = 0; k < heads; ++k) std::copy_n(kv[i].data() + k * stored * h, count * h, base + k * seq * h);
  }
}

size_t DecoderSession::kv_bytes() const {
  size_t total = 0;
  for (const FloatBuffer& buf : kv_) total += buf.size() * sizeof(float);
  return total;
}

const float* DecoderSession::decode(const std::vector<int32_t>& tokens, const std::vector<int64_t>& held,
                                    const std::vector<int64_t>& lora_index, int64_t start) {
  int64_t b = static_cast<int64_t>(tokens.size());
  if (b < 1 || start < 0 || start + b > max_batch_ || held.size() != tokens.size())
    fail(TINYLLM_INTERNAL_ERROR, "decode rows " + std::to_string(start) + ".." + std::to_string(start + b - 1) +
                                     " are outside 0.." + std::to_string(max_batch_ - 1) +
                                     " (or their lengths do not match)");
  int64_t longest = *std::max_element(held.begin(), held.end());
  if (longest >= max_seq_)
    fail(TINYLLM_CONTEXT_ERROR, "a sequence reached the engine's context of " + std::to_string(max_seq_));
  ids_.assign(tokens.begin(), tokens.end());
  logits_index_.assign(static_cast<size_t>(b), 0);
  seqlens_.resize(b);
  for (int64_t row = 0; row < b; ++row) seqlens_[row] = static_cast<int32_t>(held[row]);
  total_ = static_cast<int32_t>(longest + 1);
  traced_tokens_ = b;
  traced_past_ = 0;
  return run(binding(start, b), start, b, 1, lora_index, false);
}

const float* DecoderSession::verify(int64_t row, const std::vector<int32_t>& tokens, int64_t past, int64_t slot) {
  int64_t n = static_cast<int64_t>(tokens.size());
  if (!verifies_)
    fail(TINYLLM_UNSUPPORTED, "this engine returns one position's logits per row; re-export it to verify several "
                              "tokens in one step");
  if (n < 1 || row < 0 || row >= max_batch_ || past < 0)
    fail(TINYLLM_INTERNAL_ERROR, "a verify run needs tokens and a row in 0.." + std::to_string(max_batch_ - 1));
  if (past + n > max_seq_)
    fail(TINYLLM_CONTEXT_ERROR, "a sequence exceeds the engine's context of " + std::to_string(max_seq_));
  ids_.assign(tokens.begin(), tokens.end());
  logits_index_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) logits_index_[static_cast<size_t>(i)] = i;
  seqlens_.assign(1, static_cast<int32_t>(past + n - 1));
  total_ = static_cast<int32_t>(past + n);
  traced_tokens_ = n;
  traced_past_ = past;
  verify_logits_.resize(static_cast<size_t>(n * vocab_));
  // Its own binding: the logits output is [1, n, V], a shape no cached binding has.
  Binding bind = make_binding(row, 1, verify_logits_.data(), {1, n, vocab_});
  return run(bind, row, 1, n, {slot}, false, n);
}

}  // namespace tinyllm
