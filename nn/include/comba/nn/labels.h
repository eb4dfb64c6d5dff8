// The label convention of the next-token loss, torch-free so that host-side data code
// (train's packing and recall task) can mark targets without the model headers.
#pragma once
#include <cstdint>

namespace comba::nn {

// Token value marking "no target" in labels: the loss skips it (torch's default ignore_index).
inline constexpr int64_t kIgnoreIndex = -100;

}  // namespace comba::nn
