// Device guard, current stream and launch check shared by the CUDA backends (csrc/<op>/cuda.cu).
// Included as "common/cuda_compat.h": asr_bench/ops/build.py puts csrc/ on the include path of both the extension
// build and `--check-cuda`, and hashes csrc/common/*.h into every op's cache key.
#pragma once

#include <torch/extension.h>

#include <cuda_runtime.h>

// ---- Device guard, current stream, launch check -------------------------------------------------------
// With a CUDA build of torch these are c10's. `python -m asr_bench.ops.build --check-cuda` (CI) compiles this
// file against whatever torch is installed, often a CPU-only build without c10/cuda's generated headers; the
// fallback keeps the same code compiling there (it is never what runs on a GPU with a CUDA torch).
#if __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
namespace {
using DeviceGuard = c10::cuda::CUDAGuard;
cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream(); }
void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }
}  // namespace
#else
namespace {
class DeviceGuard {
 public:
  explicit DeviceGuard(const c10::Device& device) {
    cudaGetDevice(&previous_);
    if (device.has_index()) cudaSetDevice(device.index());
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};
cudaStream_t current_stream() { return nullptr; }
void check_launch() {
  const cudaError_t error = cudaGetLastError();
  TORCH_CHECK(error == cudaSuccess, "CUDA kernel launch failed: ", cudaGetErrorString(error));
}
}  // namespace
#endif
