// A small safetensors reader: the JSON header is checked (offsets inside the file,
// sizes matching shapes) and tensors are read as float32 (from F32, F16 or BF16).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tinyllm {

struct TensorEntry {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
};

class SafeTensors {
 public:
  // Read and check the header of `path`; throws TINYLLM_BUNDLE_ERROR naming the file.
  static SafeTensors open(const std::string& path);

  const std::map<std::string, TensorEntry>& tensors() const { return tensors_; }
  // One tensor's values as float32, row-major.
  std::vector<float> read_float(const std::string& name) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::map<std::string, TensorEntry> tensors_;
};

}  // namespace tinyllm
