// One conformance suite for every Store implementation (MemoryStore in the unit tier, PgStore
// against a real PostgreSQL in the integration tier). Instantiate with:
//   INSTANTIATE_TEST_SUITE_P(Memory, StoreConformanceTest,
//                            ::testing::Values(StoreFactory{"memory", [] { ... }}));
#ifndef QUARTET_TESTS_COMMON_STORE_CONFORMANCE_H_
#define QUARTET_TESTS_COMMON_STORE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <string>

#include "coordinator/storage/store.h"
#include "gtest/gtest.h"

namespace quartet::coordinator::testing {

struct StoreFactory {
  std::string name;
  // Returns a new, empty store.
  std::function<std::unique_ptr<Store>()> make;
};

inline std::string PrintToString(const StoreFactory& f) { return f.name; }

class StoreConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override;

  std::unique_ptr<Store> store_;
};

}  // namespace quartet::coordinator::testing

#endif  // QUARTET_TESTS_COMMON_STORE_CONFORMANCE_H_
