// Reading a tinyllm bundle (docs/bundle.md): manifest.json with every file confined to
// the bundle and its size checked (sha256 on request), the model config, adapters,
// and an engine's engine.json.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "json.h"

namespace tinyllm {

struct FileEntry {
  std::string sha256;
  uint64_t size = 0;
};

struct ModelConfig {
  std::string family;
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0,
          num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0,
          max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  std::vector<int32_t> eos_token_ids;
};

struct AdapterEntry {
  std::string file;
  int64_t rank = 0;
  double alpha = 0;
  std::vector<std::string> target_modules;
};

struct EngineEntry {
  std::string name, target, path, precision;
};

// engine.json: how an engine was exported. merged_adapter: the task whose adapter export
// folded into the weights (--merge-adapter); such an engine serves only that task.
// greedy_ids: the graph also outputs each row's argmax (--greedy-ids); this runtime reads
// the logits (it binds outputs by name, so the extra output is never fetched).
struct EngineInfo {
  std::string target, flavour, precision, float_dtype, model, merged_adapter;
  int64_t max_seq_len = 0, block_size = 0, lora_slots = 0, lora_rank = 0;
  std::vector<std::string> lora_targets;
  bool greedy_ids = false;
};

// Reject names that would leave the bundle (absolute, "..", backslashes, empty).
void check_relative_path(const std::string& name, const std::string& where);

class Bundle {
 public:
  // Open and check a bundle; throws TINYLLM_BUNDLE_ERROR naming the file and problem.
  static Bundle open(const std::string& path, bool verify_hashes);

  const std::string& root() const { return root_; }
  const ModelConfig& config() const { return config_; }
  const std::map<std::string, AdapterEntry>& adapters() const { return adapters_; }
  const std::vector<EngineEntry>& engines() const { return engines_; }
  // The manifest's tasks that call tools (tasks[name].tools set).
  const std::vector<std::string>& tool_tasks() const { return tool_tasks_; }

  // Path of a file the manifest lists; an unlisted name is an error.
  std::string file(const std::string& name) const;
  bool lists(const std::string& name) const { return files_.count(name) != 0; }
  // The named engine, or the first onnx-cpu engine, or the first one.
  const EngineEntry& pick_engine(const std::string& name) const;
  EngineInfo engine_info(const EngineEntry& engine) const;

 private:
  void parse_manifest(const json::Value& m, const std::string& where);
  void check_files(bool verify_hashes) const;

  std::string root_, real_root_;
  std::map<std::string, FileEntry> files_;
  ModelConfig config_;
  std::map<std::string, AdapterEntry> adapters_;
  std::vector<EngineEntry> engines_;
  std::vector<std::string> tool_tasks_;
};

// Read a whole file (TINYLLM_BUNDLE_ERROR when it cannot be read).
std::string read_text_file(const std::string& path);

}  // namespace tinyllm
