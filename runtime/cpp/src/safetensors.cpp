#include "safetensors.h"

#include <cstring>
#include <fstream>

#include "error.h"
#include "json.h"

namespace tinyllm {
namespace {

constexpr uint64_t kMaxHeader = 100u << 20;

size_t dtype_size(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
  return 0;
}

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) mant <<= 1, --exp;
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

SafeTensors SafeTensors::open(const std::string& path) {
  SafeTensors st;
  st.path_ = path;
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(TINYLLM_BUNDLE_ERROR, path + ": cannot open the safetensors file");
  uint64_t file_size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  unsigned char len_bytes[8];
  if (file_size < 8 || !f.read(reinterpret_cast<char*>(len_bytes), 8))
    fail(TINYLLM_BUNDLE_ERROR, path + ": truncated safetensors file (no header length)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > kMaxHeader || n > file_size - 8)
    fail(TINYLLM_BUNDLE_ERROR, path + ": safetensors header length " + std::to_string(n) +
                                   " does not fit the file (truncated or not safetensors)");
  std::string header(n, '\0');
  if (!f.read(header.data(), static_cast<std::streamsize>(n)))
    fail(TINYLLM_BUNDLE_ERROR, path + ": truncated safetensors header");
  st.data_start_ = 8 + n;
  uint64_t data_size = file_size - st.data_start_, covered = 0;
  json::Value h = json::parse(header, path + " (safetensors header)");
  for (const auto& [name, entry] : h.as_object(path)) {
    if (name == "__metadata__") continue;
    std::string label = path + ": tensor \"" + name + "\"";
    TensorEntry t;
    t.dtype = entry.at("dtype", label).as_string(label + ".dtype");
    size_t item = dtype_size(t.dtype);
    if (item == 0) fail(TINYLLM_BUNDLE_ERROR, label + ": unknown dtype " + t.dtype);
    uint64_t count = 1;
    for (const json::Value& d : entry.at("shape", label).as_array(label + ".shape")) {
      int64_t dim = d.as_int(label + ".shape");
      if (dim < 0 || (dim > 0 && count > (UINT64_MAX / 8) / static_cast<uint64_t>(dim)))
        fail(TINYLLM_BUNDLE_ERROR, label + ": bad shape");
      t.shape.push_back(dim);
      count *= static_cast<uint64_t>(dim);
    }
    const auto& offsets = entry.at("data_offsets", label).as_array(label + ".data_offsets");
    if (offsets.size() != 2) fail(TINYLLM_BUNDLE_ERROR, label + ": data_offsets must be [begin, end]");
    int64_t begin = offsets[0].as_int(label), end = offsets[1].as_int(label);
    if (begin < 0 || end < begin || static_cast<uint64_t>(end) > data_size)
      fail(TINYLLM_BUNDLE_ERROR, label + ": data_offsets lie outside the file (truncated file?)");
    t.begin = static_cast<uint64_t>(begin);
    t.end = static_cast<uint64_t>(end);
    if (t.end - t.begin != count * item)
      fail(TINYLLM_BUNDLE_ERROR, label + ": byte size does not match its shape and dtype");
    covered += t.end - t.begin;
    st.tensors_[name] = t;
  }
  if (covered != data_size)
    fail(TINYLLM_BUNDLE_ERROR, path + ": the data section is " + std::to_string(data_size) +
                                   " bytes but the tensors cover " + std::to_string(covered));
  return st;
}

std::vector<float> SafeTensors::read_float(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(TINYLLM_BUNDLE_ERROR, path_ + ": no tensor \"" + name + "\"");
  const TensorEntry& t = it->second;
  std::string raw(t.end - t.begin, '\0');
  std::ifstream f(path_, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(data_start_ + t.begin));
  if (!f.read(raw.data(), static_cast<std::streamsize>(raw.size())))
    fail(TINYLLM_BUNDLE_ERROR, path_ + ": cannot read tensor \"" + name + "\"");
  std::vector<float> out;
  if (t.dtype == "F32") {
    out.resize(raw.size() / 4);
    std::memcpy(out.data(), raw.data(), raw.size());
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    out.resize(raw.size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t v;
      std::memcpy(&v, raw.data() + 2 * i, 2);
      if (t.dtype == "F16") {
        out[i] = half_to_float(v);
      } else {
        uint32_t bits = static_cast<uint32_t>(v) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
    }
  } else {
    fail(TINYLLM_BUNDLE_ERROR, path_ + ": tensor \"" + name + "\" is " + t.dtype + ", not a float type");
  }
  return out;
}

}  // namespace tinyllm
