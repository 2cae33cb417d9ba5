// CodeBuild filter groups (reference §2.1): event mapping, what each filter type sees, and the
// OR/AND/exclude rules, one test per rule.
#include "coordinator/http/webhook_filter.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::coordinator {
namespace {

using ::kiln::v1::Project;
using ::kiln::v1::WebhookFilter;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct F {
  WebhookFilter::Type type;
  std::string pattern;
  bool exclude = false;
};

Project WithGroups(const std::vector<std::vector<F>>& groups, const std::string& branch = "main") {
  Project p;
  p.set_name("flask-app");
  p.mutable_source()->set_branch(branch);
  for (const auto& group : groups) {
    kiln::v1::WebhookFilterGroup* g = p.add_webhook_filter_groups();
    for (const F& f : group) {
      WebhookFilter* filter = g->add_filters();
      filter->set_type(f.type);
      filter->set_pattern(f.pattern);
      filter->set_exclude_matched_pattern(f.exclude);
    }
  }
  return p;
}

WebhookEvent Push(const std::string& ref = "refs/heads/main") {
  WebhookEvent e;
  e.type = "PUSH";
  e.head_ref = ref;
  e.file_paths = {"src/app.py", "README.md"};
  e.commit_message = "Fix the login page";
  e.actor_account_id = "583231";
  return e;
}

WebhookEvent PullRequest(const std::string& type = "PULL_REQUEST_CREATED") {
  WebhookEvent e;
  e.type = type;
  e.head_ref = "refs/heads/feature/login";
  e.base_ref = "refs/heads/main";
  e.actor_account_id = "42";
  return e;
}

bool Builds(const Project& p, const WebhookEvent& e) { return EvaluateFilterGroups(p, e).build; }
std::string Reason(const Project& p, const WebhookEvent& e) { return EvaluateFilterGroups(p, e).reason; }

// ---- event mapping (§2.1 table) ----

TEST(GitHubEventType, MapsTheReferenceTable) {
  EXPECT_EQ(GitHubEventType("push", "", false), "PUSH");
  EXPECT_EQ(GitHubEventType("pull_request", "opened", false), "PULL_REQUEST_CREATED");
  EXPECT_EQ(GitHubEventType("pull_request", "reopened", false), "PULL_REQUEST_REOPENED");
  EXPECT_EQ(GitHubEventType("pull_request", "synchronize", false), "PULL_REQUEST_UPDATED");
  EXPECT_EQ(GitHubEventType("pull_request", "closed", true), "PULL_REQUEST_MERGED");
  EXPECT_EQ(GitHubEventType("pull_request", "closed", false), "PULL_REQUEST_CLOSED");
}

TEST(GitHubEventType, OtherActionsAndEventsMapToNothing) {
  for (const char* action : {"edited", "labeled", "assigned", "review_requested", ""}) {
    EXPECT_EQ(GitHubEventType("pull_request", action, false), "") << action;
  }
  EXPECT_EQ(GitHubEventType("ping", "", false), "");
  EXPECT_EQ(GitHubEventType("issues", "opened", false), "");
  EXPECT_EQ(GitHubEventType("release", "released", false), "");  // not supported by Kiln
}

TEST(EvaluateFilterGroups, EventWithoutTypeNeverBuilds) {
  WebhookEvent e = Push();
  e.type = "";
  EXPECT_FALSE(Builds(WithGroups({}), e));
  EXPECT_FALSE(Builds(WithGroups({{{WebhookFilter::EVENT, "PUSH", /*exclude=*/true}}}), e));
}

// ---- what the filters see ----

TEST(WebhookEventFromGitHub, PushTakesRefFilesMessageAndSender) {
  GitHubDelivery d;
  d.event = "push";
  d.ref = "refs/tags/v1.0";
  d.changed_files = {"a", "b"};
  d.head_commit_message = "release";
  d.sender_id = "583231";
  WebhookEvent e = WebhookEventFromGitHub(d);
  EXPECT_EQ(e.type, "PUSH");
  EXPECT_EQ(e.head_ref, "refs/tags/v1.0");
  EXPECT_EQ(e.base_ref, "");
  EXPECT_THAT(e.file_paths, ElementsAre("a", "b"));
  EXPECT_EQ(e.commit_message, "release");
  EXPECT_EQ(e.actor_account_id, "583231");
  EXPECT_FALSE(e.deleted);
}

TEST(WebhookEventFromGitHub, PullRequestRefsAreNormalisedAndHaveNoFiles) {
  GitHubDelivery d;
  d.event = "pull_request";
  d.action = "closed";
  d.pull_request_merged = true;
  d.pr_head_ref = "feature/login";
  d.pr_base_ref = "main";
  d.changed_files = {"ignored"};  // never filled for PRs by the parser; ignored anyway
  d.sender_id = "7";
  WebhookEvent e = WebhookEventFromGitHub(d);
  EXPECT_EQ(e.type, "PULL_REQUEST_MERGED");
  EXPECT_EQ(e.head_ref, "refs/heads/feature/login");
  EXPECT_EQ(e.base_ref, "refs/heads/main");
  EXPECT_THAT(e.file_paths, IsEmpty());
  EXPECT_EQ(e.commit_message, "");
  EXPECT_EQ(e.actor_account_id, "7");
}

TEST(NormalizeBranchRef, PrefixesBareBranchNamesOnly) {
  EXPECT_EQ(NormalizeBranchRef("main"), "refs/heads/main");
  EXPECT_EQ(NormalizeBranchRef("feature/x"), "refs/heads/feature/x");
  EXPECT_EQ(NormalizeBranchRef("refs/heads/main"), "refs/heads/main");
  EXPECT_EQ(NormalizeBranchRef(""), "");
}

// ---- rules ----

TEST(EvaluateFilterGroups, WithoutGroupsOnlyPushToTheProjectBranchBuilds) {
  EXPECT_TRUE(Builds(WithGroups({}), Push()));
  EXPECT_TRUE(Builds(WithGroups({}, ""), Push()));  // branch defaults to main
  EXPECT_FALSE(Builds(WithGroups({}), Push("refs/heads/dev")));
  EXPECT_FALSE(Builds(WithGroups({}), Push("refs/tags/main")));
  EXPECT_FALSE(Builds(WithGroups({}), PullRequest()));
  EXPECT_EQ(Reason(WithGroups({}), Push("refs/heads/dev")),
            "no filter groups: only a PUSH to refs/heads/main builds, not PUSH \"refs/heads/dev\"");
}

TEST(EvaluateFilterGroups, DeletedPushNeverBuilds) {
  WebhookEvent e = Push();
  e.deleted = true;
  EXPECT_FALSE(Builds(WithGroups({}), e));
  EXPECT_FALSE(Builds(WithGroups({{{WebhookFilter::EVENT, "PUSH"}}}), e));
  EXPECT_EQ(Reason(WithGroups({}), e), "refs/heads/main was deleted; nothing to build");
}

TEST(EvaluateFilterGroups, GroupsAreOred) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PULL_REQUEST_CREATED"}},
                          {{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::HEAD_REF, "^refs/tags/"}}});
  EXPECT_TRUE(Builds(p, PullRequest()));       // group 1
  EXPECT_TRUE(Builds(p, Push("refs/tags/v1")));  // group 2
  EXPECT_FALSE(Builds(p, Push("refs/heads/main")));
  EXPECT_EQ(Reason(p, Push("refs/heads/main")),
            "group 1: EVENT \"PULL_REQUEST_CREATED\" did not match \"PUSH\"; "
            "group 2: HEAD_REF \"^refs/tags/\" did not match \"refs/heads/main\"");
}

