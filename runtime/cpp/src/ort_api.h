// The part of ONNX Runtime's C API that tinyllm calls.
//
// With -DONNXRUNTIME_ROOT=... CMake defines TINYLLM_ORT_OFFICIAL_HEADERS and this file
// includes the release's own onnxruntime_c_api.h. Otherwise it declares the function
// table itself. The OrtApi struct is ONNX Runtime's ABI: a table of function pointers
// that only ever grows at the end, so a prefix of it, with each entry at its index,
// works with every later release. The indices below were read from
// include/onnxruntime/core/session/onnxruntime_c_api.h of microsoft/onnxruntime (API
// versions 29 and 30, which agree on every entry used here; the type-info entries 33,
// 55, 61 and 98 were read from an early copy of the same table, which only grows at the
// end, and fall between entries pinned from those; the engine checks them on every load,
// reading input_ids as rank 2); entries tinyllm does not call are padding. The
// static_asserts pin each index, for both declarations.
#pragma once

#include <cstddef>
#include <cstdint>

#ifdef TINYLLM_ORT_OFFICIAL_HEADERS
#include <onnxruntime_c_api.h>
#else

// The API version of the pinned onnxruntime wheel (1.31.1); GetApi(version) returns
// nullptr on an older library.
#define ORT_API_VERSION 31

extern "C" {

struct OrtStatus;
struct OrtEnv;
struct OrtSession;
struct OrtSessionOptions;
struct OrtMemoryInfo;
struct OrtValue;
struct OrtIoBinding;
struct OrtRunOptions;
struct OrtAllocator;
struct OrtTypeInfo;
struct OrtTensorTypeAndShapeInfo;

typedef enum OrtErrorCode {
  ORT_OK,
  ORT_FAIL,
  ORT_INVALID_ARGUMENT,
  ORT_NO_SUCHFILE,
  ORT_NO_MODEL,
  ORT_ENGINE_ERROR,
  ORT_RUNTIME_EXCEPTION,
  ORT_INVALID_PROTOBUF,
  ORT_MODEL_LOADED,
  ORT_NOT_IMPLEMENTED,
  ORT_INVALID_GRAPH,
  ORT_EP_FAIL,
} OrtErrorCode;

typedef enum OrtLoggingLevel {
  ORT_LOGGING_LEVEL_VERBOSE,
  ORT_LOGGING_LEVEL_INFO,
  ORT_LOGGING_LEVEL_WARNING,
  ORT_LOGGING_LEVEL_ERROR,
  ORT_LOGGING_LEVEL_FATAL,
} OrtLoggingLevel;

typedef enum GraphOptimizationLevel {
  ORT_DISABLE_ALL = 0,
  ORT_ENABLE_BASIC = 1,
  ORT_ENABLE_EXTENDED = 2,
  ORT_ENABLE_ALL = 99
} GraphOptimizationLevel;

// TensorProto.DataType numbering; only the types tinyllm binds.
typedef enum ONNXTensorElementDataType {
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 = 6,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 = 7,
} ONNXTensorElementDataType;

typedef enum OrtAllocatorType {
  OrtInvalidAllocator = -1,
  OrtDeviceAllocator = 0,
  OrtArenaAllocator = 1,
} OrtAllocatorType;

typedef enum OrtMemType {
  OrtMemTypeCPUInput = -2,
  OrtMemTypeCPUOutput = -1,
  OrtMemTypeCPU = OrtMemTypeCPUOutput,
  OrtMemTypeDefault = 0,
} OrtMemType;

struct OrtApi;

struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version) noexcept;
  const char* (*GetVersionString)() noexcept;
};

#define TINYLLM_ORT_PAD(first, last) void* pad_##first##_##last[(last) - (first) + 1]

