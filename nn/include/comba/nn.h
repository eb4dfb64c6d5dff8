// Umbrella header of the Comba torch::nn modules, cache and generation.
#pragma once
#include "comba/nn/block.h"
#include "comba/nn/cache.h"
#include "comba/nn/causal_lm.h"
#include "comba/nn/comba_layer.h"
#include "comba/nn/config.h"
#include "comba/nn/generate.h"
#include "comba/nn/mlp.h"
#include "comba/nn/model.h"
#include "comba/nn/model_size.h"
#include "comba/nn/padding.h"
#include "comba/nn/rms_norm.h"
#include "comba/nn/short_conv.h"
