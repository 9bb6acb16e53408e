#include "worker/train/checkpoint.h"

#include <google/protobuf/util/message_differencer.h>

#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace quartet::worker::train {
namespace {

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

// Archive keys.
constexpr char kVersionKey[] = "format_version";
constexpr char kSpecKey[] = "spec";
constexpr char kEpochKey[] = "epoch";
constexpr char kStepKey[] = "step";
constexpr char kLossScaleKey[] = "loss_scale";
constexpr char kLossScaleGoodStepsKey[] = "loss_scale_good_steps";
constexpr char kHostRngKey[] = "host_rng";
constexpr char kModelKey[] = "model";
constexpr char kModelNamesKey[] = "names";
constexpr char kOptimizerKey[] = "optimizer";
constexpr char kGeneratorsKey[] = "generators";
constexpr char kGeneratorCountKey[] = "count";
// Tensors are keyed by index (archive keys may not contain the dots of module paths).
constexpr char kTensorKeyPrefix[] = "t";
constexpr char kNameSeparator = '\n';

torch::Tensor BytesTensor(const std::string& s) {
  return torch::from_blob(const_cast<char*>(s.data()), {static_cast<int64_t>(s.size())},
                          torch::kUInt8)
      .clone();
}

std::string TensorBytes(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU).contiguous();
  const char* p = reinterpret_cast<const char*>(c.data_ptr<uint8_t>());
  return std::string(p, p + c.numel());
}

void WriteBytes(OutputArchive& a, const char* key, const std::string& s) {
  a.write(key, BytesTensor(s), /*is_buffer=*/true);
}

torch::Tensor ReadTensor(InputArchive& a, const std::string& key) {
  torch::Tensor t;
  a.read(key, t, /*is_buffer=*/true);
  return t;
}

std::string ReadBytes(InputArchive& a, const char* key) { return TensorBytes(ReadTensor(a, key)); }

std::string TensorKey(size_t i) { return absl::StrCat(kTensorKeyPrefix, i); }

// "Float[64, 3, 3, 3]".
std::string Describe(const torch::Tensor& t) {
  return absl::StrCat(c10::toString(t.scalar_type()), "[", absl::StrJoin(t.sizes(), ", "), "]");
}

// The network's parameters then buffers, by module path.
std::vector<std::pair<std::string, torch::Tensor>> ModelTensors(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

void WriteModel(OutputArchive& a, const torch::nn::Module& m) {
  OutputArchive model;
  std::vector<std::string> names;
  const auto tensors = ModelTensors(m);
  for (size_t i = 0; i < tensors.size(); ++i) {
    names.push_back(tensors[i].first);
    model.write(TensorKey(i), tensors[i].second.detach(), /*is_buffer=*/true);
  }
  WriteBytes(model, kModelNamesKey, absl::StrJoin(names, std::string(1, kNameSeparator)));
  a.write(kModelKey, model);
}

void WriteGenerators(OutputArchive& a, const std::vector<at::Generator>& generators) {
  OutputArchive g;
  g.write(kGeneratorCountKey, torch::tensor(static_cast<int64_t>(generators.size())),
          /*is_buffer=*/true);
  for (size_t i = 0; i < generators.size(); ++i) {
    at::Generator gen = generators[i];
    std::lock_guard<std::mutex> lock(gen.mutex());
    g.write(TensorKey(i), gen.get_state(), /*is_buffer=*/true);
  }
  a.write(kGeneratorsKey, g);
}

absl::Status Mismatch(const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat("checkpoint does not fit this run: ", what));
}

// The fields that must agree for a checkpoint to continue a run.
absl::Status CheckSpec(const quartet::v1::CandidateSpec& saved,
                       const quartet::v1::CandidateSpec& spec) {
  using google::protobuf::util::MessageDifferencer;
  if (saved.candidate_id() != spec.candidate_id()) {
    return Mismatch(absl::StrCat("it is candidate ", saved.candidate_id(), "'s, not ",
                                 spec.candidate_id(), "'s"));
  }
  if (!MessageDifferencer::Equals(saved.combination(), spec.combination())) {
    return Mismatch("another family combination");
  }
  // The post-training analyses do not shape training: a stored model may be analysed anew.
  quartet::v1::TrainingRecipe saved_recipe = saved.recipe(), recipe = spec.recipe();
  saved_recipe.clear_analyses();
  recipe.clear_analyses();
  if (!MessageDifferencer::Equals(saved_recipe, recipe)) return Mismatch("another recipe");
  if (!MessageDifferencer::Equals(saved.data(), spec.data())) return Mismatch("other data");
  return absl::OkStatus();
}

// Checks every tensor against the live network, then copies them in.
absl::Status LoadModel(InputArchive& a, const CheckpointParts& parts) {
  InputArchive model;
  a.read(kModelKey, model);
  const std::vector<std::string> names =
      absl::StrSplit(ReadBytes(model, kModelNamesKey), kNameSeparator, absl::SkipEmpty());
  const auto live = ModelTensors(*parts.module);
  if (names.size() != live.size()) {
    return Mismatch(absl::StrCat(names.size(), " tensors saved, the network has ", live.size()));
  }
  std::vector<torch::Tensor> saved;
  for (size_t i = 0; i < live.size(); ++i) {
    torch::Tensor t = ReadTensor(model, TensorKey(i));
    if (names[i] != live[i].first || !t.sizes().equals(live[i].second.sizes()) ||
        t.scalar_type() != live[i].second.scalar_type()) {
      return Mismatch(absl::StrCat("tensor ", i, " is ", names[i], " ", Describe(t),
                                   ", the network's is ", live[i].first, " ",
                                   Describe(live[i].second)));
    }
    saved.push_back(std::move(t));
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < live.size(); ++i) live[i].second.copy_(saved[i]);
  return absl::OkStatus();
}

