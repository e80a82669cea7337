// Shared by host-only and CUDA translation units: lets arch-neutral math be one definition.
#pragma once

#if defined(__CUDACC__)
#define FA4_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FA4_HOST_DEVICE inline
#endif
