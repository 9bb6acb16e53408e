#include "worker/data/batcher.h"

#include <algorithm>
#include <vector>

namespace quartet::worker::data {
namespace {

// (1, C, 1, 1) float32 tensor of `values` on `device`.
torch::Tensor ChannelTensor(const std::vector<double>& values, const torch::Device& device) {
  std::vector<float> v(values.begin(), values.end());
  return torch::tensor(v, torch::kFloat32)
      .view({1, static_cast<int64_t>(v.size()), 1, 1})
      .to(device);
}

// Random crop of the zero-padded batch and (when `flip`) random horizontal flip, per sample:
// out[b, c, i, j] = padded[b, c, dy[b] + i, dx[b] + (mirror[b] ? W-1-j : j)].
// The crop indexes a sliding-window view (rows and window start vary, each window row is copied
// whole), then one gather reverses the columns of the mirrored samples.
torch::Tensor PadCropFlip(const torch::Tensor& batch, int64_t pad, bool flip,
                          const c10::optional<at::Generator>& cpu_generator) {
  const int64_t b = batch.size(0), c = batch.size(1), h = batch.size(2), w = batch.size(3);
  const auto longs = torch::dtype(torch::kInt64).device(batch.device());
  const c10::optional<at::Generator> gen = batch.is_cpu() ? cpu_generator : c10::nullopt;
  const torch::Tensor dy = torch::randint(2 * pad + 1, {b, 1, 1}, gen, longs);
  const torch::Tensor dx = torch::randint(2 * pad + 1, {b, 1, 1}, gen, longs);
  torch::Tensor crop = batch;
  if (pad > 0) {
    const torch::Tensor windows =
        torch::constant_pad_nd(batch, {pad, pad, pad, pad}, 0).unfold(3, w, 1);  // B C Hp S W
    crop = windows.index({torch::arange(b, longs).view({b, 1, 1}),
                          torch::arange(c, longs).view({1, c, 1}),
                          dy + torch::arange(h, longs).view({1, 1, h}), dx});
  }
  if (!flip) return crop;
  const torch::Tensor mirror = torch::randint(2, {b, 1, 1, 1}, gen, longs).to(torch::kBool);
  const torch::Tensor cols =
      torch::where(mirror, torch::arange(w - 1, -1, -1, longs).view({1, 1, 1, w}),
                   torch::arange(w, longs).view({1, 1, 1, w}));
  return crop.gather(3, cols.expand({b, c, h, w}));
}

}  // namespace

void SetAugmentationFor(const std::string& dataset_name, BatchOptions* options) {
  const bool digits = dataset_name == "mnist";
  const bool small_gray = digits || dataset_name == "fashion-mnist";
  options->pad = small_gray ? 0 : 4;
  options->flip = !digits;
}

DeviceBatcher::DeviceBatcher(const Dataset& dataset, const BatchOptions& options)
    : dataset_(dataset), options_(options) {
  const torch::Device device = dataset.train_images.device();
  mean_ = ChannelTensor(dataset.mean, device);
  std::vector<double> inv(dataset.std.size());
  std::transform(dataset.std.begin(), dataset.std.end(), inv.begin(),
                 [](double s) { return 1.0 / s; });
  inv_std_ = ChannelTensor(inv, device);
}

torch::Tensor DeviceBatcher::Train(const torch::Tensor& indices) const {
  torch::NoGradGuard no_grad;
  torch::Tensor batch = dataset_.train_images.index_select(0, indices);
  if (options_.augment) {
    batch = PadCropFlip(batch, std::max<int64_t>(options_.pad, 0), options_.flip,
                        options_.cpu_generator);
  }
  return Finish(batch);
}

torch::Tensor DeviceBatcher::Test(const torch::Tensor& indices) const {
  torch::NoGradGuard no_grad;
  return Finish(dataset_.test_images.index_select(0, indices));
}

torch::Tensor DeviceBatcher::TrainLabels(const torch::Tensor& indices) const {
  return dataset_.train_labels.index_select(0, indices);
}

torch::Tensor DeviceBatcher::TestLabels(const torch::Tensor& indices) const {
  return dataset_.test_labels.index_select(0, indices);
}

torch::Tensor DeviceBatcher::Finish(const torch::Tensor& uint8_batch) const {
  torch::NoGradGuard no_grad;
  const auto memory_format =
      options_.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  // Normalising is per-channel affine and bilinear weights sum to one, so normalising at the
  // native size and then resizing equals resizing then normalising, at a fraction of the work.
  torch::Tensor x = uint8_batch.to(torch::kFloat32).div_(255.0).sub_(mean_).mul_(inv_std_);
  const int64_t side = options_.output_size;
  if (side > 0 && (side != x.size(2) || side != x.size(3))) {
    x = torch::nn::functional::interpolate(x.contiguous(memory_format),
                                           torch::nn::functional::InterpolateFuncOptions()
                                               .size(std::vector<int64_t>{side, side})
                                               .mode(torch::kBilinear)
                                               .align_corners(false));
  }
  return x.to(x.options().dtype(options_.dtype), /*non_blocking=*/false, /*copy=*/false,
              memory_format);
}

torch::Tensor ToThreeChannels(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 1) return x;
  // A one-channel tensor is contiguous in both layouts; its channel stride tells which one it
  // was made in (1 for channels-last, H*W for NCHW).
  const bool channels_last = x.stride(1) == 1 && x.size(2) * x.size(3) > 1;
  return x.expand({-1, 3, -1, -1})
      .contiguous(channels_last ? torch::MemoryFormat::ChannelsLast
                                : torch::MemoryFormat::Contiguous);
}

}  // namespace quartet::worker::data