TEST(EvaluateFilterGroups, FiltersInAGroupAreAnded) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH"},
                           {WebhookFilter::HEAD_REF, "^refs/heads/main$"},
                           {WebhookFilter::FILE_PATH, "^src/"}}});
  EXPECT_TRUE(Builds(p, Push()));
  WebhookEvent docs_only = Push();
  docs_only.file_paths = {"docs/index.md"};
  EXPECT_FALSE(Builds(p, docs_only));
  EXPECT_FALSE(Builds(p, Push("refs/heads/dev")));
  // The reason names the group and the first filter that failed.
  EXPECT_EQ(Reason(p, Push("refs/heads/dev")),
            "group 1: HEAD_REF \"^refs/heads/main$\" did not match \"refs/heads/dev\"");
}

TEST(EvaluateFilterGroups, ExcludeMatchedPatternInvertsAFilter) {
  // §2.1 example: build every push except tag pushes.
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH"},
                           {WebhookFilter::HEAD_REF, "^refs/tags/.*", /*exclude=*/true}}});
  EXPECT_TRUE(Builds(p, Push("refs/heads/anything")));
  EXPECT_FALSE(Builds(p, Push("refs/tags/v1")));
  EXPECT_EQ(Reason(p, Push("refs/tags/v1")),
            "group 1: HEAD_REF \"^refs/tags/.*\" (exclude_matched_pattern) matched \"refs/tags/v1\"");
}

