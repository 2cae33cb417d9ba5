#include "agent/executor/git_checkout.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/agent/test_repo.h"

namespace kiln::agent {
namespace {

using testing::ReadFileOrEmpty;

class GitCheckoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_.Write("file.txt", "one\n");
    first_ = repo_.Commit("first");
    repo_.Git("tag v1");
    repo_.Write("file.txt", "two\n");
    second_ = repo_.Commit("second");
    repo_.Git("checkout -q -b feature");
    repo_.Write("file.txt", "feature\n");
    feature_ = repo_.Commit("feature");
    repo_.Git("checkout -q main");
  }

  // Checks out `version` into a fresh dir; returns the commit and sets *content to file.txt.
  absl::StatusOr<std::string> Checkout(const std::string& location, const std::string& version,
                                       std::string* content = nullptr) {
    const std::string dest = dir_.path() + "/src" + std::to_string(++count_);
    auto sha = CloneAndCheckout(location, version, dest, nullptr);
    if (content != nullptr) *content = ReadFileOrEmpty(dest + "/file.txt");
    return sha;
  }

  testing::TempDir dir_;
  testing::TestRepo repo_{dir_.path() + "/repo"};
  std::string first_, second_, feature_;
  int count_ = 0;
};

TEST_F(GitCheckoutTest, EmptyVersionChecksOutTheDefaultBranch) {
  std::string content;
  EXPECT_EQ(Checkout(repo_.dir(), "", &content).value_or(""), second_);
  EXPECT_EQ(content, "two\n");
}

TEST_F(GitCheckoutTest, ChecksOutAnOlderCommitByFullOrShortId) {
  std::string content;
  EXPECT_EQ(Checkout(repo_.dir(), first_, &content).value_or(""), first_);
  EXPECT_EQ(content, "one\n");
  EXPECT_EQ(Checkout(repo_.dir(), first_.substr(0, 8), &content).value_or(""), first_);
  EXPECT_EQ(content, "one\n");
}

TEST_F(GitCheckoutTest, ChecksOutBranchesAndTags) {
  std::string content;
  EXPECT_EQ(Checkout(repo_.dir(), "feature", &content).value_or(""), feature_);
  EXPECT_EQ(content, "feature\n");
  EXPECT_EQ(Checkout(repo_.dir(), "refs/heads/feature").value_or(""), feature_);
  EXPECT_EQ(Checkout(repo_.dir(), "v1", &content).value_or(""), first_);
  EXPECT_EQ(content, "one\n");
}

TEST_F(GitCheckoutTest, LeavesADetachedHead) {
  const std::string dest = dir_.path() + "/detached";
  ASSERT_TRUE(CloneAndCheckout(repo_.dir(), first_, dest, nullptr).ok());
  EXPECT_EQ(testing::Sh("git -C '" + dest + "' rev-parse HEAD"), first_ + "\n");
  EXPECT_EQ(testing::Sh("git -C '" + dest + "' symbolic-ref -q HEAD || echo detached"),
            "detached\n");
  EXPECT_EQ(testing::Sh("git -C '" + dest + "' status --porcelain"), "");
}

TEST_F(GitCheckoutTest, ClonesBareRepositoriesAndFileUrls) {
  const std::string bare = dir_.path() + "/bare.git";
  testing::Sh("git clone -q --bare '" + repo_.dir() + "' '" + bare + "'");
  EXPECT_EQ(Checkout(bare, "main").value_or(""), second_);
  EXPECT_EQ(Checkout("file://" + bare, "feature").value_or(""), feature_);
}

TEST_F(GitCheckoutTest, APullRequestHeadUnderRefsPullCanBeCheckedOut) {
  // GitHub keeps a fork's PR head only under refs/pull/<n>/head: no branch or tag reaches it.
  repo_.Git("checkout -q -b pr-branch");
  repo_.Write("file.txt", "pr\n");
  const std::string pr_head = repo_.Commit("pr");
  repo_.Git("update-ref refs/pull/7/head " + pr_head);
  repo_.Git("checkout -q main");
  repo_.Git("branch -q -D pr-branch");
  // (A local clone copies every advertised ref's objects, so only a network remote shows the
  // difference; this checks the extra fetch and its refspec work.)
  const std::string dest = dir_.path() + "/with";
  EXPECT_EQ(CloneAndCheckout(repo_.dir(), pr_head, dest, nullptr, "", "refs/pull/7/head")
                .value_or(""),
            pr_head);
  EXPECT_EQ(ReadFileOrEmpty(dest + "/file.txt"), "pr\n");
  // A remote without the ref is not an error.
  EXPECT_EQ(CloneAndCheckout(repo_.dir(), second_, dir_.path() + "/none", nullptr, "",
                             "refs/pull/99/head")
                .value_or(""),
            second_);
}

TEST_F(GitCheckoutTest, UnknownVersionIsNotFound) {
  EXPECT_EQ(Checkout(repo_.dir(), "no-such-branch").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GitCheckoutTest, MissingRepositoryIsUnavailable) {
  EXPECT_EQ(Checkout(dir_.path() + "/nope", "").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(GitCheckoutTest, CancelledCloneStops) {
  auto sha = CloneAndCheckout(repo_.dir(), "", dir_.path() + "/c", [] { return true; });
  EXPECT_EQ(sha.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace kiln::agent