absl::Status LoadGenerators(InputArchive& a, const CheckpointParts& parts) {
  InputArchive g;
  a.read(kGeneratorsKey, g);
  const int64_t count = ReadTensor(g, kGeneratorCountKey).item<int64_t>();
  if (count != static_cast<int64_t>(parts.generators.size())) {
    return Mismatch(absl::StrCat(count, " random generators saved, the run has ",
                                 parts.generators.size(), " (another device kind or network)"));
  }
  for (size_t i = 0; i < parts.generators.size(); ++i) {
    at::Generator gen = parts.generators[i];
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(ReadTensor(g, TensorKey(i)).to(torch::kCPU));
  }
  return absl::OkStatus();
}

// The parts of a checkpoint that need no network.
absl::StatusOr<CheckpointContents> ReadHeader(InputArchive& a) {
  CheckpointContents c;
  c.format_version = ReadTensor(a, kVersionKey).item<int64_t>();
  if (c.format_version != kCheckpointFormatVersion) {
    return Mismatch(absl::StrCat("format version ", c.format_version, ", this worker reads ",
                                 kCheckpointFormatVersion));
  }
  if (!c.spec.ParseFromString(ReadBytes(a, kSpecKey))) {
    return absl::DataLossError("checkpoint: the candidate spec does not parse");
  }
  c.position.epoch = static_cast<int>(ReadTensor(a, kEpochKey).item<int64_t>());
  c.position.step = ReadTensor(a, kStepKey).item<int64_t>();
  c.position.loss_scale = ReadTensor(a, kLossScaleKey).item<double>();
  c.position.loss_scale_good_steps = ReadTensor(a, kLossScaleGoodStepsKey).item<int64_t>();
  c.position.host_rng = ReadBytes(a, kHostRngKey);
  return c;
}

// Runs `body`, turning LibTorch's exceptions into `code`.
template <typename F>
auto Guard(absl::StatusCode code, const char* what, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    return absl::Status(code, absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::Status(code, absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::string> SaveCheckpoint(const quartet::v1::CandidateSpec& spec,
                                           const CheckpointPosition& position,
                                           const CheckpointParts& parts) {
  return Guard(
      absl::StatusCode::kInternal, "saving a checkpoint", [&]() -> absl::StatusOr<std::string> {
        OutputArchive a;
        a.write(kVersionKey, torch::tensor(kCheckpointFormatVersion), true);
        WriteBytes(a, kSpecKey, spec.SerializeAsString());
        a.write(kEpochKey, torch::tensor(static_cast<int64_t>(position.epoch)), true);
        a.write(kStepKey, torch::tensor(position.step), true);
        a.write(kLossScaleKey, torch::tensor(position.loss_scale, torch::kDouble), true);
        a.write(kLossScaleGoodStepsKey, torch::tensor(position.loss_scale_good_steps), true);
        WriteBytes(a, kHostRngKey, position.host_rng);
        WriteModel(a, *parts.module);
        OutputArchive optimizer;
        parts.optimizer->save(optimizer);
        a.write(kOptimizerKey, optimizer);
        WriteGenerators(a, parts.generators);
        std::ostringstream out;
        a.save_to(out);
        return out.str();
      });
}

absl::StatusOr<CheckpointContents> ReadCheckpoint(const std::string& bytes) {
  return Guard(absl::StatusCode::kDataLoss, "reading a checkpoint",
               [&]() -> absl::StatusOr<CheckpointContents> {
                 InputArchive a;
                 a.load_from(bytes.data(), bytes.size(), torch::Device(torch::kCPU));
                 QUARTET_ASSIGN_OR_RETURN(CheckpointContents c, ReadHeader(a));
                 InputArchive model;
                 a.read(kModelKey, model);
                 const std::vector<std::string> names = absl::StrSplit(
                     ReadBytes(model, kModelNamesKey), kNameSeparator, absl::SkipEmpty());
                 for (size_t i = 0; i < names.size(); ++i) {
                   c.model.emplace_back(names[i], ReadTensor(model, TensorKey(i)));
                 }
                 return c;
               });
}

absl::StatusOr<CheckpointPosition> LoadCheckpoint(const std::string& bytes,
                                                  const quartet::v1::CandidateSpec& spec,
                                                  const CheckpointParts& parts) {
  InputArchive a;
  QUARTET_RETURN_IF_ERROR(Guard(absl::StatusCode::kDataLoss, "reading a checkpoint", [&] {
    a.load_from(bytes.data(), bytes.size(), parts.device);
    return absl::OkStatus();
  }));
  return Guard(absl::StatusCode::kFailedPrecondition, "restoring a checkpoint",
               [&]() -> absl::StatusOr<CheckpointPosition> {
                 QUARTET_ASSIGN_OR_RETURN(CheckpointContents c, ReadHeader(a));
                 QUARTET_RETURN_IF_ERROR(CheckSpec(c.spec, spec));
                 QUARTET_RETURN_IF_ERROR(LoadModel(a, parts));
                 InputArchive optimizer;
                 a.read(kOptimizerKey, optimizer);
                 parts.optimizer->load(optimizer);
                 QUARTET_RETURN_IF_ERROR(LoadGenerators(a, parts));
                 return c.position;
               });
}

}  // namespace quartet::worker::train