TEST(EvaluateFilterGroups, EventPatternIsACommaSeparatedList) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH, PULL_REQUEST_CREATED,PULL_REQUEST_UPDATED"}}});
  EXPECT_TRUE(Builds(p, Push()));
  EXPECT_TRUE(Builds(p, PullRequest("PULL_REQUEST_CREATED")));
  EXPECT_TRUE(Builds(p, PullRequest("PULL_REQUEST_UPDATED")));
  EXPECT_FALSE(Builds(p, PullRequest("PULL_REQUEST_MERGED")));
  // Event names are whole words, not regular expressions.
  EXPECT_FALSE(Builds(WithGroups({{{WebhookFilter::EVENT, "PULL_REQUEST_CREATED"}}}),
                      PullRequest("PULL_REQUEST_CREATED_X")));
}

TEST(EvaluateFilterGroups, PatternsAreUnanchoredSearches) {
  EXPECT_TRUE(Builds(WithGroups({{{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::HEAD_REF, "main"}}}),
                     Push("refs/heads/main")));
  EXPECT_FALSE(Builds(WithGroups({{{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::HEAD_REF, "^main"}}}),
                      Push("refs/heads/main")));
}

TEST(EvaluateFilterGroups, HeadRefOfPullRequestIsNormalised) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PULL_REQUEST_CREATED"},
                           {WebhookFilter::HEAD_REF, "^refs/heads/feature/"}}});
  EXPECT_TRUE(Builds(p, PullRequest()));
}

TEST(EvaluateFilterGroups, BaseRefMatchesPullRequestsOnly) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH, PULL_REQUEST_CREATED"},
                           {WebhookFilter::BASE_REF, "^refs/heads/main$"}}});
  EXPECT_TRUE(Builds(p, PullRequest()));
  WebhookEvent to_dev = PullRequest();
  to_dev.base_ref = "refs/heads/dev";
  EXPECT_FALSE(Builds(p, to_dev));
  EXPECT_FALSE(Builds(p, Push()));  // a push has no base ref
  EXPECT_THAT(Reason(p, Push()), HasSubstr("there is no base ref"));
  // ...so with exclude it passes.
  EXPECT_TRUE(Builds(WithGroups({{{WebhookFilter::EVENT, "PUSH"},
                                  {WebhookFilter::BASE_REF, "^refs/heads/main$", true}}}),
                     Push()));
}

TEST(EvaluateFilterGroups, FilePathMatchesAnyChangedFile) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::FILE_PATH, "^src/.*\\.py$"}}});
  EXPECT_TRUE(Builds(p, Push()));  // src/app.py (README.md does not matter)
  WebhookEvent e = Push();
  e.file_paths = {"README.md", "docs/a.md"};
  EXPECT_FALSE(Builds(p, e));
  EXPECT_EQ(Reason(p, e),
            "group 1: FILE_PATH \"^src/.*\\\\.py$\" did not match any of the 2 changed files");
}

