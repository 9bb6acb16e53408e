// Post-training analyses of a network's loss (shared/research/moe.md sections 6, 7 and 9):
// Hessian-vector products by double backward, top eigenvalues by power iteration with deflation,
// Hutchinson's trace, loss sweeps along given or filter-normalised random directions, minibatch
// gradient variance by named parameter group, and inference latency. The functions take the
// network as a logits function and the parameters as a list of tensors, so they serve any
// architecture (and tests' tiny models).
//
// The loss is the mean cross-entropy over a fixed set of batches, each batch's mean weighted by its
// size (PyHessian's dataloader HVP). The caller puts the network in eval mode. Random vectors are
// drawn on the CPU from a generator seeded by the caller, then moved to the parameters' device, so
// a seed gives the same vectors on every device. Functions that move parameters (the sweeps)
// restore them before returning. Not thread-safe; LibTorch exceptions propagate (the trainer turns
// them into a Status).
#ifndef QUARTET_WORKER_TRAIN_ANALYSIS_H_
#define QUARTET_WORKER_TRAIN_ANALYSIS_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace quartet::worker::train::analysis {

// One tensor per parameter, shaped like it.
using TensorList = std::vector<torch::Tensor>;
// The network's logits for a batch of inputs.
using LogitsFn = std::function<torch::Tensor(const torch::Tensor& x)>;
// v -> Hv.
using HvpFn = std::function<TensorList(const TensorList& v)>;

// A fixed data subset split into batches (on the model's device).
struct Batches {
  std::vector<torch::Tensor> x, y;
  int64_t samples = 0;
};
Batches MakeBatches(const torch::Tensor& x, const torch::Tensor& y, int64_t batch_size);

// sum_i <a_i, b_i> in double; the global L2 norm; a / (norm + 1e-6) (PyHessian's normalisation).
double Dot(const TensorList& a, const TensorList& b);
double Norm(const TensorList& a);
TensorList Normalized(const TensorList& a);

// Mean cross-entropy and accuracy over the batches, without gradients.
struct LossAccuracy {
  double loss = 0;
  double accuracy = 0;
};
LossAccuracy EvaluateLoss(const LogitsFn& logits, const Batches& data);

// Hv for the Hessian of the mean cross-entropy over `data` w.r.t. `params`. Parameters the loss
// does not reach (an expert no sample chose) get zero blocks.
TensorList HessianVectorProduct(const LogitsFn& logits, const Batches& data,
                                const TensorList& params, const TensorList& v);

// Hessian-vector products on fixed batches with each batch's gradient graph built once and kept
// (create_graph), so that every product is one more backward pass per batch through it, not a
// forward and two backward passes (PyHessian's single-batch mode). Equal to HessianVectorProduct
// up to rounding. Holds every batch's double-backward graph at once: use it where the subset's
// activations fit (see kMaxCachedHvpInputElements). Not thread-safe.
class CachedHvp {
 public:
  CachedHvp(const LogitsFn& logits, const Batches& data, const TensorList& params);
  TensorList operator()(const TensorList& v) const;

 private:
  struct Batch {
    TensorList grads, params;   // the differentiable gradients and the parameters they reach
    std::vector<size_t> index;  // their positions in the full parameter list
    double weight = 0;          // batch share of the subset
  };
  std::vector<Batch> batches_;
  TensorList shapes_;  // one zero tensor per parameter
};

// Subsets with at most this many input elements (samples x channels x height x width; 2,000
// CIFAR-10 images are 6.1 M) keep their gradient graphs for the Hessian analysis (CachedHvp).
inline constexpr int64_t kMaxCachedHvpInputElements = int64_t{8} << 20;

