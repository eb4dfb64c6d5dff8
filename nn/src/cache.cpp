// CombaCache: per-layer decode states and the bookkeeping shared by all layers.
#include "comba/nn/cache.h"

#include <c10/util/Exception.h>

namespace comba::nn {

namespace {
void check_layer_index(int64_t index, int64_t num_layers) {
  TORCH_CHECK(index >= 0 && index < num_layers, "CombaCache::layer: argument `index` expected in [0, ",
              num_layers, "), got ", index);
}
}  // namespace

LayerState& CombaCache::layer(int64_t index) {
  check_layer_index(index, num_layers());
  return layers_[static_cast<size_t>(index)];
}

const LayerState& CombaCache::layer(int64_t index) const {
  check_layer_index(index, num_layers());
  return layers_[static_cast<size_t>(index)];
}

void CombaCache::select(const at::Tensor& index) {
  TORCH_CHECK(index.defined() && index.dim() == 1 && index.scalar_type() == at::kLong,
              "CombaCache::select: argument `index` expected an int64 1-D tensor, got ",
              index.defined() ? index.toString() : std::string("undefined"));
  const auto take = [&index](at::Tensor& t) {
    if (t.defined()) t = t.index_select(0, index.to(t.device()));
  };
  for (auto& state : layers_) {
    take(state.conv_q);
    take(state.conv_k);
    take(state.conv_v);
    take(state.recurrent);
    take(state.key);
    take(state.value);
    take(state.key_valid);
    take(state.positions);
  }
}

void CombaCache::reset() {
  for (auto& state : layers_) state = LayerState{};
  seen_tokens_ = 0;
}

}  // namespace comba::nn