TEST(EvaluateFilterGroups, FilePathWithExcludePassesOnlyIfNoFileMatches) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH"},
                           {WebhookFilter::FILE_PATH, "^docs/", /*exclude=*/true}}});
  WebhookEvent e = Push();
  EXPECT_TRUE(Builds(p, e));
  e.file_paths = {"src/a.py", "docs/x.md"};
  EXPECT_FALSE(Builds(p, e));
}

TEST(EvaluateFilterGroups, FilePathSeesNoFilesOnPullRequestsOrEmptyPushes) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH, PULL_REQUEST_CREATED"},
                           {WebhookFilter::FILE_PATH, ".*"}}});
  EXPECT_FALSE(Builds(p, PullRequest()));
  EXPECT_THAT(Reason(p, PullRequest()), HasSubstr("GitHub sends none with pull-request events"));
  WebhookEvent tag = Push("refs/tags/v1");
  tag.file_paths.clear();  // §2.1: a tag push without commits has an empty set
  EXPECT_FALSE(Builds(p, tag));
  EXPECT_TRUE(Builds(WithGroups({{{WebhookFilter::EVENT, "PULL_REQUEST_CREATED"},
                                  {WebhookFilter::FILE_PATH, "^docs/", true}}}),
                     PullRequest()));
}

TEST(EvaluateFilterGroups, CommitMessageIsSearched) {
  Project skip_ci = WithGroups({{{WebhookFilter::EVENT, "PUSH"},
                                 {WebhookFilter::COMMIT_MESSAGE, "\\[skip ci\\]", true}}});
  EXPECT_TRUE(Builds(skip_ci, Push()));
  WebhookEvent e = Push();
  e.commit_message = "Update docs [skip ci]\n\nmore text";
  EXPECT_FALSE(Builds(skip_ci, e));
  EXPECT_EQ(Reason(skip_ci, e),
            "group 1: COMMIT_MESSAGE \"\\\\[skip ci\\\\]\" (exclude_matched_pattern) matched "
            "\"Update docs [skip ci]\\n\\nmore text\"");
  // A pull request has no commit message: a positive pattern fails on it.
  EXPECT_FALSE(Builds(WithGroups({{{WebhookFilter::EVENT, "PULL_REQUEST_CREATED"},
                                   {WebhookFilter::COMMIT_MESSAGE, "Fix"}}}),
                      PullRequest()));
}

TEST(EvaluateFilterGroups, ActorAccountIdComparesTheDecimalId) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::ACTOR_ACCOUNT_ID, "^583231$"}}});
  EXPECT_TRUE(Builds(p, Push()));
  WebhookEvent other = Push();
  other.actor_account_id = "5832310";
  EXPECT_FALSE(Builds(p, other));
}

TEST(EvaluateFilterGroups, InvalidStoredGroupsFailWithAReason) {
  Project no_event = WithGroups({{{WebhookFilter::HEAD_REF, "main"}}});
  EXPECT_FALSE(Builds(no_event, Push()));
  EXPECT_THAT(Reason(no_event, Push()), HasSubstr("has 0 EVENT filters"));
  Project bad_regex = WithGroups({{{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::HEAD_REF, "(main"}}});
  EXPECT_FALSE(Builds(bad_regex, Push()));
  EXPECT_THAT(Reason(bad_regex, Push()), HasSubstr("is not a valid RE2 pattern: missing )"));
}

TEST(EvaluateFilterGroups, LongValuesAreCutInReasons) {
  Project p = WithGroups({{{WebhookFilter::EVENT, "PUSH"}, {WebhookFilter::COMMIT_MESSAGE, "^x"}}});
  WebhookEvent e = Push();
  e.commit_message = std::string(500, 'a');
  EXPECT_EQ(Reason(p, e), "group 1: COMMIT_MESSAGE \"^x\" did not match \"" + std::string(80, 'a') +
                              "...\"");
}

}  // namespace
}  // namespace kiln::coordinator
