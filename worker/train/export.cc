#include "worker/train/export.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/tracer.h>

#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace quartet::worker::train {
namespace {

constexpr char kModuleName[] = "__torch__.quartet.ExportedNetwork";
constexpr char kChunkMethod[] = "forward_chunk";
constexpr char kAttributeSeparator[] = "__";
// Largest |logit| difference between the traced module and the network tolerated on the check
// images (summation order differs where export mode mixes experts densely).
constexpr double kLogitTolerance = 1e-3;

// Dataset class names by Dataset::name; numbered classes for others.
std::vector<std::string> ClassNames(const std::string& dataset, int64_t n) {
  if (dataset == "cifar10") {
    return {"airplane", "automobile", "bird",  "cat",  "deer",
            "dog",      "frog",       "horse", "ship", "truck"};
  }
  if (dataset == "fashion-mnist") {
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  }
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(std::to_string(i));
  return out;
}

std::string InfoJson(const ExportInfo& info, int64_t chunk) {
  nlohmann::json j;
  j["format"] = "quartet-torchscript-1";
  j["input_size"] = info.input_size;
  j["channels"] = info.channels;
  j["native_size"] = {info.native_height, info.native_width};
  j["preprocessing"] = {
      {"scale", 1.0 / 255.0},
      {"mean", info.mean},
      {"std", info.std},
      {"order",
       "x = uint8 NCHW image / 255; x = (x - mean[c]) * (1 / std[c]) in float32; then, when the "
       "native size differs from input_size, bilinear resize to input_size x input_size "
       "(align_corners=false, no antialiasing); no padding or cropping"},
  };
  j["input"] = "float32 (N, channels, input_size, input_size), normalised as above";
  j["output"] = "logits (N, classes); argmax is the predicted class";
  j["classes"] = ClassNames(info.dataset, info.num_classes);
  j["dataset"] = info.dataset;
  j["architecture"] = info.architecture;
  j["families"] = info.families;
  j["candidate_id"] = info.candidate_id;
  j["campaign_id"] = info.campaign_id;
  j["epoch"] = info.epoch;
  j["traced_chunk"] = chunk;
  return j.dump(2);
}

// The network's parameters and buffers as attributes of `m` (the same tensors, so the tracer maps
// them to attribute reads rather than constants).
absl::Status RegisterTensors(torch::nn::Module& net, torch::jit::Module& m) {
  std::set<std::string> names;
  auto add = [&](const std::string& path, const torch::Tensor& t, bool buffer) {
    const std::string name = absl::StrReplaceAll(path, {{".", kAttributeSeparator}});
    if (!names.insert(name).second) {
      return absl::InternalError(absl::StrCat("export: two tensors are named ", name));
    }
    m.register_parameter(name, t, buffer);
    return absl::OkStatus();
  };
  for (const auto& p : net.named_parameters(/*recurse=*/true)) {
    QUARTET_RETURN_IF_ERROR(add(p.key(), p.value(), /*buffer=*/false));
  }
  for (const auto& b : net.named_buffers(/*recurse=*/true)) {
    QUARTET_RETURN_IF_ERROR(add(b.key(), b.value(), /*buffer=*/true));
  }
  return absl::OkStatus();
}

// forward(x): any batch through the traced fixed-size chunk, the last chunk padded with copies of
// its first image.
std::string ChunkedForwardSource(int64_t chunk) {
  return absl::StrCat(R"(
def forward(self, x: Tensor) -> Tensor:
    n = x.size(0)
    outs: List[Tensor] = []
    for start in range(0, n, )",
                      chunk, R"():
        part = x[start:start + )",
                      chunk, R"(]
        m = part.size(0)
        if m < )",
                      chunk, R"(:
            part = torch.cat([part, part[0:1].expand([)",
                      chunk, R"( - m, -1, -1, -1])], 0)
        outs.append(self.)",
                      kChunkMethod, R"((part)[0:m])
    return torch.cat(outs, 0)
)");
}

// Traces net's eval forward on `example` into the chunk method of `m`, whose attributes are the
// network's tensors.
absl::Status Trace(moe::Network& net, const torch::Tensor& example, torch::jit::Module& m) {
  QUARTET_RETURN_IF_ERROR(RegisterTensors(net.module(), m));
  auto fn = [&](torch::jit::Stack inputs) -> torch::jit::Stack {
    return {net.Forward(inputs[0].toTensor()).logits};
  };
  auto traced = torch::jit::tracer::trace(
      {example}, fn, [](const torch::autograd::Variable&) { return std::string(); },
      /*strict=*/false, /*force_outplace=*/false, &m);
  auto method = m._ivalue()->compilation_unit()->create_function(
      c10::QualifiedName(*m.type()->name(), kChunkMethod), traced.first->graph);
  m.type()->addMethod(method);
  m.define(ChunkedForwardSource(example.size(0)));
  return absl::OkStatus();
}

// The traced module must predict what the network (as trained, export mode off) predicts.
absl::Status Check(moe::Network& net, torch::jit::Module& m, const torch::Tensor& check,
                   const std::string& architecture) {
  const torch::Tensor want = net.Forward(check).logits.to(torch::kFloat32);
  torch::Tensor got;
  try {
    got = m.forward({check}).toTensor().to(torch::kFloat32);
  } catch (const c10::Error& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("export of ", architecture,
                     ": the traced module fails on other images: ", e.what_without_backtrace()));
  }
  if (!got.sizes().equals(want.sizes())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "export of ", architecture, ": the traced module returns [",
        absl::StrJoin(got.sizes(), ", "), "] for [", absl::StrJoin(check.sizes(), ", "),
        "] (expected [", absl::StrJoin(want.sizes(), ", "), "])"));
  }
  const int64_t differ = got.argmax(1).ne(want.argmax(1)).sum().item<int64_t>();
  const double max_diff = (got - want).abs().max().item<double>();
  if (differ > 0 || !(max_diff <= kLogitTolerance)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "export of ", architecture, ": the traced module does not reproduce the network on ",
        check.size(0), " other images (", differ, " predictions differ, largest logit difference ",
        max_diff, "); its routing is data-dependent beyond what a trace can hold"));
  }
  return absl::OkStatus();
}

