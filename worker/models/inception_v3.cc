// InceptionV3-1 / InceptionV3-2: torchvision Inception-v3, as LEMUR's InceptionV3-1.py and
// InceptionV3-2.py (shared/research/families.md section 3.16). The two files differ only in the
// auxiliary classifier after Mixed_6e: absent in -1, built in -2. Every conv is a BasicConv2d (conv
// without bias, BatchNorm eps 1e-3, ReLU); the stem and the reduction blocks use valid convs, so
// the input must be at least 75 px. Params (3 channels, 10 classes): 21,806,058 for -1 at 128 px
// and 24,371,444 for -2 at 299 px.
//
// Params read: dropout (o.dropout, before the FC).
//
// Initialisation as LEMUR (torchvision): every conv and linear weight trunc_normal(0, 0.1,
// [-2, 2]) except the aux FC (std 0.001). torchvision also marks the aux head's second BasicConv
// with std 0.01, but its init loop reads the mark from the nn.Conv2d inside, which has none, so
// that conv gets 0.1 too; this port reproduces that. Linear biases keep PyTorch's default;
// BatchNorm (1, 0).
//
// Departure (-2): the aux head is built, so the parameter count is LEMUR's, but it is not run.
// LEMUR computes it in training mode and throws its output away, so the logits do not depend on it
// and it never receives a gradient. In LEMUR that wasted computation is also what limits -2 to 299
// px in training (its 5x5 pool and 5x5 conv need a 17x17 Mixed_6e map); this port runs from 75 px
// in both variants, and the catalog keeps LEMUR's 299 px minimum for -2.
#include "worker/models/blocks.h"
#include "worker/models/registry.h"

namespace quartet::worker::models {
namespace {

// A BasicConv2d; a plain function so that braced kernel and padding pairs convert.
BasicConv2d InceptionV3Conv(int64_t in, int64_t out, torch::ExpandingArray<2> kernel,
                            torch::ExpandingArray<2> stride = 1,
                            torch::ExpandingArray<2> padding = 0) {
  return BasicConv2d(in, out, kernel, stride, padding);
}

torch::Tensor InceptionV3AvgPool3(const torch::Tensor& x) { return torch::avg_pool2d(x, 3, 1, 1); }

// Mixed_5b/5c/5d: 1x1 -> 64 | 1x1 -> 48, 5x5 -> 64 | 1x1 -> 64, 3x3 -> 96, 3x3 -> 96 |
// avgpool 3 s1 p1, 1x1 -> pool_features.
class InceptionV3AImpl : public torch::nn::Module {
 public:
  InceptionV3AImpl(int64_t in, int64_t pool_features) {
    branch1x1 = register_module("branch1x1", InceptionV3Conv(in, 64, 1));
    branch5x5_1 = register_module("branch5x5_1", InceptionV3Conv(in, 48, 1));
    branch5x5_2 = register_module("branch5x5_2", InceptionV3Conv(48, 64, 5, 1, 2));
    branch3x3dbl_1 = register_module("branch3x3dbl_1", InceptionV3Conv(in, 64, 1));
    branch3x3dbl_2 = register_module("branch3x3dbl_2", InceptionV3Conv(64, 96, 3, 1, 1));
    branch3x3dbl_3 = register_module("branch3x3dbl_3", InceptionV3Conv(96, 96, 3, 1, 1));
    branch_pool = register_module("branch_pool", InceptionV3Conv(in, pool_features, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return torch::cat(
        {branch1x1(x), branch5x5_2(branch5x5_1(x)),
         branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x))), branch_pool(InceptionV3AvgPool3(x))},
        1);
  }

  BasicConv2d branch1x1{nullptr}, branch5x5_1{nullptr}, branch5x5_2{nullptr},
      branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr}, branch3x3dbl_3{nullptr},
      branch_pool{nullptr};
};
TORCH_MODULE(InceptionV3A);

