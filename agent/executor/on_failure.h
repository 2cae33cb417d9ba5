// A buildspec phase's `on-failure` setting (reference/aws-semantics.md §1.6). Pure logic;
// thread-safe.
//
//   ""            default transitions (§1.8): the coordinator decides what runs next.
//   ABORT         the phase fails and the build skips to FINALIZING
//   (PhaseResult.skip_to_finalizing). CONTINUE      the phase fails (FAILED,
//   CODEBUILD_BUILD_SUCCEEDING=0 later) and the build goes on. RETRY         re-run the phase (its
//   commands, then its finally commands) up to 3 more times while RETRY-<n>     the error message
//   (the first failing command's PhaseContext.message, e.g. "Error RETRY-<re>    while executing
//   command: make. Reason: exit status 2") contains a match of the RE2 RETRY-<n>-<re> regex <re>
//   (default ".*", i.e. always); <n> is 0..100 extra runs (default 3).
//                 When the retries are used up the phase is FAILED with the default transitions.
// Keywords are case-insensitive ("Retry-3-.*timeout.*").
#ifndef KILN_AGENT_EXECUTOR_ON_FAILURE_H_
#define KILN_AGENT_EXECUTOR_ON_FAILURE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kiln::agent {

struct OnFailurePolicy {
  enum class Action { kDefault, kAbort, kContinue, kRetry };
  Action action = Action::kDefault;
  // kRetry: how many times the phase may run again after its first failure.
  int retries = 0;
  // kRetry: RE2 pattern searched for (partial match) in the error message.
  std::string pattern;
};

// Parses the `on-failure` value. Errors: InvalidArgument for an unknown keyword, a count outside
// 0..100 or a pattern RE2 cannot compile.
absl::StatusOr<OnFailurePolicy> ParseOnFailure(std::string_view text);

// True if `policy` (kRetry) allows another run after `runs_so_far` failed runs whose first error
// message was `message`.
bool ShouldRetry(const OnFailurePolicy& policy, int runs_so_far, const std::string& message);

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_ON_FAILURE_H_
