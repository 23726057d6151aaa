// ONNX Runtime loaded at run time (dlopen) and used through its C API.
//
// The library is looked up in this order: $TINYLLM_ORT_LIBRARY; libonnxruntime.so* beside
// libtinyllm; the onnxruntime wheel's library found when tinyllm was built; the system's
// libonnxruntime.so.1. A deployment therefore needs only the .so files and the bundle.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ort_api.h"

namespace tinyllm::ort {

// The API table (loading the library on first use); throws TINYLLM_RUNTIME_ERROR.
const OrtApi& api();
// The process-wide environment.
OrtEnv* env();
// Which library was loaded, and its version string.
std::string library_path();
std::string version();

// Throw TINYLLM_RUNTIME_ERROR (releasing `status`) when it is an error; `what` says
// what was being done.
void check(OrtStatus* status, const std::string& what);

struct Deleter {
  void operator()(OrtSession* p) const { api().ReleaseSession(p); }
  void operator()(OrtSessionOptions* p) const { api().ReleaseSessionOptions(p); }
  void operator()(OrtMemoryInfo* p) const { api().ReleaseMemoryInfo(p); }
  void operator()(OrtValue* p) const { api().ReleaseValue(p); }
  void operator()(OrtIoBinding* p) const { api().ReleaseIoBinding(p); }
};
template <typename T>
using Ptr = std::unique_ptr<T, Deleter>;

// An OrtValue over caller-owned memory (no copy): the memory must outlive its use.
Ptr<OrtValue> tensor(void* data, size_t bytes, const std::vector<int64_t>& shape,
                     ONNXTensorElementDataType type);

// Names of a session's inputs and outputs.
std::vector<std::string> input_names(const OrtSession* session);
// The rank an input of the session declares (0 when it leaves the rank open); -1 when
// the session has no such input.
int64_t input_rank(const OrtSession* session, const std::string& name);
std::vector<std::string> output_names(const OrtSession* session);

}  // namespace tinyllm::ort
