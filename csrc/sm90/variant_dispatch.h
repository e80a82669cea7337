// Host-side choice of the compile-time mask / softcap variant, shared by the sm90 forward and
// backward launchers (each instantiation unit builds the 4 combinations).
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "common/mask.h"

namespace fa4::sm90 {

// True when the mask (causal and / or a window, bottom-right aligned) needs the local variant:
// AttnParams and AttnBwdParams both carry these fields.
template <class Params>
bool has_local_mask(const Params& a) {
  const MaskSpec m = make_mask(a.seqlen_q, a.seqlen_k, a.causal, a.window_left, a.window_right);
  return m.window_left >= 0 || m.window_right >= 0;
}

// Returns launch(std::bool_constant<kIsLocal>{}, std::bool_constant<kHasSoftcap>{}).
template <class Launch>
auto dispatch_local_softcap(bool local, bool softcap, Launch&& launch) {
  using T = std::true_type;
  using F = std::false_type;
  if (local) return softcap ? launch(T{}, T{}) : launch(T{}, F{});
  return softcap ? launch(F{}, T{}) : launch(F{}, F{});
}

}  // namespace fa4::sm90
