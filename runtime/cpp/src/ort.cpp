#include "ort.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "error.h"

#ifndef TINYLLM_DEFAULT_ORT_LIBRARY
#define TINYLLM_DEFAULT_ORT_LIBRARY ""
#endif

namespace tinyllm::ort {
namespace {

struct Runtime {
  const OrtApi* api = nullptr;
  const OrtApiBase* base = nullptr;
  OrtEnv* env = nullptr;
  std::string path;
};

std::string own_folder() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&own_folder), &info) == 0 || info.dli_fname == nullptr) return {};
  std::string self = info.dli_fname;
  size_t slash = self.rfind('/');
  return slash == std::string::npos ? std::string(".") : self.substr(0, slash);
}

std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("TINYLLM_ORT_LIBRARY"); env && *env) {
    out.emplace_back(env);
    return out;  // an explicit choice is the only one tried
  }
  std::string here = own_folder();
  if (!here.empty())
    for (const char* name : {"libonnxruntime.so.1.31.1", "libonnxruntime.so.1", "libonnxruntime.so"})
      out.push_back(here + "/" + name);
  if (*TINYLLM_DEFAULT_ORT_LIBRARY) out.emplace_back(TINYLLM_DEFAULT_ORT_LIBRARY);
  out.emplace_back("libonnxruntime.so.1");
  return out;
}

Runtime load() {
  Runtime rt;
  std::string tried;
  void* handle = nullptr;
  for (const std::string& path : candidates()) {
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      rt.path = path;
      break;
    }
    const char* why = dlerror();
    tried += "\n  " + path + ": " + (why ? why : "not loadable");
  }
  if (handle == nullptr)
    fail(TINYLLM_RUNTIME_ERROR,
         "cannot load the ONNX Runtime library (libonnxruntime.so); set TINYLLM_ORT_LIBRARY to "
         "its path (the onnxruntime wheel ships it in onnxruntime/capi/). Tried:" + tried);
  auto get_base = reinterpret_cast<OrtGetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_base == nullptr)
    fail(TINYLLM_RUNTIME_ERROR, rt.path + " has no OrtGetApiBase: it is not ONNX Runtime");
  rt.base = get_base();
  rt.api = rt.base->GetApi(ORT_API_VERSION);
  if (rt.api == nullptr)
    fail(TINYLLM_RUNTIME_ERROR, rt.path + " is ONNX Runtime " + rt.base->GetVersionString() +
                                    ", which lacks C API version " + std::to_string(ORT_API_VERSION) +
                                    "; use onnxruntime 1.31 or newer");
  OrtStatus* status = rt.api->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "tinyllm", &rt.env);
  if (status != nullptr) {
    std::string message = rt.api->GetErrorMessage(status);
    rt.api->ReleaseStatus(status);
    fail(TINYLLM_RUNTIME_ERROR, "ONNX Runtime could not create its environment: " + message);
  }
  return rt;  // the library and environment stay for the life of the process
}

const Runtime& runtime() {
  static std::mutex mutex;
  static std::unique_ptr<Runtime> rt;
  std::lock_guard<std::mutex> lock(mutex);
  if (!rt) rt = std::make_unique<Runtime>(load());
  return *rt;
}

}  // namespace

const OrtApi& api() { return *runtime().api; }
OrtEnv* env() { return runtime().env; }
std::string library_path() { return runtime().path; }
std::string version() { return runtime().base->GetVersionString(); }

void check(OrtStatus* status, const std::string& what) {
  if (status == nullptr) return;
  std::string message = api().GetErrorMessage(status);
  api().ReleaseStatus(status);
  fail(TINYLLM_RUNTIME_ERROR, "ONNX Runtime failed to " + what + ": " + message);
}

Ptr<OrtValue> tensor(void* data, size_t bytes, const std::vector<int64_t>& shape,
                     ONNXTensorElementDataType type) {
  static OrtMemoryInfo* cpu = [] {
    OrtMemoryInfo* info = nullptr;
    check(api().CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &info), "describe CPU memory");
    return info;
  }();
  OrtValue* value = nullptr;
  check(api().CreateTensorWithDataAsOrtValue(cpu, data, bytes, shape.data(), shape.size(), type, &value),
        "wrap a tensor");
  return Ptr<OrtValue>(value);
}

namespace {
std::vector<std::string> names(const OrtSession* session, bool inputs) {
  const OrtApi& a = api();
  OrtAllocator* allocator = nullptr;
  check(a.GetAllocatorWithDefaultOptions(&allocator), "get the default allocator");
  size_t n = 0;
  check(inputs ? a.SessionGetInputCount(session, &n) : a.SessionGetOutputCount(session, &n),
        "count the graph's inputs and outputs");
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    char* name = nullptr;
    check(inputs ? a.SessionGetInputName(session, i, allocator, &name)
                 : a.SessionGetOutputName(session, i, allocator, &name),
          "read a graph input or output name");
    out.emplace_back(name);
    check(a.AllocatorFree(allocator, name), "free a name");
  }
  return out;
}
}  // namespace

std::vector<std::string> input_names(const OrtSession* session) { return names(session, true); }
std::vector<std::string> output_names(const OrtSession* session) { return names(session, false); }

int64_t input_rank(const OrtSession* session, const std::string& name) {
  std::vector<std::string> inputs = input_names(session);
  auto it = std::find(inputs.begin(), inputs.end(), name);
  if (it == inputs.end()) return -1;
  OrtTypeInfo* info = nullptr;
  check(api().SessionGetInputTypeInfo(session, static_cast<size_t>(it - inputs.begin()), &info),
        "read the type of input " + name);
  const OrtTensorTypeAndShapeInfo* tensor = nullptr;  // owned by `info`
  size_t rank = 0;
  OrtStatus* status = api().CastTypeInfoToTensorInfo(info, &tensor);
  if (status == nullptr && tensor != nullptr) status = api().GetDimensionsCount(tensor, &rank);
  api().ReleaseTypeInfo(info);
  check(status, "read the shape of input " + name);
  return static_cast<int64_t>(rank);
}

}  // namespace tinyllm::ort
