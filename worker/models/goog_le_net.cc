// GoogLeNet: torchvision Inception-v1 with BatchNorm, as LEMUR's GoogLeNet.py
// (shared/research/families.md section 3.14). Every conv is a BasicConv2d (conv without bias,
// BatchNorm eps 1e-3, ReLU); the pools are ceil_mode max-pools; the "5x5" branch uses a 3x3 conv as
// torchvision does. Params at 3x32x32, 10 classes: 9,960,638. Minimum input 15 px.
//
// Params read: dropout (o.dropout, before the FC). LEMUR's dropout_aux only reaches the auxiliary
// heads' dropout, which never runs here (see below), so it is not read.
//
// Initialisation as LEMUR: every conv and linear weight trunc_normal(0, 0.01, [-2, 2]); linear
// biases keep PyTorch's default; BatchNorm (1, 0).
//
// Departure: the two auxiliary heads (after 4a and 4d) are built, so the parameter count is LEMUR's
// (they hold 4,350,484 of the parameters), but they are not run. LEMUR computes them in training
// mode and throws their outputs away, so its logits do not depend on them and they never receive a
// gradient; running them would only cost time and move their own BatchNorm statistics.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// Four branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; maxpool 3 s1 p1 -> 1x1.
class GoogLeNetInceptionImpl : public torch::nn::Module {
 public:
  GoogLeNetInceptionImpl(int64_t in, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3,
                         int64_t ch5x5red, int64_t ch5x5, int64_t pool_proj) {
    branch1 = register_module("branch1", BasicConv2d(in, ch1x1, 1));
    branch2_reduce = register_module("branch2_reduce", BasicConv2d(in, ch3x3red, 1));
    branch2 = register_module("branch2", BasicConv2d(ch3x3red, ch3x3, 3, 1, 1));
    branch3_reduce = register_module("branch3_reduce", BasicConv2d(in, ch5x5red, 1));
    branch3 = register_module("branch3", BasicConv2d(ch5x5red, ch5x5, 3, 1, 1));
    branch4 = register_module("branch4", BasicConv2d(in, pool_proj, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor pooled = torch::max_pool2d(x, 3, 1, 1, 1, /*ceil_mode=*/true);
    return torch::cat(
        {branch1(x), branch2(branch2_reduce(x)), branch3(branch3_reduce(x)), branch4(pooled)}, 1);
  }

  BasicConv2d branch1{nullptr}, branch2_reduce{nullptr}, branch2{nullptr}, branch3_reduce{nullptr},
      branch3{nullptr}, branch4{nullptr};
};
TORCH_MODULE(GoogLeNetInception);

// Auxiliary head as LEMUR builds it: adaptive avgpool 4x4, BasicConv 1x1 (-> 128), flatten (2048),
// FC 2048 -> 1024, ReLU, Dropout(dropout_aux), FC 1024 -> classes. Built for the parameter count
// only; never run (see the file comment).
class GoogLeNetAuxImpl : public torch::nn::Module {
 public:
  GoogLeNetAuxImpl(int64_t in, int64_t num_classes) {
    conv = register_module("conv", BasicConv2d(in, 128, 1));
    fc1 = register_module("fc1", torch::nn::Linear(2048, 1024));
    fc2 = register_module("fc2", torch::nn::Linear(1024, num_classes));
  }

  BasicConv2d conv{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(GoogLeNetAux);

class GoogLeNetImpl : public ClassifierImpl {
 public:
  explicit GoogLeNetImpl(const ModelOptions& o) : dropout_(o.dropout) {
    conv1 = register_module("conv1", BasicConv2d(o.in_channels, 64, 7, 2, 3));
    conv2 = register_module("conv2", BasicConv2d(64, 64, 1));
    conv3 = register_module("conv3", BasicConv2d(64, 192, 3, 1, 1));
    inception3a = register_module("inception3a", GoogLeNetInception(192, 64, 96, 128, 16, 32, 32));
    inception3b =
        register_module("inception3b", GoogLeNetInception(256, 128, 128, 192, 32, 96, 64));
    inception4a = register_module("inception4a", GoogLeNetInception(480, 192, 96, 208, 16, 48, 64));
    inception4b =
        register_module("inception4b", GoogLeNetInception(512, 160, 112, 224, 24, 64, 64));
    inception4c =
        register_module("inception4c", GoogLeNetInception(512, 128, 128, 256, 24, 64, 64));
    inception4d =
        register_module("inception4d", GoogLeNetInception(512, 112, 144, 288, 32, 64, 64));
    inception4e =
        register_module("inception4e", GoogLeNetInception(528, 256, 160, 320, 32, 128, 128));
    inception5a =
        register_module("inception5a", GoogLeNetInception(832, 256, 160, 320, 32, 128, 128));
    inception5b =
        register_module("inception5b", GoogLeNetInception(832, 384, 192, 384, 48, 128, 128));
    aux1 = register_module("aux1", GoogLeNetAux(512, o.num_classes));
    aux2 = register_module("aux2", GoogLeNetAux(528, o.num_classes));
    fc = register_module("fc", torch::nn::Linear(1024, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        TruncNormal_(conv->weight, 0.0, 0.01);
      } else if (auto* linear = m->as<torch::nn::Linear>()) {
        TruncNormal_(linear->weight, 0.0, 0.01);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(conv1(x), 3, 2, 0, 1, /*ceil_mode=*/true);
    x = conv3(conv2(x));
    x = torch::max_pool2d(x, 3, 2, 0, 1, /*ceil_mode=*/true);
    x = inception3b(inception3a(x));
    x = torch::max_pool2d(x, 3, 2, 0, 1, /*ceil_mode=*/true);
    x = inception4a(x);
    x = inception4e(inception4d(inception4c(inception4b(x))));
    x = torch::max_pool2d(x, 2, 2, 0, 1, /*ceil_mode=*/true);
    x = inception5b(inception5a(x));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    x = Dropout(x, dropout_, is_training());
    return fc(x);
  }

 private:
  double dropout_;
  BasicConv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  GoogLeNetInception inception3a{nullptr}, inception3b{nullptr}, inception4a{nullptr},
      inception4b{nullptr}, inception4c{nullptr}, inception4d{nullptr}, inception4e{nullptr},
      inception5a{nullptr}, inception5b{nullptr};
  GoogLeNetAux aux1{nullptr}, aux2{nullptr};
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("GoogLeNet", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<GoogLeNetImpl>(o);
});

}  // namespace quartet::worker::models
