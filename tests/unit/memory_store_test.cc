// The Store conformance suite against MemoryStore.
#include "coordinator/storage/memory_store.h"

#include "tests/common/store_conformance.h"

namespace quartet::coordinator::testing {

INSTANTIATE_TEST_SUITE_P(Memory, StoreConformanceTest,
                         ::testing::Values(StoreFactory{
                             "memory", [] { return std::make_unique<MemoryStore>(); }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace quartet::coordinator::testing