// Mixed_6a: 3x3 s2 -> 384 | 1x1 -> 64, 3x3 -> 96, 3x3 s2 -> 96 | maxpool 3 s2.
class InceptionV3BImpl : public torch::nn::Module {
 public:
  explicit InceptionV3BImpl(int64_t in) {
    branch3x3 = register_module("branch3x3", InceptionV3Conv(in, 384, 3, 2));
    branch3x3dbl_1 = register_module("branch3x3dbl_1", InceptionV3Conv(in, 64, 1));
    branch3x3dbl_2 = register_module("branch3x3dbl_2", InceptionV3Conv(64, 96, 3, 1, 1));
    branch3x3dbl_3 = register_module("branch3x3dbl_3", InceptionV3Conv(96, 96, 3, 2));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return torch::cat({branch3x3(x), branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x))),
                       torch::max_pool2d(x, 3, 2)},
                      1);
  }

  BasicConv2d branch3x3{nullptr}, branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr},
      branch3x3dbl_3{nullptr};
};
TORCH_MODULE(InceptionV3B);

// Mixed_6b..6e: 1x1 -> 192 | 1x1 -> c7, 1x7, 7x1 -> 192 | 1x1 -> c7, 7x1, 1x7, 7x1, 1x7 -> 192 |
// avgpool 3 s1 p1, 1x1 -> 192.
class InceptionV3CImpl : public torch::nn::Module {
 public:
  InceptionV3CImpl(int64_t in, int64_t c7) {
    branch1x1 = register_module("branch1x1", InceptionV3Conv(in, 192, 1));
    branch7x7_1 = register_module("branch7x7_1", InceptionV3Conv(in, c7, 1));
    branch7x7_2 = register_module("branch7x7_2", InceptionV3Conv(c7, c7, {1, 7}, 1, {0, 3}));
    branch7x7_3 = register_module("branch7x7_3", InceptionV3Conv(c7, 192, {7, 1}, 1, {3, 0}));
    branch7x7dbl_1 = register_module("branch7x7dbl_1", InceptionV3Conv(in, c7, 1));
    branch7x7dbl_2 = register_module("branch7x7dbl_2", InceptionV3Conv(c7, c7, {7, 1}, 1, {3, 0}));
    branch7x7dbl_3 = register_module("branch7x7dbl_3", InceptionV3Conv(c7, c7, {1, 7}, 1, {0, 3}));
    branch7x7dbl_4 = register_module("branch7x7dbl_4", InceptionV3Conv(c7, c7, {7, 1}, 1, {3, 0}));
    branch7x7dbl_5 = register_module("branch7x7dbl_5", InceptionV3Conv(c7, 192, {1, 7}, 1, {0, 3}));
    branch_pool = register_module("branch_pool", InceptionV3Conv(in, 192, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor b7 = branch7x7_3(branch7x7_2(branch7x7_1(x)));
    torch::Tensor b7dbl = branch7x7dbl_1(x);
    b7dbl = branch7x7dbl_5(branch7x7dbl_4(branch7x7dbl_3(branch7x7dbl_2(b7dbl))));
    return torch::cat({branch1x1(x), b7, b7dbl, branch_pool(InceptionV3AvgPool3(x))}, 1);
  }

  BasicConv2d branch1x1{nullptr}, branch7x7_1{nullptr}, branch7x7_2{nullptr}, branch7x7_3{nullptr},
      branch7x7dbl_1{nullptr}, branch7x7dbl_2{nullptr}, branch7x7dbl_3{nullptr},
      branch7x7dbl_4{nullptr}, branch7x7dbl_5{nullptr}, branch_pool{nullptr};
};
TORCH_MODULE(InceptionV3C);

// Mixed_7a: 1x1 -> 192, 3x3 s2 -> 320 | 1x1 -> 192, 1x7, 7x1, 3x3 s2 -> 192 | maxpool 3 s2.
class InceptionV3DImpl : public torch::nn::Module {
 public:
  explicit InceptionV3DImpl(int64_t in) {
    branch3x3_1 = register_module("branch3x3_1", InceptionV3Conv(in, 192, 1));
    branch3x3_2 = register_module("branch3x3_2", InceptionV3Conv(192, 320, 3, 2));
    branch7x7x3_1 = register_module("branch7x7x3_1", InceptionV3Conv(in, 192, 1));
    branch7x7x3_2 = register_module("branch7x7x3_2", InceptionV3Conv(192, 192, {1, 7}, 1, {0, 3}));
    branch7x7x3_3 = register_module("branch7x7x3_3", InceptionV3Conv(192, 192, {7, 1}, 1, {3, 0}));
    branch7x7x3_4 = register_module("branch7x7x3_4", InceptionV3Conv(192, 192, 3, 2));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor b7 = branch7x7x3_4(branch7x7x3_3(branch7x7x3_2(branch7x7x3_1(x))));
    return torch::cat({branch3x3_2(branch3x3_1(x)), b7, torch::max_pool2d(x, 3, 2)}, 1);
  }

  BasicConv2d branch3x3_1{nullptr}, branch3x3_2{nullptr}, branch7x7x3_1{nullptr},
      branch7x7x3_2{nullptr}, branch7x7x3_3{nullptr}, branch7x7x3_4{nullptr};
};
TORCH_MODULE(InceptionV3D);

// Mixed_7b/7c: 1x1 -> 320 | 1x1 -> 384, (1x3 | 3x1) | 1x1 -> 448, 3x3 -> 384, (1x3 | 3x1) |
// avgpool 3 s1 p1, 1x1 -> 192.
class InceptionV3EImpl : public torch::nn::Module {
 public:
  explicit InceptionV3EImpl(int64_t in) {
    branch1x1 = register_module("branch1x1", InceptionV3Conv(in, 320, 1));
    branch3x3_1 = register_module("branch3x3_1", InceptionV3Conv(in, 384, 1));
    branch3x3_2a = register_module("branch3x3_2a", InceptionV3Conv(384, 384, {1, 3}, 1, {0, 1}));
    branch3x3_2b = register_module("branch3x3_2b", InceptionV3Conv(384, 384, {3, 1}, 1, {1, 0}));
    branch3x3dbl_1 = register_module("branch3x3dbl_1", InceptionV3Conv(in, 448, 1));
    branch3x3dbl_2 = register_module("branch3x3dbl_2", InceptionV3Conv(448, 384, 3, 1, 1));
    branch3x3dbl_3a =
        register_module("branch3x3dbl_3a", InceptionV3Conv(384, 384, {1, 3}, 1, {0, 1}));
    branch3x3dbl_3b =
        register_module("branch3x3dbl_3b", InceptionV3Conv(384, 384, {3, 1}, 1, {1, 0}));
    branch_pool = register_module("branch_pool", InceptionV3Conv(in, 192, 1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor b3 = branch3x3_1(x);
    torch::Tensor b3dbl = branch3x3dbl_2(branch3x3dbl_1(x));
    return torch::cat({branch1x1(x), branch3x3_2a(b3), branch3x3_2b(b3), branch3x3dbl_3a(b3dbl),
                       branch3x3dbl_3b(b3dbl), branch_pool(InceptionV3AvgPool3(x))},
                      1);
  }

  BasicConv2d branch1x1{nullptr}, branch3x3_1{nullptr}, branch3x3_2a{nullptr},
      branch3x3_2b{nullptr}, branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr},
      branch3x3dbl_3a{nullptr}, branch3x3dbl_3b{nullptr}, branch_pool{nullptr};
};
TORCH_MODULE(InceptionV3E);

// Aux classifier as LEMUR builds it (-2): avgpool 5 s3, BasicConv 1x1 (-> 128), BasicConv 5x5
// (-> 768), GAP, FC 768 -> classes. Built for the parameter count only; never run (see the file
// comment).
class InceptionV3AuxImpl : public torch::nn::Module {
 public:
  InceptionV3AuxImpl(int64_t in, int64_t num_classes) {
    conv0 = register_module("conv0", InceptionV3Conv(in, 128, 1));
    conv1 = register_module("conv1", InceptionV3Conv(128, 768, 5));
    fc = register_module("fc", torch::nn::Linear(768, num_classes));
  }

  BasicConv2d conv0{nullptr}, conv1{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(InceptionV3Aux);

class InceptionV3Impl : public ClassifierImpl {
 public:
  // variant 1: no aux head; variant 2: aux head built.
  InceptionV3Impl(const ModelOptions& o, int variant) : dropout_(o.dropout) {
    conv1a = register_module("Conv2d_1a_3x3", InceptionV3Conv(o.in_channels, 32, 3, 2));
    conv2a = register_module("Conv2d_2a_3x3", InceptionV3Conv(32, 32, 3));
    conv2b = register_module("Conv2d_2b_3x3", InceptionV3Conv(32, 64, 3, 1, 1));
    conv3b = register_module("Conv2d_3b_1x1", InceptionV3Conv(64, 80, 1));
    conv4a = register_module("Conv2d_4a_3x3", InceptionV3Conv(80, 192, 3));
    mixed5b = register_module("Mixed_5b", InceptionV3A(192, 32));
    mixed5c = register_module("Mixed_5c", InceptionV3A(256, 64));
    mixed5d = register_module("Mixed_5d", InceptionV3A(288, 64));
    mixed6a = register_module("Mixed_6a", InceptionV3B(288));
    mixed6b = register_module("Mixed_6b", InceptionV3C(768, 128));
    mixed6c = register_module("Mixed_6c", InceptionV3C(768, 160));
    mixed6d = register_module("Mixed_6d", InceptionV3C(768, 160));
    mixed6e = register_module("Mixed_6e", InceptionV3C(768, 192));
    if (variant == 2) aux = register_module("AuxLogits", InceptionV3Aux(768, o.num_classes));
    mixed7a = register_module("Mixed_7a", InceptionV3D(768));
    mixed7b = register_module("Mixed_7b", InceptionV3E(1280));
    mixed7c = register_module("Mixed_7c", InceptionV3E(2048));
    fc = register_module("fc", torch::nn::Linear(2048, o.num_classes));

    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        TruncNormal_(conv->weight, 0.0, 0.1);
      } else if (auto* linear = m->as<torch::nn::Linear>()) {
        TruncNormal_(linear->weight, 0.0, 0.1);
      }
    }
    if (aux) TruncNormal_(aux->fc->weight, 0.0, 0.001);
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = conv2b(conv2a(conv1a(x)));
    x = torch::max_pool2d(x, 3, 2);
    x = conv4a(conv3b(x));
    x = torch::max_pool2d(x, 3, 2);
    x = mixed5d(mixed5c(mixed5b(x)));
    x = mixed6a(x);
    x = mixed6e(mixed6d(mixed6c(mixed6b(x))));
    x = mixed7c(mixed7b(mixed7a(x)));
    x = torch::adaptive_avg_pool2d(x, {1, 1});
    x = Dropout(x, dropout_, is_training()).flatten(1);
    return fc(x);
  }

 private:
  double dropout_;
  BasicConv2d conv1a{nullptr}, conv2a{nullptr}, conv2b{nullptr}, conv3b{nullptr}, conv4a{nullptr};
  InceptionV3A mixed5b{nullptr}, mixed5c{nullptr}, mixed5d{nullptr};
  InceptionV3B mixed6a{nullptr};
  InceptionV3C mixed6b{nullptr}, mixed6c{nullptr}, mixed6d{nullptr}, mixed6e{nullptr};
  InceptionV3Aux aux{nullptr};
  InceptionV3D mixed7a{nullptr};
  InceptionV3E mixed7b{nullptr}, mixed7c{nullptr};
  torch::nn::Linear fc{nullptr};
};

}  // namespace

QUARTET_REGISTER_MODEL("InceptionV3-1", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<InceptionV3Impl>(o, 1);
});
QUARTET_REGISTER_MODEL("InceptionV3-2", [](const ModelOptions& o) -> ClassifierPtr {
  return std::make_shared<InceptionV3Impl>(o, 2);
});

}  // namespace quartet::worker::models
