// fp32 master weights for bf16 training (precision "bf16"). The model's parameters hold
// bf16 compute copies, so forward and backward run in bf16 without per-op autocast casts;
// the fp32 masters, their fp32 gradients and AdamW's state (the optimizer is built on the
// masters) live here. One optimizer step:
//   per micro-batch: forward/backward in bf16 -> accumulate_gradients() (bf16 gradients
//     added into the fp32 master gradients, the bf16 ones dropped);
//   then the all-reduce, clipping and AdamW on the masters and their gradients;
//   then copy_to_model(): the masters rounded into the bf16 parameters, once.
// Checkpoints, exports and model.init_from keep fp32 weights under the parameters' names:
// they are written and read inside an Exposed scope, in which the model's parameters ARE
// the masters.
#pragma once
#include <torch/nn/module.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace comba::train {

// Adds `param`'s gradient (if any) into `master`'s, in master's dtype, and drops param's.
void fold_gradient(const torch::Tensor& param, const torch::Tensor& master);

class MasterWeights {
 public:
  // The parameters' current values become the masters (their dtype and device); the
  // parameters themselves are converted to `compute_dtype` in place (buffers untouched).
  // A tensor registered twice (tied weights) gets one master.
  MasterWeights(const torch::OrderedDict<std::string, torch::Tensor>& named_parameters,
                torch::Dtype compute_dtype);
  MasterWeights(const MasterWeights&) = delete;
  MasterWeights& operator=(const MasterWeights&) = delete;

  // The masters under their parameters' names (for the optimizer's groups), in order.
  const torch::OrderedDict<std::string, torch::Tensor>& named_masters() const { return named_masters_; }
  // One per distinct parameter, in order; masters()[i] is the master of parameters()[i].
  const std::vector<torch::Tensor>& masters() const { return masters_; }
  const std::vector<torch::Tensor>& parameters() const { return params_; }

  // After a micro-batch's backward: fold_gradient for every parameter.
  void accumulate_gradients() const;
  // After the optimizer step (or anything else that changed the masters).
  void copy_to_model() const;

  // For its lifetime the model's parameters hold the masters themselves (same storage):
  // what is saved from the model is fp32, what is loaded into it lands in the masters.
  // At the end the parameters get their compute copies back, refreshed from the masters.
  class Exposed {
   public:
    explicit Exposed(const MasterWeights& weights);
    ~Exposed();
    Exposed(const Exposed&) = delete;
    Exposed& operator=(const Exposed&) = delete;

   private:
    const MasterWeights& weights_;
    std::vector<torch::Tensor> compute_;  // the parameters' own compute tensors
  };

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> masters_;
  torch::OrderedDict<std::string, torch::Tensor> named_masters_;
};

}  // namespace comba::train
