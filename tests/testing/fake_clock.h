// A manually advanced Clock for tests. Thread-safe.
#ifndef KILN_TESTS_TESTING_FAKE_CLOCK_H_
#define KILN_TESTS_TESTING_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace kiln::test {

class FakeClock final : public common::Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::test

#endif  // KILN_TESTS_TESTING_FAKE_CLOCK_H_
