// UNIFORM: the i-th draw is perm(i) for a seeded pseudo-random bijection perm of [0, size): a keyed
// alternating Feistel network over the smallest power-of-two domain >= size (< 2 * size), made a
// bijection of [0, size) by cycle-walking (expected < 2 network evaluations per draw). No rejection
// against the drawn set: memory is O(1) apart from ranks marked out of order.
#include <array>

#include "coordinator/space/sampler_internal.h"

namespace quartet::coordinator::space::internal {
namespace {

constexpr uint64_t kUniformTag = 0x756e69666f726dULL;  // "uniform"
constexpr int kRounds = 8;

class UniformSampler : public PermutationSampler {
 public:
  UniformSampler(uint64_t size, uint64_t seed) : PermutationSampler(size), size_(size) {
    int bits = 0;
    while ((uint64_t{1} << bits) < size) ++bits;
    lo_bits_ = bits / 2;
    hi_bits_ = bits - lo_bits_;
    lo_mask_ = (uint64_t{1} << lo_bits_) - 1;
    hi_mask_ = (uint64_t{1} << hi_bits_) - 1;
    for (int i = 0; i < kRounds; ++i) keys_[i] = DrawKey(seed, i, kUniformTag);
  }
  SamplerKind kind() const override { return SamplerKind::kUniform; }

 protected:
  uint64_t Forward(uint64_t index) const override {
    uint64_t x = Encrypt(index);
    while (x >= size_) x = Encrypt(x);
    return x;
  }
  uint64_t Inverse(uint64_t rank) const override {
    uint64_t x = Decrypt(rank);
    while (x >= size_) x = Decrypt(x);
    return x;
  }

 private:
  // One round changes one half by a keyed function of the other; each round is its own inverse.
  uint64_t Round(uint64_t x, int round) const {
    uint64_t lo = x & lo_mask_, hi = x >> lo_bits_;
    if (round % 2 == 0) {
      hi ^= Mix64(lo ^ keys_[round]) & hi_mask_;
    } else {
      lo ^= Mix64(hi ^ keys_[round]) & lo_mask_;
    }
    return (hi << lo_bits_) | lo;
  }
  uint64_t Encrypt(uint64_t x) const {
    for (int i = 0; i < kRounds; ++i) x = Round(x, i);
    return x;
  }
  uint64_t Decrypt(uint64_t x) const {
    for (int i = kRounds - 1; i >= 0; --i) x = Round(x, i);
    return x;
  }

  uint64_t size_;
  int lo_bits_, hi_bits_;
  uint64_t lo_mask_, hi_mask_;
  std::array<uint64_t, kRounds> keys_;
};

}  // namespace

std::unique_ptr<Sampler> NewUniformSampler(uint64_t size, uint64_t seed) {
  return std::make_unique<UniformSampler>(size, seed);
}

}  // namespace quartet::coordinator::space::internal
