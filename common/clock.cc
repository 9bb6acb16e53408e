#include "common/clock.h"

namespace quartet::common {

Clock* Clock::Real() {
  static Clock* const clock = new SystemClock();
  return clock;
}

}  // namespace quartet::common
