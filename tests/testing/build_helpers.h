// Test helpers for kiln.v1.Build records. Test-only.
#ifndef KILN_TESTS_TESTING_BUILD_HELPERS_H_
#define KILN_TESTS_TESTING_BUILD_HELPERS_H_

#include <cstdint>

#include "google/protobuf/util/time_util.h"
#include "kiln/v1/build.pb.h"

namespace kiln::test {

// The first phase of type `t` in `b`, or nullptr.
inline const kiln::v1::BuildPhase* FindPhase(const kiln::v1::Build& b, kiln::v1::BuildPhaseType::Value t) {
  for (const auto& p : b.phases()) {
    if (p.phase_type() == t) return &p;
  }
  return nullptr;
}

// A timestamp in Unix milliseconds.
inline int64_t Millis(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
}

}  // namespace kiln::test

#endif  // KILN_TESTS_TESTING_BUILD_HELPERS_H_
