#include "lora.h"

#include "error.h"
#include "safetensors.h"

namespace tinyllm {

std::pair<int64_t, int64_t> projection_dims(const ModelConfig& c, const std::string& kind) {
  int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  if (kind == "q_proj") return {c.hidden_size, q};
  if (kind == "k_proj" || kind == "v_proj") return {c.hidden_size, kv};
  if (kind == "o_proj") return {q, c.hidden_size};
  if (kind == "gate_proj" || kind == "up_proj") return {c.hidden_size, c.intermediate_size};
  if (kind == "down_proj") return {c.intermediate_size, c.hidden_size};
  fail(TINYLLM_BUNDLE_ERROR, "unknown projection \"" + kind + "\"");
}

AdapterSlots::AdapterSlots(const ModelConfig& config, const EngineInfo& info)
    : config_(config),
      slots_(info.lora_slots),
      rank_(info.lora_rank),
      targets_(info.lora_targets),
      merged_(info.merged_adapter) {
  if (slots_ == 0) return;
  for (const std::string& kind : targets_) {
    auto [d_in, d_out] = projection_dims(config, kind);
    size_t per = static_cast<size_t>(config.num_hidden_layers * slots_ * rank_);
    tensors_["lora_A." + kind].assign(per * d_in, 0.f);
    tensors_["lora_B." + kind].assign(per * d_out, 0.f);
  }
  slot_of_[""] = 0;
}

std::vector<int64_t> AdapterSlots::shape(const std::string& name) const {
  bool is_a = name.rfind("lora_A.", 0) == 0;
  auto [d_in, d_out] = projection_dims(config_, name.substr(7));
  return is_a ? std::vector<int64_t>{config_.num_hidden_layers, slots_, d_in, rank_}
              : std::vector<int64_t>{config_.num_hidden_layers, slots_, rank_, d_out};
}

int64_t AdapterSlots::slot_for(const Bundle& bundle, const std::string& task) {
  if (task.empty() || task == merged_) return 0;
  if (!merged_.empty())
    fail(TINYLLM_UNSUPPORTED, "this engine has the adapter of task \"" + merged_ +
                                  "\" merged into its weights and serves only that task, not the adapter of \"" +
                                  task + "\"; export an engine with --merge-adapter " + task +
                                  " or one with LoRA slots");
  if (auto it = slot_of_.find(task); it != slot_of_.end()) return it->second;
  auto entry = bundle.adapters().find(task);
  if (entry == bundle.adapters().end()) {
    std::string have;
    for (const auto& [name, a] : bundle.adapters()) have += (have.empty() ? "" : ", ") + name;
    fail(TINYLLM_NOT_FOUND, "no LoRA adapter for task \"" + task + "\" in " + bundle.root() +
                                       " (adapters: " + (have.empty() ? "none" : have) + ")");
  }
  if (slots_ == 0)
    fail(TINYLLM_UNSUPPORTED, "task \"" + task + "\" has an adapter but this engine has no LoRA "
                              "slots; export with lora_slots > 0 (the default for bundles with adapters)");
  int64_t slot = static_cast<int64_t>(slot_of_.size());  // slots fill in order of first use
  if (slot >= slots_)
    fail(TINYLLM_UNSUPPORTED, "all " + std::to_string(slots_ - 1) + " adapter slots are taken; "
                              "export the engine with more lora_slots");
  fill(slot, bundle, entry->second, task);
  slot_of_[task] = slot;
  return slot;
}

void AdapterSlots::fill(int64_t slot, const Bundle& bundle, const AdapterEntry& adapter,
                        const std::string& task) {
  std::string where = "adapter of task \"" + task + "\"";
  if (adapter.rank > rank_)
    fail(TINYLLM_BUNDLE_ERROR, where + ": rank " + std::to_string(adapter.rank) +
                                   " exceeds the engine's LoRA rank " + std::to_string(rank_) +
                                   "; re-export with --lora-rank >= the largest adapter rank");
  for (const std::string& kind : adapter.target_modules) {
    bool known = false;
    for (const std::string& t : targets_) known |= t == kind;
    if (!known) fail(TINYLLM_BUNDLE_ERROR, where + ": the engine does not adapt \"" + kind + "\"");
  }
  SafeTensors file = SafeTensors::open(bundle.file(adapter.file));
  float scaling = static_cast<float>(adapter.alpha / static_cast<double>(adapter.rank));
  int64_t layers = config_.num_hidden_layers, r = adapter.rank;
  for (const std::string& kind : adapter.target_modules) {
    auto [d_in, d_out] = projection_dims(config_, kind);
    std::string group = (kind == "gate_proj" || kind == "up_proj" || kind == "down_proj") ? "mlp" : "self_attn";
    std::vector<float>& A = tensors_["lora_A." + kind];
    std::vector<float>& B = tensors_["lora_B." + kind];
    for (int64_t layer = 0; layer < layers; ++layer) {
      std::string base = "model.layers." + std::to_string(layer) + "." + group + "." + kind;
      const auto& infos = file.tensors();
      auto ia = infos.find(base + ".lora_A.weight"), ib = infos.find(base + ".lora_B.weight");
      if (ia == infos.end() || ib == infos.end())
        fail(TINYLLM_BUNDLE_ERROR, where + ": tensor " + base + ".lora_A/B.weight is missing");
      if (ia->second.shape != std::vector<int64_t>{r, d_in} || ib->second.shape != std::vector<int64_t>{d_out, r})
        fail(TINYLLM_BUNDLE_ERROR, where + ": " + base + " has the wrong shape for rank " + std::to_string(r));
      std::vector<float> a = file.read_float(base + ".lora_A.weight");  // [r, d_in]
      std::vector<float> b = file.read_float(base + ".lora_B.weight");  // [d_out, r]
      float* dst_a = A.data() + ((layer * slots_ + slot) * d_in) * rank_;  // [d_in, rank]
      float* dst_b = B.data() + ((layer * slots_ + slot) * rank_) * d_out;  // [rank, d_out]
      for (int64_t i = 0; i < d_in; ++i)
        for (int64_t k = 0; k < r; ++k) dst_a[i * rank_ + k] = a[k * d_in + i];
      for (int64_t k = 0; k < r; ++k)
        for (int64_t o = 0; o < d_out; ++o) dst_b[k * d_out + o] = b[o * r + k] * scaling;
    }
  }
}

}  // namespace tinyllm