struct PowerIterationOptions {
  // Eigenvalues to find, largest |λ| first.
  int top_k = 5;
  // Iterations per eigenvalue; stops early when |λ_t - λ_{t-1}| / (|λ_{t-1}| + 1e-6) < tolerance.
  int max_iterations = 100;
  double tolerance = 1e-3;
  // Seed of the Gaussian start vectors.
  uint64_t seed = 0;
};
struct Eigenpairs {
  std::vector<double> eigenvalues;
  // Iterations each took (max_iterations when it did not converge).
  std::vector<int> iterations;
  // Unit-norm eigenvectors, shaped like the parameters.
  std::vector<TensorList> eigenvectors;
  int hvp_count = 0;
};
// PyHessian's power iteration: v ~ N(0, I) normalised; repeat: orthonormalise v against the
// eigenvectors found (Gram-Schmidt), λ = v'Hv, v = Hv / ||Hv||.
Eigenpairs TopEigenvalues(const HvpFn& hvp, const TensorList& like,
                          const PowerIterationOptions& options);

struct TraceEstimate {
  double trace = 0;
  // std of the samples / sqrt(count).
  double standard_error = 0;
  std::vector<double> samples;
};
// Hutchinson: mean of v'Hv over `samples` Rademacher vectors v drawn from `seed`.
TraceEstimate HutchinsonTrace(const HvpFn& hvp, const TensorList& like, int samples, uint64_t seed);
// The Rademacher vectors HutchinsonTrace draws, in order (for cross-checks).
std::vector<TensorList> RademacherProbes(const TensorList& like, int samples, uint64_t seed);

// Li et al.'s filter-normalised random direction: Gaussian, each filter (slice along dim 0) of a
// tensor with >= 2 dims rescaled to the norm of the same filter of the parameter; tensors with
// fewer dims (biases, norm scales and shifts, scalars) get zeros.
TensorList FilterNormalizedDirection(const TensorList& params, uint64_t seed);

// n points evenly spaced over [lo, hi].
std::vector<double> Linspace(double lo, double hi, int n);

struct Curve {
  std::vector<double> alphas, losses, accuracies;
};
// Loss and accuracy at params + alpha * direction for each alpha.
Curve SweepDirection(const LogitsFn& logits, const Batches& data, const TensorList& params,
                     const TensorList& direction, const std::vector<double>& alphas);
// Losses at params + a * d1 + b * d2, row-major over (a, b) in alphas x alphas.
std::vector<double> SweepPlane(const LogitsFn& logits, const Batches& data,
                               const TensorList& params, const TensorList& d1, const TensorList& d2,
                               const std::vector<double>& alphas);

// A parameter group's minibatch gradient variance (moe.md section 9 (A)).
struct NamedParameters {
  std::string name;
  TensorList parameters;
};
struct GroupGradientVariance {
  std::string name;
  // sum_k ||g_k - ḡ||^2 / (K - 1), ||ḡ||^2, their ratio.
  double variance = 0;
  double mean_gradient_norm_squared = 0;
  double relative_variance = 0;
  int64_t parameter_count = 0;
};
// For k in [0, batches): zeroes every group's gradients, calls compute_gradients(k), which must
// leave the gradient of minibatch k in the parameters' .grad() (undefined counts as zero), and
// accumulates each group's flattened gradient (Welford, in double). Also returns an "all" group
// over every parameter. Gradients are left zeroed. batches >= 2.
std::vector<GroupGradientVariance> MinibatchGradientVariance(
    const std::vector<NamedParameters>& groups, int batches,
    const std::function<void(int)>& compute_gradients);

struct LatencyOptions {
  int warmup_batches = 30;
  int timed_batches = 200;
  // Called before and after each timed forward (device synchronisation on CUDA); may be empty.
  std::function<void()> synchronize;
};
struct Latency {
  double mean_ms = 0, std_ms = 0, median_ms = 0;
  double images_per_second = 0;
};
// Times logits(batch) under NoGradGuard.
Latency MeasureLatency(const LogitsFn& logits, const torch::Tensor& batch,
                       const LatencyOptions& options);

}  // namespace quartet::worker::train::analysis

#endif  // QUARTET_WORKER_TRAIN_ANALYSIS_H_
