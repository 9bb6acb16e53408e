#include "coordinator/space/combinatorics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace quartet::coordinator::space {
namespace {

// Pascal's triangle up to kMaxN x kMaxK, built with overflow checks (every entry fits: the largest
// is C(64, 8) < 2^33).
struct BinomialTable {
  uint64_t c[kMaxN + 1][kMaxK + 1] = {};
  BinomialTable() {
    for (int n = 0; n <= kMaxN; ++n) {
      c[n][0] = 1;
      for (int k = 1; k <= kMaxK; ++k) {
        if (n == 0) continue;
        uint64_t sum = 0;
        if (__builtin_add_overflow(c[n - 1][k - 1], c[n - 1][k], &sum)) std::abort();
        c[n][k] = sum;
      }
    }
  }
};

const BinomialTable& Table() {
  static const BinomialTable* const table = new BinomialTable();
  return *table;
}

absl::Status CheckNK(int n, int k) {
  if (n < 0 || n > kMaxN) {
    return absl::InvalidArgumentError(absl::StrCat("n = ", n, " is outside [0, ", kMaxN, "]"));
  }
  if (k < 0 || k > kMaxK) {
    return absl::InvalidArgumentError(absl::StrCat("k = ", k, " is outside [0, ", kMaxK, "]"));
  }
  if (k > n) return absl::InvalidArgumentError(absl::StrCat("k = ", k, " exceeds n = ", n));
  return absl::OkStatus();
}

}  // namespace

uint64_t Binomial(int n, int k) {
  if (n < 0 || k < 0 || n > kMaxN || k > kMaxK || k > n) return 0;
  return Table().c[n][k];
}

absl::StatusOr<uint64_t> CheckedBinomial(int n, int k) {
  if (n < 0 || n > kMaxN) {
    return absl::InvalidArgumentError(absl::StrCat("n = ", n, " is outside [0, ", kMaxN, "]"));
  }
  if (k < 0 || k > kMaxK) {
    return absl::InvalidArgumentError(absl::StrCat("k = ", k, " is outside [0, ", kMaxK, "]"));
  }
  return Binomial(n, k);
}

absl::StatusOr<uint64_t> Rank(absl::Span<const int> combination, int n) {
  const int k = static_cast<int>(combination.size());
  if (absl::Status s = CheckNK(n, k); !s.ok()) return s;
  for (int i = 0; i < k; ++i) {
    if (combination[i] < 0 || combination[i] >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("combination value ", combination[i], " is outside [0, ", n, ")"));
    }
    if (i > 0 && combination[i] <= combination[i - 1]) {
      return absl::InvalidArgumentError(
          "combination is not sorted or has duplicates (values must strictly increase)");
    }
  }
  return RankUnchecked(combination.data(), k, n);
}

absl::StatusOr<std::vector<int>> Unrank(uint64_t rank, int n, int k) {
  if (absl::Status s = CheckNK(n, k); !s.ok()) return s;
  const uint64_t size = Binomial(n, k);
  if (rank >= size) {
    return absl::OutOfRangeError(
        absl::StrCat("rank ", rank, " is outside [0, C(", n, ", ", k, ") = ", size, ")"));
  }
  std::vector<int> out(k);
  UnrankUnchecked(rank, n, k, out.data());
  return out;
}

uint64_t RankUnchecked(const int* combination, int k, int n) {
  const BinomialTable& t = Table();
  uint64_t sum = 0;
  for (int i = 0; i < k; ++i) sum += t.c[n - 1 - combination[i]][k - i];
  return t.c[n][k] - 1 - sum;
}

void UnrankUnchecked(uint64_t rank, int n, int k, int* out) {
  const BinomialTable& t = Table();
  // x = sum_i C(n - 1 - c_i, k - i) with n - 1 - c_i strictly decreasing: pick each term greedily.
  uint64_t x = t.c[n][k] - 1 - rank;
  int v = n - 1;  // candidate for n - 1 - c_i
  for (int i = 0; i < k; ++i) {
    const int j = k - i;
    while (t.c[v][j] > x) --v;
    x -= t.c[v][j];
    out[i] = n - 1 - v;
    --v;
  }
}

int PairIndex(int a, int b, int n) {
  if (a > b) std::swap(a, b);
  // Pairs starting below a: sum_{i < a} (n - 1 - i) = C(n, 2) - C(n - a, 2).
  return static_cast<int>(Binomial(n, 2) - Binomial(n - a, 2)) + (b - a - 1);
}

int TripleIndex(int a, int b, int c, int n) {
  int v[3] = {a, b, c};
  std::sort(v, v + 3);
  return static_cast<int>(RankUnchecked(v, 3, n));
}

}  // namespace quartet::coordinator::space
