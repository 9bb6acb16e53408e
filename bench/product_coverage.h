// The product-space table of bench/sampler_coverage (--product): 29 families k = 4 x router {3} x
// learning rate {3} x weight decay (CONTINUOUS, 8 strata), every sampler, medians over seeds.
#ifndef QUARTET_BENCH_PRODUCT_COVERAGE_H_
#define QUARTET_BENCH_PRODUCT_COVERAGE_H_

#include <string>

namespace quartet::bench {

// Runs the product-space figures with seeds 1..seeds and returns the markdown table (with its
// notes).
std::string ProductCoverageTable(int seeds);

}  // namespace quartet::bench

#endif  // QUARTET_BENCH_PRODUCT_COVERAGE_H_
