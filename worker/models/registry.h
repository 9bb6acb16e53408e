// The zoo's registry: model (variant) name -> factory. Every family file registers its variants
// with QUARTET_REGISTER_MODEL at static-initialisation time; the registry is read-only afterwards.
// The names are those of common/catalog.h, and a test holds the two in step.
#ifndef QUARTET_WORKER_MODELS_REGISTRY_H_
#define QUARTET_WORKER_MODELS_REGISTRY_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/models/classifier.h"

namespace quartet::worker::models {

using ModelFactory = std::function<ClassifierPtr(const ModelOptions&)>;

// Builds the model named `name` (a variant name or a family name, which means its default
// variant). Seeds LibTorch's default generator with options.seed first, under a process-wide lock,
// so the weights depend on the seed alone. Errors: NOT_FOUND for an unknown name; INVALID_ARGUMENT
// for in_channels other than 1 or 3, num_classes < 2, or input_size below the variant's minimum;
// INTERNAL when the family's constructor throws. Thread-safe.
absl::StatusOr<ClassifierPtr> BuildModel(absl::string_view name, const ModelOptions& options);

// Names of every registered model, sorted.
std::vector<std::string> RegisteredModels();

// Parameter count of a module (all parameters, as LEMUR counts them).
int64_t CountParameters(const torch::nn::Module& module);

namespace internal {
// Adds a factory; called by QUARTET_REGISTER_MODEL during static initialisation. Returns true.
bool RegisterModel(const char* name, ModelFactory factory);
}  // namespace internal

}  // namespace quartet::worker::models

#define QUARTET_MODELS_CONCAT_INNER_(a, b) a##b
#define QUARTET_MODELS_CONCAT_(a, b) QUARTET_MODELS_CONCAT_INNER_(a, b)

// At namespace scope in a family's .cc: QUARTET_REGISTER_MODEL("ResNet", [](const ModelOptions& o)
// { return std::make_shared<ResNetImpl>(o); });
#define QUARTET_REGISTER_MODEL(name, factory)                                        \
  static const bool QUARTET_MODELS_CONCAT_(quartet_model_registered_, __COUNTER__) = \
      ::quartet::worker::models::internal::RegisterModel(name, factory)

#endif  // QUARTET_WORKER_MODELS_REGISTRY_H_
