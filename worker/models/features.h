// Optional interface of a zoo family that can serve as a backbone: the feature map it pools and
// classifies. A family implements it beside ClassifierImpl; callers ask with dynamic_cast. Families
// that do not implement it can still be backbones through their logits (moe/heads.h).
#ifndef QUARTET_WORKER_MODELS_FEATURES_H_
#define QUARTET_WORKER_MODELS_FEATURES_H_

#include <torch/torch.h>

#include <cstdint>

namespace quartet::worker::models {

class FeatureBackbone {
 public:
  virtual ~FeatureBackbone() = default;
  // Channels of Features()'s output.
  virtual int64_t feature_channels() const = 0;
  // The last feature map before global pooling and the classifier: (B, feature_channels(), h, w).
  virtual torch::Tensor Features(torch::Tensor x) = 0;
};

// ModelOptions::params name that asks families with an ImageNet stem for the small-input ("CIFAR")
// stem instead: a 3x3 stride-1 convolution and no max-pool. Value 1 turns it on. Read by ResNet.
inline constexpr char kSmallInputStemParam[] = "small_input_stem";

}  // namespace quartet::worker::models

#endif  // QUARTET_WORKER_MODELS_FEATURES_H_
