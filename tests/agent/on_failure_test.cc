#include "agent/executor/on_failure.h"

#include "gtest/gtest.h"

namespace kiln::agent {
namespace {

using Action = OnFailurePolicy::Action;

TEST(OnFailureTest, EmptyMeansDefaultTransitions) {
  auto p = ParseOnFailure("");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->action, Action::kDefault);
}

TEST(OnFailureTest, AbortAndContinueAreCaseInsensitive) {
  EXPECT_EQ(ParseOnFailure("ABORT")->action, Action::kAbort);
  EXPECT_EQ(ParseOnFailure("abort")->action, Action::kAbort);
  EXPECT_EQ(ParseOnFailure("Continue")->action, Action::kContinue);
}

TEST(OnFailureTest, RetryDefaultsToThreeRetriesOfAnyError) {
  auto p = ParseOnFailure("RETRY");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->action, Action::kRetry);
  EXPECT_EQ(p->retries, 3);
  EXPECT_EQ(p->pattern, ".*");
}

TEST(OnFailureTest, RetryWithCount) {
  auto p = ParseOnFailure("RETRY-5");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->retries, 5);
  EXPECT_EQ(p->pattern, ".*");
  EXPECT_EQ(ParseOnFailure("retry-0")->retries, 0);
}

TEST(OnFailureTest, RetryWithRegexKeepsItsCase) {
  auto p = ParseOnFailure("RETRY-Timeout.*x");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->retries, 3);
  EXPECT_EQ(p->pattern, "Timeout.*x");
}

TEST(OnFailureTest, RetryWithCountAndRegex) {
  auto p = ParseOnFailure("Retry-2-exit status (1|2)");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->retries, 2);
  EXPECT_EQ(p->pattern, "exit status (1|2)");
}

TEST(OnFailureTest, RejectsBadValues) {
  EXPECT_EQ(ParseOnFailure("SKIP").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOnFailure("RETRY-101").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOnFailure("RETRY-99999999999").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOnFailure("RETRY-(").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOnFailure("RETRY-").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OnFailureTest, ShouldRetryCountsRunsAndSearchesTheMessage) {
  auto p = ParseOnFailure("RETRY-2-status 7");
  ASSERT_TRUE(p.ok());
  const std::string msg = "Error while executing command: x. Reason: exit status 7";
  EXPECT_TRUE(ShouldRetry(*p, 1, msg));
  EXPECT_TRUE(ShouldRetry(*p, 2, msg));
  EXPECT_FALSE(ShouldRetry(*p, 3, msg));  // 1 run + 2 retries used up
  EXPECT_FALSE(ShouldRetry(*p, 1, "Error while executing command: x. Reason: exit status 1"));
  EXPECT_FALSE(ShouldRetry(*ParseOnFailure("ABORT"), 1, msg));
}

}  // namespace
}  // namespace kiln::agent