struct OrtApi {
  OrtStatus* (*CreateStatus)(OrtErrorCode code, const char* msg) noexcept;  // 0
  OrtErrorCode (*GetErrorCode)(const OrtStatus* status) noexcept;           // 1
  const char* (*GetErrorMessage)(const OrtStatus* status) noexcept;         // 2
  OrtStatus* (*CreateEnv)(OrtLoggingLevel level, const char* logid, OrtEnv** out) noexcept;  // 3
  TINYLLM_ORT_PAD(4, 6);
  OrtStatus* (*CreateSession)(const OrtEnv* env, const char* model_path,
                              const OrtSessionOptions* options, OrtSession** out) noexcept;  // 7
  TINYLLM_ORT_PAD(8, 9);
  OrtStatus* (*CreateSessionOptions)(OrtSessionOptions** options) noexcept;  // 10
  TINYLLM_ORT_PAD(11, 22);
  OrtStatus* (*SetSessionGraphOptimizationLevel)(OrtSessionOptions* options,
                                                 GraphOptimizationLevel level) noexcept;  // 23
  OrtStatus* (*SetIntraOpNumThreads)(OrtSessionOptions* options, int threads) noexcept;  // 24
  OrtStatus* (*SetInterOpNumThreads)(OrtSessionOptions* options, int threads) noexcept;  // 25
  TINYLLM_ORT_PAD(26, 29);
  OrtStatus* (*SessionGetInputCount)(const OrtSession* session, size_t* out) noexcept;   // 30
  OrtStatus* (*SessionGetOutputCount)(const OrtSession* session, size_t* out) noexcept;  // 31
  TINYLLM_ORT_PAD(32, 32);
  OrtStatus* (*SessionGetInputTypeInfo)(const OrtSession* session, size_t index,
                                        OrtTypeInfo** type_info) noexcept;  // 33
  TINYLLM_ORT_PAD(34, 35);
  OrtStatus* (*SessionGetInputName)(const OrtSession* session, size_t index,
                                    OrtAllocator* allocator, char** value) noexcept;  // 36
  OrtStatus* (*SessionGetOutputName)(const OrtSession* session, size_t index,
                                     OrtAllocator* allocator, char** value) noexcept;  // 37
  TINYLLM_ORT_PAD(38, 48);
  OrtStatus* (*CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo* info, void* data,
                                               size_t data_len, const int64_t* shape,
                                               size_t shape_len, ONNXTensorElementDataType type,
                                               OrtValue** out) noexcept;  // 49
  TINYLLM_ORT_PAD(50, 54);
  OrtStatus* (*CastTypeInfoToTensorInfo)(const OrtTypeInfo* type_info,
                                         const OrtTensorTypeAndShapeInfo** out) noexcept;  // 55
  TINYLLM_ORT_PAD(56, 60);
  OrtStatus* (*GetDimensionsCount)(const OrtTensorTypeAndShapeInfo* info, size_t* out) noexcept;  // 61
  TINYLLM_ORT_PAD(62, 68);
  OrtStatus* (*CreateCpuMemoryInfo)(OrtAllocatorType type, OrtMemType mem_type,
                                    OrtMemoryInfo** out) noexcept;  // 69
  TINYLLM_ORT_PAD(70, 75);
  OrtStatus* (*AllocatorFree)(OrtAllocator* allocator, void* p) noexcept;  // 76
  TINYLLM_ORT_PAD(77, 77);
  OrtStatus* (*GetAllocatorWithDefaultOptions)(OrtAllocator** out) noexcept;  // 78
  TINYLLM_ORT_PAD(79, 91);
  void (*ReleaseEnv)(OrtEnv* input) noexcept;                        // 92
  void (*ReleaseStatus)(OrtStatus* input) noexcept;                  // 93
  void (*ReleaseMemoryInfo)(OrtMemoryInfo* input) noexcept;          // 94
  void (*ReleaseSession)(OrtSession* input) noexcept;                // 95
  void (*ReleaseValue)(OrtValue* input) noexcept;                    // 96
  TINYLLM_ORT_PAD(97, 97);
  void (*ReleaseTypeInfo)(OrtTypeInfo* input) noexcept;              // 98
  TINYLLM_ORT_PAD(99, 99);
  void (*ReleaseSessionOptions)(OrtSessionOptions* input) noexcept;  // 100
  TINYLLM_ORT_PAD(101, 132);
  OrtStatus* (*RunWithBinding)(OrtSession* session, const OrtRunOptions* run_options,
                               const OrtIoBinding* binding) noexcept;               // 133
  OrtStatus* (*CreateIoBinding)(OrtSession* session, OrtIoBinding** out) noexcept;  // 134
  void (*ReleaseIoBinding)(OrtIoBinding* input) noexcept;                           // 135
  OrtStatus* (*BindInput)(OrtIoBinding* binding, const char* name,
                          const OrtValue* value) noexcept;  // 136
  OrtStatus* (*BindOutput)(OrtIoBinding* binding, const char* name,
                           const OrtValue* value) noexcept;  // 137
  TINYLLM_ORT_PAD(138, 140);
  void (*ClearBoundInputs)(OrtIoBinding* binding) noexcept;   // 141
  void (*ClearBoundOutputs)(OrtIoBinding* binding) noexcept;  // 142
};

