// The ADAPTIVE sampler's additive accuracy model and the search for the best combination under a
// posterior sample, shared by the family-space and product-space samplers. Internal to
// coordinator/space (see adaptive_sampler.cc for the model's description).
#ifndef QUARTET_COORDINATOR_SPACE_ADAPTIVE_MODEL_H_
#define QUARTET_COORDINATOR_SPACE_ADAPTIVE_MODEL_H_

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {

inline constexpr double kFamilyRidge = 1.0;  // prior weight of theta_f = 0, in observations
inline constexpr double kPairRidge = 3.0;    // prior weight of phi_pq = 0, in observations
inline constexpr int kBackfitRounds = 3;
inline constexpr double kFixedPointScale = 4294967296.0;  // 2^32
inline constexpr double kMaxAbsAccuracy = 1048576.0;      // 2^20: keeps fixed-point sums in range
inline constexpr int kConstructiveAttempts = 16;

// Fixed-point value of an accuracy (clamped to +-kMaxAbsAccuracy); sums of these are exact, so
// statistics do not depend on the order observations arrive in. Precondition: finite.
inline __int128 FixedPoint(double accuracy) {
  accuracy = std::clamp(accuracy, -kMaxAbsAccuracy, kMaxAbsAccuracy);
  return static_cast<__int128>(std::llround(accuracy * kFixedPointScale));
}

class AdditiveModel {
 public:
  explicit AdditiveModel(const FreeSpace* space) : space_(space) {
    const int m = space->m();
    family_n_.assign(m, 0);
    family_sum_.assign(m, 0);
    family_pair_n_.assign(m * m, 0);
    pair_n_.assign(space->num_pairs(), 0);
    pair_sum_.assign(space->num_pairs(), 0);
    if (space->k() >= 3) {
      triple_n_.assign(space->num_triples(), 0);
      pair_family_triple_.assign(space->num_pairs() * m, -1);
      for (int a = 0; a < m; ++a) {
        for (int b = a + 1; b < m; ++b) {
          for (int f = 0; f < m; ++f) {
            if (f == a || f == b) continue;
            int t[3] = {a, b, f};
            std::sort(t, t + 3);
            pair_family_triple_[space->Pair(a, b) * m + f] = space->Triple(t[0], t[1], t[2]);
          }
        }
      }
    }
  }

  void Add(const int* c, double accuracy) {
    if (!std::isfinite(accuracy)) return;
    const __int128 q = FixedPoint(accuracy);
    const int m = space_->m(), k = space_->k();
    ++n_;
    sum_ += q;
    sum_sq_ += q * q;
    for (int i = 0; i < k; ++i) {
      ++family_n_[c[i]];
      family_sum_[c[i]] += q;
      for (int j = i + 1; j < k; ++j) {
        ++family_pair_n_[c[i] * m + c[j]];
        ++family_pair_n_[c[j] * m + c[i]];
        const int p = space_->Pair(c[i], c[j]);
        ++pair_n_[p];
        pair_sum_[p] += q;
        for (int l = j + 1; l < k; ++l) ++triple_n_[space_->Triple(c[i], c[j], c[l])];
      }
    }
    ++version_;
  }

  int64_t observations() const { return n_; }

  struct Fit {
    std::vector<double> theta, theta_sd;  // per free family
    std::vector<double> phi, phi_sd;      // per pair of free families
    double bias = 0;                      // intercept b
    double sigma = 0;
  };

  // The approximate posterior for the current statistics (cached until the next Add).
  const Fit& Estimate() {
    if (fitted_version_ == version_) return fit_;
    fitted_version_ = version_;
    const int m = space_->m(), num_pairs = space_->num_pairs(), d = m + 1;
    const double n = static_cast<double>(n_);
    const double sum = static_cast<double>(sum_) / kFixedPointScale;
    const double sum_sq = static_cast<double>(sum_sq_) / (kFixedPointScale * kFixedPointScale);
    // Family block [b, theta]: A = [[N, n_f^T], [n_f, n_fg + ridge I]].
    std::vector<double> chol(d * d, 0.0);
    chol[0] = n;
    for (int f = 0; f < m; ++f) {
      chol[(f + 1) * d] = chol[f + 1] = static_cast<double>(family_n_[f]);
      for (int g = 0; g < m; ++g) {
        chol[(f + 1) * d + g + 1] =
            f == g ? family_n_[f] + kFamilyRidge : static_cast<double>(family_pair_n_[f * m + g]);
      }
    }
    CholeskyInPlace(&chol, d);
    // coupling[p * d + j]: observations containing pair p and feature j (j = 0: the bias; j = f +
    // 1: family f), so X_pair' X_family = coupling.
    coupling_.assign(static_cast<size_t>(num_pairs) * d, 0.0);
    std::vector<double> pair_sum(num_pairs);
    for (int a = 0, p = 0; a < m; ++a) {
      for (int b = a + 1; b < m; ++b, ++p) {
        pair_sum[p] = static_cast<double>(pair_sum_[p]) / kFixedPointScale;
        double* row = &coupling_[static_cast<size_t>(p) * d];
        const double np = static_cast<double>(pair_n_[p]);
        row[0] = row[a + 1] = row[b + 1] = np;
        if (triple_n_.empty() || np == 0) continue;
        const int* tri = &pair_family_triple_[static_cast<size_t>(p) * m];
        for (int f = 0; f < m; ++f) {
          if (tri[f] >= 0) row[f + 1] = static_cast<double>(triple_n_[tri[f]]);
        }
      }
    }
    fit_.theta.assign(m, 0.0);
    fit_.phi.assign(num_pairs, 0.0);
    std::vector<double> rhs(d), x(d);
    double family_only_rss = 0;
    for (int round = 0; round <= kBackfitRounds; ++round) {
      // Family block given phi: A [b, theta] = X_family' (y - X_pair phi).
      rhs[0] = sum;
      for (int f = 0; f < m; ++f) {
        rhs[f + 1] = static_cast<double>(family_sum_[f]) / kFixedPointScale;
      }
      if (round > 0) {
        for (int p = 0; p < num_pairs; ++p) {
          const double phi = fit_.phi[p];
          if (phi == 0.0) continue;
          const double* row = &coupling_[static_cast<size_t>(p) * d];
          for (int j = 0; j < d; ++j) rhs[j] -= row[j] * phi;
        }
      }
      CholeskySolve(chol, d, rhs, &x);
      fit_.bias = x[0];
      for (int f = 0; f < m; ++f) fit_.theta[f] = x[f + 1];
      if (round == 0) {
        // RSS of the ridge fit: y'y - beta'X'y - ridge * |theta|^2.
        family_only_rss = sum_sq;
        for (int i = 0; i < d; ++i) family_only_rss -= x[i] * rhs[i];
        for (int f = 0; f < m; ++f) family_only_rss -= kFamilyRidge * x[f + 1] * x[f + 1];
      }
      if (round == kBackfitRounds) break;
      // Pair block given (b, theta), mean-field: shrunk mean residual of the pair's observations.
      for (int p = 0; p < num_pairs; ++p) {
        const double np = static_cast<double>(pair_n_[p]);
        if (np == 0) {
          fit_.phi[p] = 0;
          continue;
        }
        fit_.phi[p] = (pair_sum[p] - Dot(&coupling_[static_cast<size_t>(p) * d], x.data(), d)) /
                      (np + kPairRidge);
      }
    }
    double variance;
    if (n > d) {
      variance = family_only_rss / (n - d);
    } else if (n > 1) {
      variance = (sum_sq - sum * sum / n) / (n - 1);
    } else {
      variance = 0;
    }
    fit_.sigma = std::sqrt(std::max(variance, 1e-12));
    fit_.theta_sd.resize(m);
    for (int f = 0; f < m; ++f)
      fit_.theta_sd[f] = fit_.sigma / std::sqrt(family_n_[f] + kFamilyRidge);
    fit_.phi_sd.resize(num_pairs);
    for (int p = 0; p < num_pairs; ++p)
      fit_.phi_sd[p] = fit_.sigma / std::sqrt(pair_n_[p] + kPairRidge);
    return fit_;
  }

 private:
  // Lower-triangular Cholesky factor of a symmetric positive definite d x d matrix, in place.
  static void CholeskyInPlace(std::vector<double>* a, int d) {
    std::vector<double>& m = *a;
    for (int j = 0; j < d; ++j) {
      double diag = m[j * d + j];
      for (int k = 0; k < j; ++k) diag -= m[j * d + k] * m[j * d + k];
      diag = std::sqrt(std::max(diag, 1e-12));
      m[j * d + j] = diag;
      for (int i = j + 1; i < d; ++i) {
        double v = m[i * d + j];
        for (int k = 0; k < j; ++k) v -= m[i * d + k] * m[j * d + k];
        m[i * d + j] = v / diag;
      }
    }
  }
  // Dot product with four accumulators (fixed order: deterministic).
  static double Dot(const double* a, const double* b, int n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
      s0 += a[i] * b[i];
      s1 += a[i + 1] * b[i + 1];
      s2 += a[i + 2] * b[i + 2];
      s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
  }
  static void CholeskySolve(const std::vector<double>& l, int d, const std::vector<double>& b,
                            std::vector<double>* x) {
    std::vector<double>& y = *x;
    for (int i = 0; i < d; ++i) {
      double v = b[i];
      for (int k = 0; k < i; ++k) v -= l[i * d + k] * y[k];
      y[i] = v / l[i * d + i];
    }
    for (int i = d - 1; i >= 0; --i) {
      double v = y[i];
      for (int k = i + 1; k < d; ++k) v -= l[k * d + i] * y[k];
      y[i] = v / l[i * d + i];
    }
  }

  const FreeSpace* space_;
  int64_t n_ = 0;
  __int128 sum_ = 0, sum_sq_ = 0;
  std::vector<int64_t> family_n_;
  std::vector<__int128> family_sum_;
  std::vector<int64_t> family_pair_n_;  // m x m co-occurrence counts
  std::vector<int64_t> pair_n_;
  std::vector<__int128> pair_sum_;
  std::vector<int64_t> triple_n_;
  std::vector<int> pair_family_triple_;  // [pair * m + f] -> triple index, -1 when f is in the pair
  uint64_t version_ = 0, fitted_version_ = std::numeric_limits<uint64_t>::max();
  Fit fit_;
  std::vector<double> coupling_;  // scratch of Estimate
};

// The best combination under a sampled additive score theta_f + sum_{p<q} phi_pq among those
// `available(rank)` accepts: exact on exhaustive spaces (a scan in rank order with partial sums,
// ties keep the lowest rank), otherwise greedy construction (later attempts from a random first
// family) plus single-swap hill climbing, the first available result winning. Returns
// space.size() when nothing available was found. Not thread-safe (scratch buffers).
class CombinationSearch {
 public:
  explicit CombinationSearch(const FreeSpace* space) : space_(space) {}

  template <typename Available>
  uint64_t Best(const std::vector<double>& theta, const std::vector<double>& phi, Rng* rng,
                Available&& available) {
    theta_ = &theta;
    phi_ = &phi;
    if (space_->exhaustive()) {
      return Scan([&](uint64_t r) { return available(r); });
    }
    return Construct(rng, [&](uint64_t r) { return available(r); });
  }

 private:
  template <typename Available>
  uint64_t Scan(Available&& available) {
    const int m = space_->m(), k = space_->k();
    phi_matrix_.assign(m * m, 0.0);
    for (int a = 0; a < m; ++a) {
      for (int b = a + 1; b < m; ++b) {
        phi_matrix_[a * m + b] = phi_matrix_[b * m + a] = (*phi_)[space_->Pair(a, b)];
      }
    }
    gain_.resize(k * m);
    std::copy(theta_->begin(), theta_->end(), gain_.begin());
    scan_rank_ = 0;
    scan_best_ = space_->size();
    scan_best_score_ = 0;
    ScanLevel(0, 0, 0.0, available);
    return scan_best_;
  }

  // gain_[level][x] is the score x adds to the families chosen at the levels above, so a leaf
  // costs one addition.
  template <typename Available>
  void ScanLevel(int level, int start, double partial, Available& available) {
    const int m = space_->m(), k = space_->k();
    const double* gain = &gain_[level * m];
    if (level == k - 1) {
      for (int x = start; x < m; ++x, ++scan_rank_) {
        const double s = partial + gain[x];
        if ((scan_best_ == space_->size() || s > scan_best_score_) && available(scan_rank_)) {
          scan_best_ = scan_rank_;
          scan_best_score_ = s;
        }
      }
      return;
    }
    double* next = &gain_[(level + 1) * m];
    for (int x = start; x <= m - (k - level); ++x) {
      const double* row = &phi_matrix_[x * m];
      for (int y = x + 1; y < m; ++y) next[y] = gain[y] + row[y];
      ScanLevel(level + 1, x + 1, partial + gain[x], available);
    }
  }

  template <typename Available>
  uint64_t Construct(Rng* rng, Available&& available) {
    const int m = space_->m(), k = space_->k();
    const std::vector<double>& theta = *theta_;
    const std::vector<double>& phi = *phi_;
    int c[kMaxK];
    for (int attempt = 0; attempt < kConstructiveAttempts; ++attempt) {
      bool in[kMaxN] = {};
      int num = 0;
      if (attempt > 0) {
        c[num] = static_cast<int>(rng->Below(m));
        in[c[num++]] = true;
      }
      while (num < k) {
        int best_f = -1;
        double best_gain = 0;
        for (int f = 0; f < m; ++f) {
          if (in[f]) continue;
          double gain = theta[f];
          for (int i = 0; i < num; ++i) gain += phi[space_->Pair(f, c[i])];
          if (best_f < 0 || gain > best_gain) {
            best_f = f;
            best_gain = gain;
          }
        }
        in[best_f] = true;
        c[num++] = best_f;
      }
      HillClimb(c, in);
      std::sort(c, c + k);
      const uint64_t r = space_->Rank(c);
      if (available(r)) return r;
    }
    return space_->size();
  }

  // Single swaps (a member for a non-member) while one raises the score.
  void HillClimb(int* c, bool* in) const {
    const int m = space_->m(), k = space_->k();
    const std::vector<double>& theta = *theta_;
    const std::vector<double>& phi = *phi_;
    for (bool improved = true; improved;) {
      improved = false;
      for (int i = 0; i < k && !improved; ++i) {
        for (int f = 0; f < m && !improved; ++f) {
          if (in[f]) continue;
          double delta = theta[f] - theta[c[i]];
          for (int j = 0; j < k; ++j) {
            if (j != i) delta += phi[space_->Pair(f, c[j])] - phi[space_->Pair(c[i], c[j])];
          }
          if (delta > 1e-12) {
            in[c[i]] = false;
            in[f] = true;
            c[i] = f;
            improved = true;
          }
        }
      }
    }
  }

  const FreeSpace* space_;
  const std::vector<double>* theta_ = nullptr;
  const std::vector<double>* phi_ = nullptr;
  std::vector<double> phi_matrix_, gain_;
  uint64_t scan_rank_ = 0, scan_best_ = 0;
  double scan_best_score_ = 0;
};

}  // namespace quartet::coordinator::space::internal

#endif  // QUARTET_COORDINATOR_SPACE_ADAPTIVE_MODEL_H_
