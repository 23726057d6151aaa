// The engine's LoRA slots: stacked adapter tensors lora_A.P [layers, slots, d_in, rank]
// and lora_B.P [layers, slots, rank, d_out] (scaling folded into B), bound to the graph
// once. Slot 0 is the base model (all zeros); filling a slot writes it in place.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "bundle.h"

namespace tinyllm {

class AdapterSlots {
 public:
  AdapterSlots(const ModelConfig& config, const EngineInfo& info);

  bool enabled() const { return slots_ > 0; }
  // The slot holding `task`'s adapter, filling a free one from the bundle on first use
  // (an engine with a merged adapter: 0 for that task, an error for any other).
  int64_t slot_for(const Bundle& bundle, const std::string& task);
  // Stacked tensors by graph input name (lora_A.q_proj, ...), [layers, slots, ...].
  std::map<std::string, std::vector<float>>& tensors() { return tensors_; }
  std::vector<int64_t> shape(const std::string& name) const;

 private:
  void fill(int64_t slot, const Bundle& bundle, const AdapterEntry& adapter, const std::string& task);

  ModelConfig config_;
  int64_t slots_, rank_;
  std::vector<std::string> targets_;
  std::string merged_;  // the task whose adapter is in the weights (slot 0), if any
  std::map<std::string, std::vector<float>> tensors_;
  std::map<std::string, int64_t> slot_of_;
};

// (d_in, d_out) of a projection kind ("q_proj", ..., "down_proj").
std::pair<int64_t, int64_t> projection_dims(const ModelConfig& c, const std::string& kind);

}  // namespace tinyllm