#undef TINYLLM_ORT_PAD

}  // extern "C"

#endif  // TINYLLM_ORT_OFFICIAL_HEADERS

// The one symbol tinyllm looks up in the library.
typedef const OrtApiBase* (*OrtGetApiBaseFn)();

namespace tinyllm::ort_abi {
// Each entry's index in the table, as the real header has it.
constexpr size_t slot(size_t offset) { return offset / sizeof(void*); }
static_assert(slot(offsetof(OrtApi, GetErrorCode)) == 1);
static_assert(slot(offsetof(OrtApi, GetErrorMessage)) == 2);
static_assert(slot(offsetof(OrtApi, CreateEnv)) == 3);
static_assert(slot(offsetof(OrtApi, CreateSession)) == 7);
static_assert(slot(offsetof(OrtApi, CreateSessionOptions)) == 10);
static_assert(slot(offsetof(OrtApi, SetSessionGraphOptimizationLevel)) == 23);
static_assert(slot(offsetof(OrtApi, SetIntraOpNumThreads)) == 24);
static_assert(slot(offsetof(OrtApi, SetInterOpNumThreads)) == 25);
static_assert(slot(offsetof(OrtApi, SessionGetInputCount)) == 30);
static_assert(slot(offsetof(OrtApi, SessionGetOutputCount)) == 31);
static_assert(slot(offsetof(OrtApi, SessionGetInputTypeInfo)) == 33);
static_assert(slot(offsetof(OrtApi, SessionGetInputName)) == 36);
static_assert(slot(offsetof(OrtApi, SessionGetOutputName)) == 37);
static_assert(slot(offsetof(OrtApi, CreateTensorWithDataAsOrtValue)) == 49);
static_assert(slot(offsetof(OrtApi, CastTypeInfoToTensorInfo)) == 55);
static_assert(slot(offsetof(OrtApi, GetDimensionsCount)) == 61);
static_assert(slot(offsetof(OrtApi, CreateCpuMemoryInfo)) == 69);
static_assert(slot(offsetof(OrtApi, AllocatorFree)) == 76);
static_assert(slot(offsetof(OrtApi, GetAllocatorWithDefaultOptions)) == 78);
static_assert(slot(offsetof(OrtApi, ReleaseEnv)) == 92);
static_assert(slot(offsetof(OrtApi, ReleaseStatus)) == 93);
static_assert(slot(offsetof(OrtApi, ReleaseMemoryInfo)) == 94);
static_assert(slot(offsetof(OrtApi, ReleaseSession)) == 95);
static_assert(slot(offsetof(OrtApi, ReleaseValue)) == 96);
static_assert(slot(offsetof(OrtApi, ReleaseTypeInfo)) == 98);
static_assert(slot(offsetof(OrtApi, ReleaseSessionOptions)) == 100);
static_assert(slot(offsetof(OrtApi, RunWithBinding)) == 133);
static_assert(slot(offsetof(OrtApi, CreateIoBinding)) == 134);
static_assert(slot(offsetof(OrtApi, ReleaseIoBinding)) == 135);
static_assert(slot(offsetof(OrtApi, BindInput)) == 136);
static_assert(slot(offsetof(OrtApi, BindOutput)) == 137);
static_assert(slot(offsetof(OrtApi, ClearBoundInputs)) == 141);
static_assert(slot(offsetof(OrtApi, ClearBoundOutputs)) == 142);
}  // namespace tinyllm::ort_abi
