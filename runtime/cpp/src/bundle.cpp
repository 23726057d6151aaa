#include "bundle.h"

#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "error.h"
#include "sha256.h"

namespace tinyllm {
namespace {

constexpr int64_t kSchemaVersion = 1;
const std::set<std::string> kManifestKeys = {
    "schema_version", "name",    "stage",       "created_at", "tinyllm_version",
    "source",         "model",   "dtype",       "files",      "lineage",
    "quantization",   "lora_mode", "tasks",     "adapters",   "engines"};
const std::set<std::string> kEngineInfoKeys = {
    "target",     "flavour",    "precision",  "float_dtype", "max_seq_len",
    "model",      "block_size", "lora_slots", "lora_rank",   "lora_targets",
    "merged_adapter", "greedy_ids"};

[[noreturn]] void bundle_error(const std::string& message) { fail(TINYLLM_BUNDLE_ERROR, message); }

void check_keys(const json::Value& obj, const std::set<std::string>& known, const std::string& where) {
  for (const auto& [key, value] : obj.as_object(where))
    if (!known.count(key)) bundle_error(where + ": unknown key \"" + key + "\"");
}

int64_t positive(const json::Value& obj, const char* key, const std::string& where) {
  int64_t v = obj.at(key, where).as_int(where + "." + key);
  if (v <= 0) bundle_error(where + "." + key + " must be positive, got " + std::to_string(v));
  return v;
}

std::string real_path(const std::string& path) {
  char buffer[PATH_MAX];
  return ::realpath(path.c_str(), buffer) ? std::string(buffer) : std::string();
}

ModelConfig parse_model(const json::Value& m, const std::string& where) {
  ModelConfig c;
  c.family = m.at("family", where).as_string(where + ".family");
  if (c.family != "llama" && c.family != "qwen2")
    bundle_error(where + ".family: \"" + c.family + "\" is not one of llama, qwen2");
  c.vocab_size = positive(m, "vocab_size", where);
  c.hidden_size = positive(m, "hidden_size", where);
  c.intermediate_size = positive(m, "intermediate_size", where);
  c.num_hidden_layers = positive(m, "num_hidden_layers", where);
  c.num_attention_heads = positive(m, "num_attention_heads", where);
  c.num_key_value_heads = positive(m, "num_key_value_heads", where);
  c.head_dim = positive(m, "head_dim", where);
  c.max_position_embeddings = positive(m, "max_position_embeddings", where);
  c.tie_word_embeddings = m.at("tie_word_embeddings", where).as_bool(where);
  if (const json::Value* eos = m.find("eos_token_id"); eos && !eos->is_null()) {
    if (eos->is_array()) {
      for (const json::Value& id : eos->as_array(where + ".eos_token_id"))
        c.eos_token_ids.push_back(static_cast<int32_t>(id.as_int(where + ".eos_token_id")));
    } else {
      c.eos_token_ids.push_back(static_cast<int32_t>(eos->as_int(where + ".eos_token_id")));
    }
  }
  return c;
}

}  // namespace

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) bundle_error(path + ": cannot open the file");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void check_relative_path(const std::string& name, const std::string& where) {
  bool bad = name.empty() || name[0] == '/' || name.find('\\') != std::string::npos;
  size_t start = 0;
  while (!bad && start <= name.size()) {
    size_t slash = name.find('/', start);
    std::string part = name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part == "..") bad = true;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (bad) bundle_error(where + ": file name \"" + name + "\" must be a relative path inside the bundle");
}

