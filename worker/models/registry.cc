#include "worker/models/registry.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/catalog.h"

namespace quartet::worker::models {
namespace {

// Function-local statics: safe to use from other translation units' static initialisers.
std::map<std::string, ModelFactory, std::less<>>& Factories() {
  static auto* factories = new std::map<std::string, ModelFactory, std::less<>>();
  return *factories;
}

std::mutex& BuildMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}

}  // namespace

namespace internal {
bool RegisterModel(const char* name, ModelFactory factory) {
  Factories().emplace(name, std::move(factory));
  return true;
}
}  // namespace internal

absl::StatusOr<ClassifierPtr> BuildModel(absl::string_view name, const ModelOptions& options) {
  auto resolved = common::FamilyCatalog::Get().Resolve(name);
  if (!resolved.ok()) return resolved.status();
  const common::VariantInfo& variant = *resolved->variant;
  if (options.in_channels != 1 && options.in_channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("in_channels: ", options.in_channels, " (expected 1 or 3)"));
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes: ", options.num_classes, " (expected at least 2)"));
  }
  if (options.input_size < variant.min_input_size ||
      (variant.max_input_size > 0 && options.input_size > variant.max_input_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_size: ", variant.name, " needs an input side of at least ", variant.min_input_size,
        variant.max_input_size > 0 ? absl::StrCat(" and at most ", variant.max_input_size) : "",
        " px, got ", options.input_size));
  }
  auto it = Factories().find(variant.name);
  if (it == Factories().end()) {
    return absl::NotFoundError(
        absl::StrCat("model '", variant.name, "' is in the catalog but not built into this zoo"));
  }
  std::lock_guard<std::mutex> lock(BuildMutex());
  try {
    torch::manual_seed(options.seed);
    ClassifierPtr model = it->second(options);
    if (model == nullptr) {
      return absl::InternalError(absl::StrCat("factory of '", variant.name, "' returned null"));
    }
    return model;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building '", variant.name, "': ", e.what()));
  }
}

std::vector<std::string> RegisteredModels() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : Factories()) names.push_back(name);
  return names;
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace quartet::worker::models
