// Light declarations shared by the backward dispatcher (bwd_api.cu) and its instantiation units.
#pragma once

#include <cuda_runtime.h>
#include <cutlass/numeric_types.h>

#include "common/params.h"
#include "sm90/bwd_config.h"
#include "sm90/bwd_scratch.h"

namespace fa4::sm90 {

// Tile configuration of each (head_dim, head_dim_v) row of FA4_SM90_BWD_HDIM_TABLE.
template <int kHeadDim, int kHeadDimV>
struct BwdHdimConfig {
  static constexpr bool kBuilt = false;
};
#define FA4_SM90_BWD_HDIM_CONFIG(D, DV, BN, BM, ST, PP) \
  template <>                                           \
  struct BwdHdimConfig<D, DV> {                         \
    static constexpr bool kBuilt = true;                \
    static constexpr int kBlockN = BN;                  \
    static constexpr int kBlockM = BM;                  \
    static constexpr int kStages = ST;                  \
    static constexpr bool kPingPong = PP;               \
  };
FA4_SM90_BWD_HDIM_TABLE(FA4_SM90_BWD_HDIM_CONFIG)
#undef FA4_SM90_BWD_HDIM_CONFIG

// A launch configuration for cudaLaunchKernelEx, a programmatic dependent launch of the previous
// kernel on `stream` when `pdl` (the main kernel after the preprocess, the dQ convert after the
// main kernel). `attr` holds the attribute the configuration points to.
inline cudaLaunchConfig_t launch_config(dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                        bool pdl, cudaLaunchAttribute* attr) {
  attr->id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr->val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cfg;
}

// Defined in instantiations/bwd_<dtype>_hdim<d>[_<d_v>].cu: the main kernel (dK, dV, dQ
// accumulation).
template <class Element, int kHeadDim, int kHeadDimV>
cudaError_t run_bwd_hdim(const AttnBwdParams& a, const BwdScratch& scratch, cudaStream_t stream);

}  // namespace fa4::sm90
