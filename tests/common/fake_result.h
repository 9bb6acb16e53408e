// The result a fake worker reports for a candidate it did not train: `accuracy`, and `epochs`
// per-epoch rows rising to it. Used by the dashboard e2e fake worker and bench/coordinator_load.
#ifndef QUARTET_TESTS_COMMON_FAKE_RESULT_H_
#define QUARTET_TESTS_COMMON_FAKE_RESULT_H_

#include "quartet/v1/spec.pb.h"

namespace quartet::testing {

inline void FillFakeResult(double accuracy, int epochs, quartet::v1::Result* r) {
  r->set_test_accuracy(accuracy);
  r->set_test_loss(1 - accuracy);
  r->set_wall_seconds(1.5);
  r->set_parameter_count(1000);
  for (int e = 1; e <= epochs; ++e) {
    auto* m = r->add_epochs();
    m->set_epoch(e);
    m->set_train_loss(2.0 / e);
    m->set_test_loss(2.2 / e);
    m->set_train_accuracy(accuracy * e / epochs);
    m->set_test_accuracy(accuracy * e / epochs);
    m->set_learning_rate(1e-3);
  }
}

}  // namespace quartet::testing

#endif  // QUARTET_TESTS_COMMON_FAKE_RESULT_H_
