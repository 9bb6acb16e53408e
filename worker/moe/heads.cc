#include "worker/moe/heads.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/catalog.h"
#include "worker/models/blocks.h"
#include "worker/models/features.h"
#include "worker/models/registry.h"

namespace quartet::worker::moe {
namespace {

torch::Tensor Pool(const torch::Tensor& features) { return features.mean({2, 3}); }

// Linear(in, hidden), ReLU, Dropout, Linear(hidden, out).
class ExpertMlpImpl : public torch::nn::Module {
 public:
  ExpertMlpImpl(int64_t in, int64_t hidden, int64_t out, double dropout) : dropout_(dropout) {
    fc1 = register_module("fc1", torch::nn::Linear(in, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc2(models::Dropout(torch::relu(fc1(x)), dropout_, is_training()));
  }

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(ExpertMlp);

// One expert that always runs: probs and active are (B, 1) ones.
void SingleExpertRouting(const torch::Tensor& logits, MoEOutput* out) {
  const int64_t b = logits.size(0);
  out->probs = torch::ones({b, 1}, logits.options().dtype(torch::kFloat32));
  out->active = torch::ones({b, 1}, logits.options().dtype(torch::kBool));
  out->balance_loss = torch::zeros({}, logits.options());
}

class DenseHeadImpl : public HeadImpl {
 public:
  explicit DenseHeadImpl(const HeadOptions& o) {
    mlp_ = register_module("mlp", ExpertMlp(o.in_features, o.hidden, o.num_classes, o.dropout));
  }
  MoEOutput Forward(const torch::Tensor& features) override {
    MoEOutput out;
    out.logits = mlp_->forward(Pool(features));
    SingleExpertRouting(out.logits, &out);
    return out;
  }
  int64_t num_experts() const override { return 1; }

 private:
  ExpertMlp mlp_{nullptr};
};

// The experts shared by the softmax-gated and the sparse heads.
class ExpertsImpl : public torch::nn::Module {
 public:
  explicit ExpertsImpl(const HeadOptions& o) {
    const int64_t hidden = std::max<int64_t>(1, o.hidden / o.experts);
    for (int64_t e = 0; e < o.experts; ++e) {
      experts.push_back(register_module(
          absl::StrCat("expert", e), ExpertMlp(o.in_features, hidden, o.num_classes, o.dropout)));
    }
  }
  std::vector<ExpertMlp> experts;
};
TORCH_MODULE(Experts);

class SoftMoEHeadImpl : public HeadImpl {
 public:
  explicit SoftMoEHeadImpl(const HeadOptions& o) : o_(o) {
    gate_ = register_module("gate", torch::nn::Linear(o.in_features, o.experts));
    experts_ = register_module("experts", Experts(o));
  }
  MoEOutput Forward(const torch::Tensor& features) override {
    MoEOutput out;
    const torch::Tensor h = Pool(features);
    torch::Tensor z = gate_(models::Dropout(h, o_.dropout, is_training()));
    z = models::Dropout(z, o_.dropout, is_training());
    const torch::Tensor p = torch::softmax(z / o_.temperature, 1);
    std::vector<torch::Tensor> outs;
    for (auto& expert : experts_->experts) outs.push_back(expert->forward(h));
    out.logits = (p.unsqueeze(2) * torch::stack(outs, 1)).sum(1);
    out.probs = p;
    out.active = torch::ones_like(p, torch::kBool);
    // KL(u || p̄) = sum_e (1/E) (log(1/E) - log p̄_e).
    const double e = static_cast<double>(o_.experts);
    const torch::Tensor kl = (std::log(1.0 / e) - (p.mean(0) + 1e-12).log()).mean();
    out.balance_loss = o_.kl_weight * kl;
    return out;
  }
  std::vector<torch::Tensor> RouterParameters() override { return gate_->parameters(); }
  int64_t num_experts() const override { return o_.experts; }

 private:
  HeadOptions o_;
  torch::nn::Linear gate_{nullptr};
  Experts experts_{nullptr};
};

class SparseMoEHeadImpl : public HeadImpl {
 public:
  SparseMoEHeadImpl(const HeadOptions& o, int64_t k) : o_(o), k_(k) {
    gate_ = register_module("gate", torch::nn::Linear(o.in_features, o.experts));
    noise_ = register_module("noise", torch::nn::Linear(o.in_features, o.experts));
    {
      torch::NoGradGuard no_grad;  // Shazeer: the noise projection starts at zero
      noise_->weight.zero_();
      noise_->bias.zero_();
    }
    experts_ = register_module("experts", Experts(o));
  }
  void SetDenseDispatch(bool on) override { dense_dispatch_ = on; }
  MoEOutput Forward(const torch::Tensor& features) override {
    MoEOutput out;
    const torch::Tensor h = Pool(features);
    const torch::Tensor clean = gate_(h);
    const torch::Tensor z =
        (clean - clean.mean(1, true)) / (clean.std(1, /*unbiased=*/true, true) + 1e-6);
    const bool noisy = is_training();
    torch::Tensor noise_std, logits = z;
    if (noisy) {
      noise_std = torch::softplus(noise_(h)) + o_.noise_floor;
      logits = z + models::RandnLike(z) * noise_std;
    }
    auto [top_values, top_index] = logits.topk(std::min(k_ + 1, o_.experts), 1);
    const torch::Tensor chosen_index = top_index.narrow(1, 0, k_);
    const torch::Tensor masked = torch::full_like(logits, -std::numeric_limits<double>::infinity())
                                     .scatter(1, chosen_index, top_values.narrow(1, 0, k_));
    const torch::Tensor p = torch::softmax(masked / o_.temperature, 1);
    out.probs = p;
    // 1, not true: a traced bool Scalar matches no ATen overload (export).
    out.active = torch::zeros_like(p, torch::kBool).scatter(1, chosen_index, 1);
    // Only the chosen experts run, each on its samples.
    torch::Tensor y;
    for (int64_t e = 0; e < o_.experts; ++e) {
      if (dense_dispatch_) {  // p is exactly 0 for experts not chosen
        torch::Tensor ye = experts_->experts[e]->forward(h) * p.select(1, e).unsqueeze(1);
        y = y.defined() ? y + ye : ye;
        continue;
      }
      const torch::Tensor rows = out.active.select(1, e).nonzero().squeeze(1);
      if (rows.size(0) == 0) continue;
      torch::Tensor ye = experts_->experts[e]->forward(h.index_select(0, rows));
      ye = ye * p.index_select(0, rows).select(1, e).unsqueeze(1);
      if (!y.defined()) y = torch::zeros({h.size(0), ye.size(1)}, ye.options());
      y = y.index_add(0, rows, ye);
    }
    out.logits = y;
    const torch::Tensor importance = p.sum(0);
    torch::Tensor load = importance;
    if (noisy) {
      // Shazeer's smooth load: P(x, e) = Phi((z_e - threshold) / noise_std_e), the threshold being
      // the k-th largest noisy logit excluding e (the (k+1)-th when e is chosen).
      const torch::Tensor kth = top_values.select(1, k_ - 1).unsqueeze(1);
      const torch::Tensor next =
          k_ < o_.experts ? top_values.select(1, k_).unsqueeze(1)
                          : torch::full_like(kth, -std::numeric_limits<double>::infinity());
      const torch::Tensor threshold = torch::where(out.active, next, kth);
      const torch::Tensor prob =
          0.5 * (1 + torch::erf((z - threshold) / noise_std / std::sqrt(2.0)));
      load = prob.sum(0);
    }
    out.balance_loss =
        o_.importance_weight * CvSquared(importance) + o_.load_weight * CvSquared(load);
    return out;
  }
  std::vector<torch::Tensor> RouterParameters() override {
    std::vector<torch::Tensor> out = gate_->parameters();
    for (const auto& t : noise_->parameters()) out.push_back(t);
    return out;
  }
  int64_t num_experts() const override { return o_.experts; }

 private:
  bool dense_dispatch_ = false;
  HeadOptions o_;
  int64_t k_;
  torch::nn::Linear gate_{nullptr}, noise_{nullptr};
  Experts experts_{nullptr};
};

class SlotsSoftMoEHeadImpl : public HeadImpl {
 public:
  explicit SlotsSoftMoEHeadImpl(const HeadOptions& o) : o_(o) {
    const int64_t d = o.in_features;
    const int64_t slots = o.experts * o.slots_per_expert;
    // lecun_normal slot parameters, scale 1 (vmoe).
    phi_ = register_parameter("phi", torch::randn({d, slots}) / std::sqrt(static_cast<double>(d)));
    scale_ = register_parameter("scale", torch::ones({}));
    const int64_t hidden = std::max<int64_t>(1, o.hidden / (2 * o.experts));
    for (int64_t e = 0; e < o.experts; ++e) {
      experts_.push_back(
          register_module(absl::StrCat("expert", e), ExpertMlp(d, hidden, d, o.dropout)));
    }
    classifier_ = register_module("classifier", torch::nn::Linear(d, o.num_classes));
  }
  MoEOutput Forward(const torch::Tensor& features) override {
    MoEOutput out;
    const int64_t b = features.size(0), d = features.size(1);
    const torch::Tensor x = features.flatten(2).transpose(1, 2);  // (B, m, D)
    const int64_t m = x.size(1), s = o_.slots_per_expert, e_count = o_.experts;
    const torch::Tensor xn = x * torch::rsqrt(x.pow(2).sum(-1, true) + 1e-6);
    const torch::Tensor pn = phi_ * torch::rsqrt(phi_.pow(2).sum(0, true) + 1e-6) * scale_;
    const torch::Tensor logits = torch::matmul(xn, pn);                      // (B, m, E*S)
    const torch::Tensor dispatch = torch::softmax(logits, 1);                // over tokens
    const torch::Tensor combine = torch::softmax(logits, 2);                 // over slots
    const torch::Tensor slots = torch::matmul(dispatch.transpose(1, 2), x);  // (B, E*S, D)
    std::vector<torch::Tensor> outs;
    for (int64_t e = 0; e < e_count; ++e)
      outs.push_back(experts_[e]->forward(slots.narrow(1, e * s, s)));
    const torch::Tensor y = torch::matmul(combine, torch::cat(outs, 1));  // (B, m, D)
    out.logits = classifier_(y.mean(1));
    out.probs = combine.reshape({b, m, e_count, s}).sum(3).mean(1).to(torch::kFloat32);
    out.active = torch::ones_like(out.probs, torch::kBool);
    out.balance_loss = torch::zeros({}, out.logits.options());
    (void)d;
    return out;
  }
  std::vector<torch::Tensor> RouterParameters() override { return {phi_, scale_}; }
  int64_t num_experts() const override { return o_.experts; }

 private:
  HeadOptions o_;
  torch::Tensor phi_, scale_;
  std::vector<ExpertMlp> experts_;
  torch::nn::Linear classifier_{nullptr};
};

}  // namespace

absl::StatusOr<std::shared_ptr<HeadImpl>> MakeHead(const HeadOptions& options) {
  HeadOptions o = options;
  if (o.hidden == 0) o.hidden = o.in_features;
  if (o.in_features < 1 || o.num_classes < 2 || o.hidden < 1) {
    return absl::InvalidArgumentError(absl::StrCat("head: bad sizes (features ", o.in_features,
                                                   ", classes ", o.num_classes, ", hidden ",
                                                   o.hidden, ")"));
  }
  if (o.kind != common::HeadKind::kDense && (o.experts < 2 || o.experts > 64)) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe.head_experts: must be in [2, 64], got ", o.experts));
  }
  try {
    switch (o.kind) {
      case common::HeadKind::kDense:
        return std::shared_ptr<HeadImpl>(std::make_shared<DenseHeadImpl>(o));
      case common::HeadKind::kSoftMoE:
        return std::shared_ptr<HeadImpl>(std::make_shared<SoftMoEHeadImpl>(o));
      case common::HeadKind::kSparseMoE:
      case common::HeadKind::kHardMoE: {
        const int64_t k = o.kind == common::HeadKind::kHardMoE ? 1 : o.top_k;
        if (k < 1 || k > o.experts) {
          return absl::InvalidArgumentError(
              absl::StrCat("recipe.head_top_k: must be in [1, ", o.experts, "], got ", k));
        }
        return std::shared_ptr<HeadImpl>(std::make_shared<SparseMoEHeadImpl>(o, k));
      }
      case common::HeadKind::kSlotsSoftMoE:
        return std::shared_ptr<HeadImpl>(std::make_shared<SlotsSoftMoEHeadImpl>(o));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("building the head: ", e.what_without_backtrace()));
  }
  return absl::InvalidArgumentError("recipe.head: unknown kind");
}

HeadsNetImpl::HeadsNetImpl(const HeadsOptions& options, models::ClassifierPtr backbone,
                           std::shared_ptr<HeadImpl> head)
    : options_(options), backbone_(std::move(backbone)), head_(std::move(head)) {
  register_module("backbone", backbone_);
  register_module("head", head_);
  has_features_ = dynamic_cast<models::FeatureBackbone*>(backbone_.get()) != nullptr;
  if (options.in_channels == 1) {
    auto m = common::FamilyCatalog::Get().Resolve(options.backbone);
    replicate_ = m.ok() && !m->variant->supports_one_channel;
  }
}

absl::StatusOr<std::shared_ptr<HeadsNetImpl>> HeadsNetImpl::Build(const HeadsOptions& options) {
  auto resolved = common::FamilyCatalog::Get().Resolve(options.backbone);
  if (!resolved.ok()) return resolved.status();
  models::ModelOptions mo;
  mo.in_channels = options.in_channels == 1 && !resolved->variant->supports_one_channel
                       ? 3
                       : options.in_channels;
  mo.num_classes = options.num_classes;
  mo.input_size = options.input_size;
  mo.dropout = options.backbone_dropout;
  mo.seed = options.seed * 1000003ULL + 7919ULL;
  if (options.small_input_stem) mo.params[models::kSmallInputStemParam] = 1;
  auto backbone = models::BuildModel(options.backbone, mo);
  if (!backbone.ok()) return backbone.status();
  HeadOptions head = options.head;
  auto* fb = dynamic_cast<models::FeatureBackbone*>(backbone->get());
  if (fb != nullptr) {
    head.in_features = fb->feature_channels();
  } else {
    if (head.kind == common::HeadKind::kSlotsSoftMoE) {
      return absl::InvalidArgumentError(absl::StrCat(
          "recipe.head: HEAD_KIND_SLOTS_SOFT_MOE needs a backbone with a spatial feature map; ",
          options.backbone, " gives none (ResNet does)"));
    }
    // Its output layer becomes a projection to the head's feature width.
    mo.num_classes = options.fallback_features;
    backbone = models::BuildModel(options.backbone, mo);
    if (!backbone.ok()) return backbone.status();
    head.in_features = options.fallback_features;
  }
  head.num_classes = options.num_classes;
  try {
    torch::manual_seed(options.seed * 0x9E3779B97F4A7C15ULL + 0xC0FFEEULL);
    auto built_head = MakeHead(head);
    if (!built_head.ok()) return built_head.status();
    return std::make_shared<HeadsNetImpl>(options, std::move(*backbone), std::move(*built_head));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("building the head: ", e.what_without_backtrace()));
  }
}

torch::Tensor HeadsNetImpl::Features(const torch::Tensor& x) {
  const torch::Tensor in = replicate_ && x.size(1) == 1 ? x.expand({-1, 3, -1, -1}) : x;
  if (has_features_) return dynamic_cast<models::FeatureBackbone*>(backbone_.get())->Features(in);
  return backbone_->forward(in).unsqueeze(2).unsqueeze(3);
}

MoEOutput HeadsNetImpl::Forward(const torch::Tensor& x) { return head_->Forward(Features(x)); }

}  // namespace quartet::worker::moe