Bundle Bundle::open(const std::string& path, bool verify_hashes) {
  Bundle b;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) bundle_error("no bundle at " + path + ": the path does not exist");
  if (!S_ISDIR(st.st_mode)) bundle_error(path + " is not a bundle: a bundle is a folder (NAME.tllm/)");
  b.root_ = path;
  while (b.root_.size() > 1 && b.root_.back() == '/') b.root_.pop_back();
  b.real_root_ = real_path(b.root_);
  std::string manifest_path = b.root_ + "/manifest.json";
  if (::stat(manifest_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    bundle_error(b.root_ + " has no manifest.json: it is not a tinyllm bundle (or its write was "
                           "interrupted); re-create it with `tinyllm import`");
  json::Value manifest = json::parse(read_text_file(manifest_path), manifest_path);
  b.parse_manifest(manifest, manifest_path);
  b.check_files(verify_hashes);
  return b;
}

void Bundle::parse_manifest(const json::Value& m, const std::string& where) {
  if (!m.is_object()) bundle_error(where + ": expected a JSON object");
  const json::Value* version = m.find("schema_version");
  if (version == nullptr || !version->is_integer() || version->as_int(where) != kSchemaVersion) {
    bool newer = version && version->is_integer() && version->as_int(where) > kSchemaVersion;
    bundle_error(where + ": schema_version is not 1, the version this library reads; " +
                 (newer ? "it was written by a newer tinyllm: upgrade the library"
                        : "re-create it with `tinyllm import`"));
  }
  check_keys(m, kManifestKeys, where);
  config_ = parse_model(m.at("model", where), where + ": model");
  for (const auto& [name, entry] : m.at("files", where).as_object(where + ": files")) {
    std::string label = where + ": files[\"" + name + "\"]";
    check_relative_path(name, where);
    FileEntry f;
    f.sha256 = entry.at("sha256", label).as_string(label + ".sha256");
    int64_t size = entry.at("size", label).as_int(label + ".size");
    if (size < 0) bundle_error(label + ".size is negative");
    f.size = static_cast<uint64_t>(size);
    files_[name] = f;
  }
  for (const char* required : {"weights.safetensors", "tokenizer/tokenizer.json"})
    if (!files_.count(required))
      bundle_error(where + ": a bundle must list \"" + std::string(required) + "\" in its files");
  if (const json::Value* adapters = m.find("adapters")) {
    for (const auto& [task, entry] : adapters->as_object(where + ": adapters")) {
      std::string label = where + ": adapters[\"" + task + "\"]";
      AdapterEntry a;
      a.file = entry.at("file", label).as_string(label + ".file");
      a.rank = entry.at("rank", label).as_int(label + ".rank");
      a.alpha = entry.at("alpha", label).as_number(label + ".alpha");
      for (const json::Value& t : entry.at("target_modules", label).as_array(label))
        a.target_modules.push_back(t.as_string(label + ".target_modules"));
      if (!files_.count(a.file)) bundle_error(label + " names unlisted file \"" + a.file + "\"");
      if (a.rank < 1) bundle_error(label + ".rank must be >= 1");
      adapters_[task] = a;
    }
  }
  if (const json::Value* tasks = m.find("tasks"); tasks != nullptr && tasks->is_object())
    for (const auto& [task, spec] : tasks->as_object(where + ": tasks"))
      if (const json::Value* tools = spec.find("tools"); tools != nullptr && !tools->is_null()) tool_tasks_.push_back(task);
  if (const json::Value* engines = m.find("engines")) {
    for (const auto& [name, entry] : engines->as_object(where + ": engines")) {
      std::string label = where + ": engines[\"" + name + "\"]";
      EngineEntry e{name, entry.at("target", label).as_string(label + ".target"),
                    entry.at("path", label).as_string(label + ".path"),
                    entry.at("precision", label).as_string(label + ".precision")};
      check_relative_path(e.path, label);
      engines_.push_back(e);
    }
  }
}

void Bundle::check_files(bool verify_hashes) const {
  for (const auto& [name, entry] : files_) {
    std::string path = root_ + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      bundle_error(path + ": the manifest lists this file but it is missing");
    std::string real = real_path(path);
    if (real.empty() || real.compare(0, real_root_.size() + 1, real_root_ + "/") != 0)
      bundle_error(path + ": resolves outside the bundle (a symbolic link?); a bundle's files must lie inside it");
    if (static_cast<uint64_t>(st.st_size) != entry.size)
      bundle_error(path + ": size is " + std::to_string(st.st_size) + " bytes, the manifest says " +
                   std::to_string(entry.size) + " (truncated or replaced file)");
    if (verify_hashes && sha256_file(path) != entry.sha256)
      bundle_error(path + ": sha256 does not match the manifest (the file was modified or "
                          "corrupted); re-create the bundle");
  }
}

std::string Bundle::file(const std::string& name) const {
  if (!files_.count(name)) bundle_error(root_ + ": the manifest lists no file \"" + name + "\"");
  return root_ + "/" + name;
}

const EngineEntry& Bundle::pick_engine(const std::string& name) const {
  if (engines_.empty())
    bundle_error(root_ + " has no exported engine; run `tinyllm export " + root_ + " --target onnx-cpu` first");
  if (!name.empty()) {
    for (const EngineEntry& e : engines_)
      if (e.name == name) return e;
    std::string have;
    for (const EngineEntry& e : engines_) have += (have.empty() ? "" : ", ") + e.name;
    bundle_error(root_ + " has no engine \"" + name + "\"; it has: " + have);
  }
  for (const EngineEntry& e : engines_)
    if (e.target == "onnx-cpu") return e;
  return engines_.front();
}

EngineInfo Bundle::engine_info(const EngineEntry& engine) const {
  std::string folder = engine.path;
  while (!folder.empty() && folder.back() == '/') folder.pop_back();
  std::string path = file(folder + "/engine.json");
  json::Value j = json::parse(read_text_file(path), path);
  check_keys(j, kEngineInfoKeys, path);
  EngineInfo info;
  info.target = j.at("target", path).as_string(path + ": target");
  info.flavour = j.at("flavour", path).as_string(path + ": flavour");
  info.precision = j.at("precision", path).as_string(path + ": precision");
  info.float_dtype = j.at("float_dtype", path).as_string(path + ": float_dtype");
  info.max_seq_len = positive(j, "max_seq_len", path);
  info.model = j.at("model", path).as_string(path + ": model");
  check_relative_path(info.model, path);
  file(folder + "/" + info.model);  // the graph must be a listed file
  auto integer = [&](const char* key) {
    const json::Value* v = j.find(key);
    int64_t x = v ? v->as_int(path + ": " + key) : 0;
    if (x < 0) bundle_error(path + ": " + key + " is negative");
    return x;
  };
  info.block_size = integer("block_size");
  info.lora_slots = integer("lora_slots");
  info.lora_rank = integer("lora_rank");
  if (const json::Value* t = j.find("lora_targets"))
    for (const json::Value& v : t->as_array(path + ": lora_targets"))
      info.lora_targets.push_back(v.as_string(path + ": lora_targets"));
  if (const json::Value* m = j.find("merged_adapter"); m && !m->is_null())
    info.merged_adapter = m->as_string(path + ": merged_adapter");
  if (const json::Value* g = j.find("greedy_ids")) info.greedy_ids = g->as_bool(path + ": greedy_ids");
  return info;
}

}  // namespace tinyllm
