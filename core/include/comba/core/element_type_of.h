// The kernels' element type of a torch dtype (host side of the launchers): float16 and
// bfloat16 map to themselves, anything else to float32.
#pragma once
#include <c10/core/ScalarType.h>

#include "comba/core/element_type.h"

namespace comba::core {

inline ElementType element_type_of(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Half: return ElementType::kFloat16;
    case c10::ScalarType::BFloat16: return ElementType::kBFloat16;
    default: return ElementType::kFloat32;
  }
}

}  // namespace comba::core
