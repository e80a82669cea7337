// CUDA side of the op layer: device checks, the current stream, and dispatch to the arch kernels.
// Compiled by the host compiler; the kernels themselves live in csrc/sm90 (and later csrc/sm100),
// built by nvcc for their own arch only.
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/ops.h>

#include <string>

#include "api/backends.h"
#include "api/build_config.h"
#include "api/checks.h"

#if FA4_WITH_CUDA
#include <cuda_runtime.h>
#include <dlfcn.h>
#endif
#if FA4_WITH_SM90
#include "sm90/common_math_launch.h"
#endif
#if FA4_WITH_SM90_FWD
#include "sm90/fwd_launch.h"
#endif
#if FA4_WITH_SM90_BWD
#include "sm90/bwd_launch.h"
#endif

namespace fa4::api {

std::string cuda_build_info_json() {
  return std::string("\"cuda\": \"") + kCudaVersion + "\", \"cuda_archs\": [" + kCudaArchsJson +
         "], \"cutlass\": \"" + kCutlassVersion + "\", \"cuda_kernels\": [" + kCudaKernelsJson + "]";
}

#if FA4_WITH_CUDA
namespace {

void check_cuda(cudaError_t err, const char* what) {
  FA4_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

// torch's current stream for `device`. The stable ABI of torch 2.10 exposes it only through a
// libtorch_cuda symbol, which a CPU-only torch lacks: resolve it at run time so that the same
// binary still loads there.
cudaStream_t current_stream(int device) {
  using GetStream = int32_t (*)(int32_t, void**);
  static GetStream get_stream = [] {
    void* sym = dlsym(RTLD_DEFAULT, "aoti_torch_get_current_cuda_stream");
    if (!sym) {
      if (void* lib = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD)) {
        sym = dlsym(lib, "aoti_torch_get_current_cuda_stream");
      }
    }
    return reinterpret_cast<GetStream>(sym);
  }();
  FA4_CHECK(get_stream != nullptr, "CUDA tensors need a CUDA build of torch (the current stream "
            "could not be found in this one)");
  void* stream = nullptr;
  FA4_CHECK(get_stream(device, &stream) == 0, "could not get the current CUDA stream of device ", device);
  return static_cast<cudaStream_t>(stream);
}

int compute_capability(int device) {
  int major = 0, minor = 0;
  check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
             "cudaDeviceGetAttribute");
  check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
             "cudaDeviceGetAttribute");
  return major * 10 + minor;
}

}  // namespace

bool cuda_stream_capturing(int device) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(current_stream(device), &status), "cudaStreamIsCapturing");
  return status != cudaStreamCaptureStatusNone;
}

void run_fwd_cuda(const AttnParams& params, const Tensor& like) {
  const int device = like.get_device_index();
  torch::stable::accelerator::DeviceGuard guard(device);
  const int cc = compute_capability(device);
#if FA4_WITH_SM90_FWD
  FA4_CHECK_IMPLEMENTED(cc == 90, "the CUDA forward kernel is built for sm_90a (H100/H200); this GPU "
                        "is sm_", cc, " (run on CPU tensors instead)");
  const char* reason = fa4::sm90::fwd_unsupported_reason(params);
  FA4_CHECK_IMPLEMENTED(reason[0] == '\0', "sm90 forward: ", reason);
  // Scratch from torch's caching allocator (the causal / local kernels' tile counter, split-KV's
  // partial results); run_fwd zeroes the part that needs it.
  const int64_t bytes = static_cast<int64_t>(fa4::sm90::fwd_workspace_bytes(params));
  Tensor workspace;
  if (bytes > 0) workspace = torch::stable::new_empty(like, {bytes}, ScalarType::Byte);
  check_cuda(fa4::sm90::run_fwd(params, bytes > 0 ? workspace.mutable_data_ptr() : nullptr,
                                current_stream(device)),
             "sm90 forward launch");
#else
  FA4_CHECK_IMPLEMENTED(false, "no CUDA forward kernel is built for sm_", cc, " in this build "
                        "(built archs: ", kCudaArchsJson, ")");
#endif
}

void run_bwd_cuda(const AttnBwdParams& params, const Tensor& like) {
  const int device = like.get_device_index();
  torch::stable::accelerator::DeviceGuard guard(device);
  const int cc = compute_capability(device);
#if FA4_WITH_SM90_BWD
  FA4_CHECK_IMPLEMENTED(cc == 90, "the CUDA backward kernel is built for sm_90a (H100/H200); this "
                        "GPU is sm_", cc, " (run on CPU tensors instead)");
  const char* reason = fa4::sm90::bwd_unsupported_reason(params);
  FA4_CHECK_IMPLEMENTED(reason[0] == '\0', "sm90 backward: ", reason);
  // Scratch (fp32 dQ accumulator, lse / D rows, semaphores) from torch's caching allocator, on
  // the current stream, unfilled: run_bwd's preprocess writes every part of it that is read.
  const int64_t bytes = static_cast<int64_t>(fa4::sm90::bwd_workspace_bytes(params));
  Tensor workspace = torch::stable::new_empty(like, {bytes}, ScalarType::Byte);
  check_cuda(fa4::sm90::run_bwd(params, workspace.mutable_data_ptr(), current_stream(device)),
             "sm90 backward launch");
#else
  FA4_CHECK_IMPLEMENTED(false, "no CUDA backward kernel is built for sm_", cc, " in this build "
                        "(built archs: ", kCudaArchsJson, ")");
#endif
}

void cuda_bwd_unwritten_rows(const AttnBwdParams& params, bool* dq, bool* dkdv) {
#if FA4_WITH_SM90_BWD
  const fa4::sm90::BwdUnwrittenRows u = fa4::sm90::bwd_unwritten_rows(params);
  *dq = u.dq;
  *dkdv = u.dkdv;
#else
  (void)params;
  *dq = *dkdv = true;
#endif
}

void run_exp2_poly_cuda(const float* x, float* y, int64_t n, int device) {
  torch::stable::accelerator::DeviceGuard guard(device);
#if FA4_WITH_SM90
  check_cuda(fa4::sm90::run_exp2_poly(x, y, n, current_stream(device)), "exp2_poly launch");
#else
  FA4_CHECK_IMPLEMENTED(false, "no CUDA kernels are built in this build (built archs: ",
                        kCudaArchsJson, ")");
#endif
}

#else  // no nvcc at build time

namespace {
constexpr const char* kNoCuda =
    "flash_attn4 was built without CUDA kernels (no nvcc was found at build time). Rebuild with "
    "nvcc on PATH or CUDA_HOME set: pip install --no-build-isolation -e .  (or `make build`)";
}

bool cuda_stream_capturing(int) { return false; }
void run_fwd_cuda(const AttnParams&, const Tensor&) { FA4_CHECK(false, kNoCuda); }
void run_bwd_cuda(const AttnBwdParams&, const Tensor&) { FA4_CHECK(false, kNoCuda); }
void cuda_bwd_unwritten_rows(const AttnBwdParams&, bool* dq, bool* dkdv) { *dq = *dkdv = true; }
void run_exp2_poly_cuda(const float*, float*, int64_t, int) { FA4_CHECK(false, kNoCuda); }

#endif

}  // namespace fa4::api
