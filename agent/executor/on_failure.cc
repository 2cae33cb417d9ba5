#include "agent/executor/on_failure.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "re2/re2.h"

namespace kiln::agent {
namespace {

constexpr int kDefaultRetries = 3;
constexpr int kMaxRetries = 100;

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<OnFailurePolicy> ParseOnFailure(std::string_view text) {
  const std::string upper = absl::AsciiStrToUpper(absl::string_view(text.data(), text.size()));
  OnFailurePolicy policy;
  if (text.empty()) return policy;
  if (upper == "ABORT") {
    policy.action = OnFailurePolicy::Action::kAbort;
    return policy;
  }
  if (upper == "CONTINUE") {
    policy.action = OnFailurePolicy::Action::kContinue;
    return policy;
  }
  const std::string quoted = absl::StrCat("on-failure '", std::string(text), "': ");
  if (upper != "RETRY" && upper.rfind("RETRY-", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted,
                     "expected ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or "
                     "RETRY-<count>-<regex>"));
  }
  policy.action = OnFailurePolicy::Action::kRetry;
  policy.retries = kDefaultRetries;
  policy.pattern = ".*";
  if (upper == "RETRY") return policy;
  std::string_view rest = text.substr(6);  // keep the pattern's case
  const size_t dash = rest.find('-');
  std::string_view count;
  if (AllDigits(rest)) {
    count = rest;
    rest = {};
  } else if (dash != std::string_view::npos && AllDigits(rest.substr(0, dash))) {
    count = rest.substr(0, dash);
    rest = rest.substr(dash + 1);
  }
  if (!count.empty()) {
    if (count.size() > 3 ||
        !absl::SimpleAtoi(absl::string_view(count.data(), count.size()), &policy.retries) ||
        policy.retries > kMaxRetries) {
      return absl::InvalidArgumentError(absl::StrCat(quoted, "the retry count must be 0..100"));
    }
  }
  if (!rest.empty() || count.empty()) {
    policy.pattern = std::string(rest);
    const RE2 re(policy.pattern, RE2::Quiet);
    if (policy.pattern.empty() || !re.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          quoted, "invalid retry regex: ", policy.pattern.empty() ? "empty" : re.error()));
    }
  }
  return policy;
}

bool ShouldRetry(const OnFailurePolicy& policy, int runs_so_far, const std::string& message) {
  if (policy.action != OnFailurePolicy::Action::kRetry || runs_so_far > policy.retries)
    return false;
  const RE2 re(policy.pattern, RE2::Quiet);
  return re.ok() && RE2::PartialMatch(message, re);
}

}  // namespace kiln::agent
