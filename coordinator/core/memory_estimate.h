// Estimated peak device memory of training one candidate, for capability-aware leasing: a worker is
// leased only candidates whose estimate fits its device memory.
//
// The estimate is built from the zoo benchmark (bench/RESULTS.md, "Family zoo"): each family's peak
// memory above LibTorch's baseline for a forward and backward pass at batch 32 and its measured
// input side. Weights, gradients and AdamW's two moments take 16 bytes per parameter; the rest of
// the measurement is activations, scaled by the input area and the batch; a fixed device overhead
// (CUDA context, allocator slack) is added once. It is a planning figure, not a bound.
//
// Leasing compares the estimate at a micro-batch of 1 (kLeaseMicroBatch in the core): the worker
// halves its micro-batch on out-of-memory, so a candidate is refused only when it cannot train on
// the device at all. Thread-safe (no state).
#ifndef QUARTET_COORDINATOR_CORE_MEMORY_ESTIMATE_H_
#define QUARTET_COORDINATOR_CORE_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace quartet::coordinator {

// Bytes to train a combination of `models` (catalog model names) at `input_size` (0: each model's
// smallest input, at least 32) and `batch_size`. A model the catalog does not know counts as the
// largest measured family.
int64_t EstimateTrainingBytes(const std::vector<std::string>& models, int input_size,
                              int batch_size);

// Whether the table has a measurement for this canonical family name.
bool HasMeasuredMemory(const std::string& family);

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_CORE_MEMORY_ESTIMATE_H_
