// The interface every family of the zoo implements: a whole image classifier that maps a batch of
// images to class logits. Experts of a MoE4 are Classifiers.
#ifndef QUARTET_WORKER_MODELS_CLASSIFIER_H_
#define QUARTET_WORKER_MODELS_CLASSIFIER_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace quartet::worker::models {

// Construction options shared by every family. Family-specific hyperparameters are passed by their
// LEMUR prm name in `params`; each family documents the names it reads and their defaults.
struct ModelOptions {
  // Input channels, 1 or 3.
  int64_t in_channels = 3;
  // Number of classes (logits per sample).
  int64_t num_classes = 10;
  // Square input side the model will be fed. Families whose layers depend on the input size
  // (FractalNet, VisionTransformer, MaxVit, BayesianNet, ComplexNet) are built for it; the others
  // accept any size >= their catalog minimum.
  int64_t input_size = 32;
  // Classifier dropout probability, for families that have dropout (LEMUR prm "dropout").
  double dropout = 0.2;
  // Seed of the weight initialisation: the same seed gives bit-identical weights.
  uint64_t seed = 0;
  // Family-specific hyperparameters by LEMUR prm name, e.g. "norm_eps", "stochastic_depth_prob",
  // "attention_dropout", "patch_size", "norm_momentum", "norm_std", "dropout_aux", "bn_size".
  std::map<std::string, double> params;

  // params[name] when present, otherwise `fallback`.
  double Param(const std::string& name, double fallback) const {
    auto it = params.find(name);
    return it == params.end() ? fallback : it->second;
  }
};

// Base of every family module. forward() takes float images (B, in_channels, H, W) with
// H = W >= the variant's minimum input size and returns logits (B, num_classes).
// Not thread-safe (a torch::nn::Module).
class ClassifierImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

using ClassifierPtr = std::shared_ptr<ClassifierImpl>;

}  // namespace quartet::worker::models

#endif  // QUARTET_WORKER_MODELS_CLASSIFIER_H_
