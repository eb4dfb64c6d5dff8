// AdamW hyper-parameters (the optimizer component's options; see optimizer.h).
#pragma once

namespace comba::train {

struct OptimizerOptions {
  double lr = 1e-3;  // peak learning rate (the schedule scales it)
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  // Whether embeddings (and an untied lm_head) take weight decay; A_log, dt_bias, D,
  // norms and biases never do.
  bool decay_embeddings = false;
};

}  // namespace comba::train
