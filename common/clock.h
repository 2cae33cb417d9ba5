// Time source, injected everywhere time matters so logic is testable without the wall clock
// (leveldb Env style). Implementations are thread-safe.
#ifndef KILN_COMMON_CLOCK_H_
#define KILN_COMMON_CLOCK_H_

#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kiln::common {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current wall-clock time.
  virtual absl::Time Now() const = 0;
  // Current time in Unix milliseconds.
  int64_t NowUnixMillis() const { return absl::ToUnixMillis(Now()); }
};

// The real clock. RealClock::Default() lives for the whole program.
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  static Clock* Default() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

}  // namespace kiln::common

#endif  // KILN_COMMON_CLOCK_H_