// Restores the network's mode and LibTorch's thread count.
class ExportScope {
 public:
  explicit ExportScope(moe::Network& net)
      : net_(net), training_(net.module().is_training()), threads_(at::get_num_threads()) {
    // One thread: MoE4's expert-parallel path would run experts on other threads, which the
    // tracer (thread-local) does not see.
    at::set_num_threads(1);
    net_.module().eval();
  }
  ~ExportScope() {
    net_.SetExportMode(false);
    at::set_num_threads(threads_);
    net_.module().train(training_);
  }

 private:
  moe::Network& net_;
  bool training_;
  int threads_;
};

}  // namespace

absl::StatusOr<std::string> ExportTorchScript(moe::Network& net, const torch::Tensor& example,
                                              const torch::Tensor& check, const ExportInfo& info) {
  try {
    ExportScope scope(net);
    torch::NoGradGuard no_grad;
    torch::jit::Module m{c10::QualifiedName(kModuleName)};
    net.SetExportMode(true);
    QUARTET_RETURN_IF_ERROR(Trace(net, example, m));
    net.SetExportMode(false);
    // A batch that is not a multiple of the chunk exercises the padding too.
    const int64_t n = check.size(0) > 1 ? check.size(0) - 1 : check.size(0);
    QUARTET_RETURN_IF_ERROR(Check(net, m, check.narrow(0, 0, n), info.architecture));
    torch::jit::ExtraFilesMap extra{{kExportInfoFile, InfoJson(info, example.size(0))}};
    std::ostringstream out;
    m.save(out, extra);
    return out.str();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("export: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("export: ", e.what()));
  }
}

}  // namespace quartet::worker::train
