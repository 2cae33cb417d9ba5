#include "coordinator/http/webhook.h"

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/http/webhook_deliveries.h"
#include "coordinator/store/rocksdb_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_clock.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/mem_store.h"

namespace kiln::coordinator {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kVectorSecret[] = "It's a Secret to Everybody";
constexpr char kVectorBody[] = "Hello, World!";
constexpr char kVectorSignature[] =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
constexpr char kSha1[] = "1111111111111111111111111111111111111111";
constexpr char kSha2[] = "2222222222222222222222222222222222222222";
constexpr char kZero[] = "0000000000000000000000000000000000000000";

// ---- signature (reference §2.3) ----

TEST(VerifyGitHubSignature, AcceptsGitHubTestVector) {
  EXPECT_TRUE(VerifyGitHubSignature(kVectorBody, kVectorSecret, kVectorSignature));
}

TEST(VerifyGitHubSignature, AcceptsUppercaseHex) {
  std::string upper = kVectorSignature;
  for (size_t i = 7; i < upper.size(); ++i) upper[i] = static_cast<char>(toupper(upper[i]));
  EXPECT_TRUE(VerifyGitHubSignature(kVectorBody, kVectorSecret, upper));
}

TEST(VerifyGitHubSignature, RejectsChangedBody) {
  EXPECT_FALSE(VerifyGitHubSignature("Hello, World?", kVectorSecret, kVectorSignature));
}

TEST(VerifyGitHubSignature, RejectsWrongSecret) {
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, "It's a Secret to Nobody", kVectorSignature));
}

TEST(VerifyGitHubSignature, RejectsMissingPrefix) {
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, kVectorSecret,
                                     std::string(kVectorSignature).substr(7)));
  EXPECT_FALSE(VerifyGitHubSignature(
      kVectorBody, kVectorSecret,
      "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"));
}

TEST(VerifyGitHubSignature, RejectsTruncatedOrLongerHex) {
  std::string sig = kVectorSignature;
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, kVectorSecret, sig.substr(0, sig.size() - 1)));
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, kVectorSecret, sig + "0"));
}

TEST(VerifyGitHubSignature, RejectsNonHex) {
  std::string sig = kVectorSignature;
  sig.back() = 'g';
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, kVectorSecret, sig));
}

TEST(VerifyGitHubSignature, RejectsMissingHeaderAndEmptySecret) {
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, kVectorSecret, ""));
  EXPECT_FALSE(VerifyGitHubSignature(kVectorBody, "", kVectorSignature));
}

// ---- parsing (reference §2.2) ----

json PushPayload(const std::string& ref = "refs/heads/main", const std::string& before = kSha1,
                 const std::string& after = kSha2) {
  return {
      {"ref", ref},
      {"before", before},
      {"after", after},
      {"created", false},
      {"deleted", after == kZero},
      {"forced", true},
      {"commits",
       {{{"id", "a"}, {"added", {"src/a.cc", "README"}}, {"modified", json::array()}, {"removed", {"old.txt"}}},
        {{"id", kSha2}, {"added", json::array()}, {"modified", {"src/a.cc", "b.h"}}, {"removed", json::array()}}}},
      {"head_commit", {{"id", kSha2}, {"message", "Fix [skip] things"}}},
      {"repository",
       {{"full_name", "octo/app"},
        {"clone_url", "https://github.com/octo/app.git"},
        {"ssh_url", "git@github.com:octo/app.git"},
        {"html_url", "https://github.com/octo/app"}}},
      {"sender", {{"login", "octocat"}, {"id", 583231}}},
  };
}

TEST(ParseGitHubDelivery, ReadsPushFields) {
  absl::StatusOr<GitHubDelivery> d =
      ParseGitHubDelivery("push", "guid-1", "application/json", PushPayload().dump());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->event, "push");
  EXPECT_EQ(d->delivery_id, "guid-1");
  EXPECT_EQ(d->ref, "refs/heads/main");
  EXPECT_EQ(d->before, kSha1);
  EXPECT_EQ(d->after, kSha2);
  EXPECT_FALSE(d->created);
  EXPECT_FALSE(d->deleted);
  EXPECT_TRUE(d->forced);
  EXPECT_THAT(d->repository_urls,
              ElementsAre("https://github.com/octo/app.git", "git@github.com:octo/app.git",
                          "https://github.com/octo/app"));
  EXPECT_EQ(d->repository_full_name, "octo/app");
  EXPECT_EQ(d->head_commit_message, "Fix [skip] things");
  EXPECT_EQ(d->sender_id, "583231");
}

TEST(ParseGitHubDelivery, ChangedFilesAreTheUnionOverCommits) {
  absl::StatusOr<GitHubDelivery> d =
      ParseGitHubDelivery("push", "g", "application/json; charset=utf-8", PushPayload().dump());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->changed_files, ElementsAre("src/a.cc", "README", "old.txt", "b.h"));
}

TEST(ParseGitHubDelivery, ReadsFormEncodedPayload) {
  // payload=<urlencoded json>, '+' for spaces and %XX for the rest.
  std::string json_text = R"({"ref":"refs/heads/main","before":"b","after":"a","repository":)"
                          R"({"clone_url":"/srv/git/app.git"},"head_commit":{"message":"a b&c"}})";
  std::string encoded;
  for (char c : json_text) {
    if (c == ' ') {
      encoded += '+';
    } else if (isalnum(static_cast<unsigned char>(c))) {
      encoded += c;
    } else {
      char buf[4];
      snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
      encoded += buf;
    }
  }
  absl::StatusOr<GitHubDelivery> d = ParseGitHubDelivery(
      "push", "g", "application/x-www-form-urlencoded", "other=1&payload=" + encoded);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ref, "refs/heads/main");
  EXPECT_EQ(d->head_commit_message, "a b&c");
  EXPECT_THAT(d->repository_urls, ElementsAre("/srv/git/app.git"));
}

TEST(ParseGitHubDelivery, RejectsMalformedInput) {
  auto parse = [](std::string_view ct, std::string_view body) {
    return ParseGitHubDelivery("push", "g", ct, body).status();
  };
  EXPECT_EQ(parse("application/json", "{not json").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parse("application/json", "{not json").message()), HasSubstr("malformed JSON"));
  EXPECT_EQ(parse("application/json", "[1,2]").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse("application/x-www-form-urlencoded", "payload=%7").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse("application/x-www-form-urlencoded", "zen=1").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse("text/plain", PushPayload().dump()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseGitHubDelivery("", "g", "application/json", "{}").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseGitHubDelivery, RejectsMissingOrMistypedPushFields) {
  for (const char* field : {"ref", "before", "after", "repository"}) {
    json p = PushPayload();
    p.erase(field);
    absl::Status s = ParseGitHubDelivery("push", "g", "application/json", p.dump()).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(field));
  }
  json p = PushPayload();
  p["ref"] = 42;
  EXPECT_THAT(std::string(ParseGitHubDelivery("push", "g", "", p.dump()).status().message()),
              HasSubstr("\"ref\" must be a string"));
  p = PushPayload();
  p["deleted"] = "yes";
  EXPECT_FALSE(ParseGitHubDelivery("push", "g", "", p.dump()).ok());
  p = PushPayload();
  p["commits"][0]["added"] = "src/a.cc";
  EXPECT_FALSE(ParseGitHubDelivery("push", "g", "", p.dump()).ok());
}

TEST(ParseGitHubDelivery, DeletedPushHasZeroAfterAndNullHeadCommit) {
  json p = PushPayload("refs/heads/gone", kSha1, kZero);
  p["deleted"] = false;  // the zero SHA alone marks it deleted
  p["head_commit"] = nullptr;
  p["commits"] = json::array();
  absl::StatusOr<GitHubDelivery> d = ParseGitHubDelivery("push", "g", "application/json", p.dump());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->deleted);
  EXPECT_EQ(d->head_commit_message, "");
  EXPECT_THAT(d->changed_files, IsEmpty());
}

TEST(ParseGitHubDelivery, TagPushKeepsTheTagRef) {
  json p = PushPayload("refs/tags/v1.0", kZero, kSha2);
  p["created"] = true;
  p["commits"] = json::array();
  absl::StatusOr<GitHubDelivery> d = ParseGitHubDelivery("push", "g", "application/json", p.dump());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ref, "refs/tags/v1.0");
  EXPECT_TRUE(d->created);
  EXPECT_THAT(d->changed_files, IsEmpty());
}

TEST(ParseGitHubDelivery, PingNeedsOnlyZenOrHookId) {
  EXPECT_TRUE(ParseGitHubDelivery("ping", "g", "application/json", R"({"zen":"Keep it simple.","hook_id":1})").ok());
  EXPECT_FALSE(ParseGitHubDelivery("ping", "g", "application/json", "{}").ok());
}

json PullRequestPayload(const std::string& action = "opened", bool merged = false) {
  return {
      {"action", action},
      {"number", 17},
      {"pull_request",
       {{"number", 17},
        {"title", "Add login page"},
        {"merged", merged},
        {"head", {{"ref", "feature/login"}, {"sha", kSha2}, {"repo", {{"clone_url", "https://github.com/fork/app.git"}}}}},
        {"base",
         {{"ref", "main"},
          {"sha", kSha1},
          {"repo", {{"clone_url", "https://github.com/octo/app.git"}, {"ssh_url", "git@github.com:octo/app.git"}}}}}}},
      {"repository", {{"full_name", "octo/app"}, {"clone_url", "https://github.com/octo/app.git"}}},
      {"sender", {{"login", "octocat"}, {"id", 583231}}},
  };
}

TEST(ParseGitHubDelivery, ReadsPullRequestFields) {
  json p = PullRequestPayload("synchronize");
  p["before"] = kSha1;
  absl::StatusOr<GitHubDelivery> d = ParseGitHubDelivery("pull_request", "g", "application/json", p.dump());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->action, "synchronize");
  EXPECT_EQ(d->pull_request_number, 17);
  EXPECT_FALSE(d->pull_request_merged);
  EXPECT_EQ(d->pr_head_ref, "feature/login");
  EXPECT_EQ(d->pr_head_sha, kSha2);
  EXPECT_EQ(d->pr_base_ref, "main");
  EXPECT_EQ(d->before, kSha1);
  EXPECT_EQ(d->sender_id, "583231");
  EXPECT_EQ(d->head_commit_message, "");  // the PR title is not a commit message
  EXPECT_THAT(d->changed_files, IsEmpty());
  // repository.* first, then pull_request.base.repo.* not already listed; never the head (fork) repo.
  EXPECT_THAT(d->repository_urls,
              ElementsAre("https://github.com/octo/app.git", "git@github.com:octo/app.git"));
}

TEST(ParseGitHubDelivery, RejectsPullRequestWithoutHeadShaOrNumber) {
  json p = PullRequestPayload();
  p["pull_request"]["head"].erase("sha");
  absl::Status s = ParseGitHubDelivery("pull_request", "g", "", p.dump()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing field \"pull_request.head.sha\""));
  p = PullRequestPayload();
  p["number"] = "17";
  EXPECT_THAT(std::string(ParseGitHubDelivery("pull_request", "g", "", p.dump()).status().message()),
              HasSubstr("\"number\" must be a positive integer"));
  p = PullRequestPayload();
  p.erase("action");
  EXPECT_FALSE(ParseGitHubDelivery("pull_request", "g", "", p.dump()).ok());
}

// ---- matching ----

kiln::v1::ProjectSource Source(const std::string& location, const std::string& branch = "main") {
  kiln::v1::ProjectSource s;
  s.set_type("git");
  s.set_location(location);
  s.set_branch(branch);
  return s;
}

GitHubDelivery WithUrls(std::vector<std::string> urls, std::string ref = "refs/heads/main") {
  GitHubDelivery d;
  d.event = "push";
  d.repository_urls = std::move(urls);
  d.ref = std::move(ref);
  return d;
}

TEST(RepositoryMatches, LocalPathsIgnoreFileSchemeTrailingSlashAndDotGit) {
  GitHubDelivery d = WithUrls({"/srv/git/app.git"});
  EXPECT_TRUE(RepositoryMatches(Source("/srv/git/app.git"), d));
  EXPECT_TRUE(RepositoryMatches(Source("/srv/git/app"), d));
  EXPECT_TRUE(RepositoryMatches(Source("file:///srv/git/app.git/"), d));
  EXPECT_TRUE(RepositoryMatches(Source("/srv/git/app/"), d));
  EXPECT_TRUE(RepositoryMatches(Source("/srv//git/app.git"), d));
  EXPECT_FALSE(RepositoryMatches(Source("/srv/git/App.git"), d));  // case-sensitive
  EXPECT_FALSE(RepositoryMatches(Source("/srv/git/app2.git"), d));
  EXPECT_FALSE(RepositoryMatches(Source("/srv/other/app.git"), d));
  EXPECT_FALSE(RepositoryMatches(Source(""), d));
}

TEST(RepositoryMatches, RemoteUrlFormsCompareHostAndPath) {
  GitHubDelivery d = WithUrls({"https://github.com/octo/app.git"});
  EXPECT_TRUE(RepositoryMatches(Source("https://github.com/octo/app"), d));
  EXPECT_TRUE(RepositoryMatches(Source("git@github.com:octo/app.git"), d));
  EXPECT_TRUE(RepositoryMatches(Source("ssh://git@github.com:22/octo/app.git"), d));
  EXPECT_TRUE(RepositoryMatches(Source("https://GitHub.com/octo/app/"), d));  // host is case-insensitive
  EXPECT_TRUE(RepositoryMatches(Source("https://user:token@github.com/octo/app.git"), d));
  EXPECT_FALSE(RepositoryMatches(Source("https://github.com/Octo/app"), d));
  EXPECT_FALSE(RepositoryMatches(Source("https://gitlab.com/octo/app"), d));
  EXPECT_FALSE(RepositoryMatches(Source("https://github.com/octo/app-fork"), d));
  // A local path never equals a remote URL with the same path.
  EXPECT_FALSE(RepositoryMatches(Source("/octo/app"), d));
  EXPECT_FALSE(RepositoryMatches(Source("/octo/app"), WithUrls({"git@host:/octo/app"})));
}

TEST(RepositoryMatches, AnyRepositoryUrlMayMatch) {
  GitHubDelivery d = WithUrls({"https://github.com/octo/app.git", "git@github.com:octo/app.git"});
  EXPECT_TRUE(RepositoryMatches(Source("ssh://git@github.com/octo/app"), d));
  EXPECT_FALSE(RepositoryMatches(Source("ssh://git@github.com/octo/app"), WithUrls({})));
}

TEST(BranchMatches, ComparesFullRefAndDefaultsToMain) {
  EXPECT_TRUE(BranchMatches(Source("/r", "main"), WithUrls({}, "refs/heads/main")));
  EXPECT_TRUE(BranchMatches(Source("/r", ""), WithUrls({}, "refs/heads/main")));
  EXPECT_TRUE(BranchMatches(Source("/r", "feature/x"), WithUrls({}, "refs/heads/feature/x")));
  EXPECT_FALSE(BranchMatches(Source("/r", "main"), WithUrls({}, "refs/tags/main")));
  EXPECT_FALSE(BranchMatches(Source("/r", "main"), WithUrls({}, "refs/heads/main2")));
  EXPECT_FALSE(BranchMatches(Source("/r", "main"), WithUrls({}, "main")));
}

// ---- WebhookProcessor ----

class FakeBackend : public WebhookBackend {
 public:
  struct Started {
    std::string project, source_version;
    kiln::v1::WebhookTrigger trigger;
  };

  void AddProject(const std::string& name, const std::string& location, const std::string& branch,
                  const std::string& secret_parameter) {
    kiln::v1::Project p;
    p.set_name(name);
    *p.mutable_source() = Source(location, branch);
    p.set_webhook_secret_parameter(secret_parameter);
    absl::MutexLock lock(&mu_);
    projects_.push_back(p);
  }
  // Replaces the filter groups of project `name`.
  void SetFilterGroups(const std::string& name,
                       const std::vector<std::vector<kiln::v1::WebhookFilter>>& groups) {
    absl::MutexLock lock(&mu_);
    for (kiln::v1::Project& p : projects_) {
      if (p.name() != name) continue;
      p.clear_webhook_filter_groups();
      for (const auto& group : groups) {
        kiln::v1::WebhookFilterGroup* g = p.add_webhook_filter_groups();
        for (const auto& f : group) *g->add_filters() = f;
      }
    }
  }
  void SetSecret(const std::string& name, const std::string& value) {
    absl::MutexLock lock(&mu_);
    secrets_[name] = value;
  }
  void FailBuildsOf(const std::string& project, absl::Status status) {
    absl::MutexLock lock(&mu_);
    failures_[project] = status;
  }
  void ClearFailures() {
    absl::MutexLock lock(&mu_);
    failures_.clear();
  }
  std::vector<Started> started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }

  absl::StatusOr<std::vector<kiln::v1::Project>> ListProjects() override {
    absl::MutexLock lock(&mu_);
    return projects_;
  }
  absl::StatusOr<std::string> GetSecret(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    auto it = secrets_.find(name);
    if (it == secrets_.end()) return absl::NotFoundError("no parameter " + name);
    return it->second;
  }
  absl::StatusOr<std::string> StartBuild(const kiln::v1::Project& project, const std::string& version,
                                         const kiln::v1::WebhookTrigger& trigger) override {
    absl::MutexLock lock(&mu_);
    auto f = failures_.find(project.name());
    if (f != failures_.end()) return f->second;
    started_.push_back({project.name(), version, trigger});
    return project.name() + ":build-" + std::to_string(started_.size());
  }

 private:
  absl::Mutex mu_;
  std::vector<kiln::v1::Project> projects_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> secrets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<Started> started_ ABSL_GUARDED_BY(mu_);
};

TEST(ComputeGitHubSignature, MatchesGitHubTestVector) {
  EXPECT_EQ(ComputeGitHubSignature(kVectorBody, kVectorSecret), kVectorSignature);
}

kiln::v1::WebhookFilter Filter(kiln::v1::WebhookFilter::Type type, const std::string& pattern,
                               bool exclude = false) {
  kiln::v1::WebhookFilter f;
  f.set_type(type);
  f.set_pattern(pattern);
  f.set_exclude_matched_pattern(exclude);
  return f;
}

std::map<std::string, std::string> Headers(const std::string& event, const std::string& body,
                                           const std::string& secret, const std::string& delivery) {
  std::map<std::string, std::string> headers = {{"x-github-event", event},
                                                {"x-github-delivery", delivery},
                                                {"content-type", "application/json"}};
  if (!secret.empty()) headers["x-hub-signature-256"] = ComputeGitHubSignature(body, secret);
  return headers;
}

class WebhookProcessorTest : public ::testing::Test {
 protected:
  WebhookProcessorTest() {
    backend_.AddProject("app", "https://github.com/octo/app", "main", "/kiln/app/webhook");
    backend_.SetSecret("/kiln/app/webhook", "s3cret");
  }

  HttpResult Deliver(const std::string& event, const std::string& body, const std::string& secret,
                     const std::string& delivery = "d-1") {
    return processor_.HandleGitHub(Headers(event, body, secret, delivery), body);
  }

  static json Body(const HttpResult& r) { return json::parse(r.body); }

  // The newest recorded delivery.
  kiln::v1::WebhookDelivery Last() {
    absl::StatusOr<std::vector<kiln::v1::WebhookDelivery>> all = log_->List("", 1);
    EXPECT_TRUE(all.ok() && all->size() == 1);
    return all.ok() && !all->empty() ? all->front() : kiln::v1::WebhookDelivery();
  }

  FakeBackend backend_;
  test::FakeClock clock_;
  test::MemStore store_;
  std::unique_ptr<WebhookDeliveryLog> log_ = *WebhookDeliveryLog::Open(&store_);
  WebhookProcessor processor_{&backend_, log_.get(), &clock_};
};

TEST_F(WebhookProcessorTest, PushStartsBuildAtAfterShaWithTrigger) {
  HttpResult r = Deliver("push", PushPayload().dump(), "s3cret");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r)["builds"], json({"app:build-1"}));
  std::vector<FakeBackend::Started> started = backend_.started();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].project, "app");
  EXPECT_EQ(started[0].source_version, kSha2);
  const kiln::v1::WebhookTrigger& t = started[0].trigger;
  EXPECT_EQ(t.event(), "PUSH");
  EXPECT_EQ(t.head_ref(), "refs/heads/main");
  EXPECT_EQ(t.prev_commit(), kSha1);
  EXPECT_EQ(t.actor_account_id(), "583231");
  EXPECT_EQ(t.trigger(), "branch/main");
  EXPECT_EQ(t.delivery_id(), "d-1");
}

TEST_F(WebhookProcessorTest, BadSignatureIs401AndStartsNothing) {
  HttpResult r = Deliver("push", PushPayload().dump(), "wrong");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Body(r)["message"], "invalid or missing X-Hub-Signature-256");
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, MissingSignatureIs401AndStartsNothing) {
  HttpResult r = Deliver("push", PushPayload().dump(), /*secret=*/"");
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, MissingSecretParameterCannotAuthenticate) {
  backend_.AddProject("nosecret", "https://github.com/octo/other", "main", "/kiln/missing");
  json p = PushPayload();
  p["repository"]["clone_url"] = "https://github.com/octo/other.git";
  p["repository"].erase("ssh_url");
  p["repository"].erase("html_url");
  HttpResult r = Deliver("push", p.dump(), "s3cret");
  // Signed with another project's secret: authenticated for that project only, which builds a
  // different repository. The project without a readable secret starts nothing.
  EXPECT_EQ(r.status, 202);
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, UnsignedMalformedBodyIsRejectedBeforeParsing) {
  HttpResult r = Deliver("push", "[{},{},{", /*secret=*/"");
  EXPECT_EQ(r.status, 401);  // not 400: the body was never parsed
}

TEST_F(WebhookProcessorTest, MissingOrInvalidEventHeaderIs400) {
  std::map<std::string, std::string> headers = {{"content-type", "application/json"}};
  EXPECT_EQ(processor_.HandleGitHub(headers, PushPayload().dump()).status, 400);
  headers["x-github-event"] = "Push Event";
  EXPECT_EQ(processor_.HandleGitHub(headers, PushPayload().dump()).status, 400);
}

TEST_F(WebhookProcessorTest, MalformedBodyIs400WithMessage) {
  HttpResult r = Deliver("push", "{", "s3cret");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Body(r)["message"].get<std::string>(), HasSubstr("malformed JSON"));
}

TEST_F(WebhookProcessorTest, AuthenticatedPingIsPong) {
  json ping = {{"zen", "Design for failure."}, {"hook_id", 7},
               {"repository", {{"clone_url", "https://github.com/octo/app.git"}}}};
  HttpResult r = Deliver("ping", ping.dump(), "s3cret");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["message"], "pong");
  EXPECT_EQ(Deliver("ping", ping.dump(), "wrong").status, 401);
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, NoMatchingProjectIs202) {
  json p = PushPayload();
  p["repository"] = {{"clone_url", "https://github.com/someone/else.git"}};
  HttpResult r = Deliver("push", p.dump(), "s3cret");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(Body(r), json({{"message", "no project matches this repository"}, {"builds", json::array()}}));
}

TEST_F(WebhookProcessorTest, ProjectWithoutWebhookParameterIsNoCandidate) {
  backend_.AddProject("plain", "/srv/git/plain.git", "main", "");
  json p = PushPayload();
  p["repository"] = {{"clone_url", "/srv/git/plain.git"}};
  EXPECT_EQ(Deliver("push", p.dump(), "s3cret").status, 202);
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, BranchMismatchIs202WithoutBuild) {
  HttpResult r = Deliver("push", PushPayload("refs/heads/dev").dump(), "s3cret");
  EXPECT_EQ(r.status, 202);
  EXPECT_THAT(Body(r)["message"].get<std::string>(), HasSubstr("refs/heads/dev"));
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, DeletedBranchIs202WithoutBuild) {
  HttpResult r = Deliver("push", PushPayload("refs/heads/main", kSha1, kZero).dump(), "s3cret");
  EXPECT_EQ(r.status, 202);
  EXPECT_THAT(Body(r)["message"].get<std::string>(), HasSubstr("deleted"));
  EXPECT_THAT(backend_.started(), IsEmpty());
}

TEST_F(WebhookProcessorTest, EventsThatMapToNoEventTypeStartNothing) {
  HttpResult r = Deliver("pull_request", PullRequestPayload("labeled").dump(), "s3cret");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(Body(r)["message"], "event \"pull_request\" (action \"labeled\") does not trigger builds");
  json issue = {{"action", "opened"}, {"repository", {{"clone_url", "https://github.com/octo/app.git"}}}};
  EXPECT_EQ(Deliver("issues", issue.dump(), "s3cret", "d-2").status, 202);
  EXPECT_THAT(backend_.started(), IsEmpty());
  EXPECT_EQ(Last().github_event(), "issues");
  EXPECT_EQ(Last().event_type(), "");
}

TEST_F(WebhookProcessorTest, RedeliveryReturnsTheOriginalBuilds) {
  HttpResult first = Deliver("push", PushPayload().dump(), "s3cret", "guid-42");
  HttpResult again = Deliver("push", PushPayload().dump(), "s3cret", "guid-42");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(Body(again)["builds"], Body(first)["builds"]);
  EXPECT_THAT(Body(again)["message"].get<std::string>(), HasSubstr("already processed"));
  EXPECT_EQ(backend_.started().size(), 1u);
  // A new delivery of the same push is a new event.
  EXPECT_EQ(Deliver("push", PushPayload().dump(), "s3cret", "guid-43").status, 200);
  EXPECT_EQ(backend_.started().size(), 2u);
}

TEST_F(WebhookProcessorTest, DedupeLastsAsLongAsTheDeliveryIsRecorded) {
  test::MemStore store;
  std::unique_ptr<WebhookDeliveryLog> small = *WebhookDeliveryLog::Open(&store, /*max_deliveries=*/2);
  WebhookProcessor processor(&backend_, small.get(), &clock_);
  auto deliver = [&](const std::string& id) {
    std::string body = PushPayload().dump();
    return processor.HandleGitHub(Headers("push", body, "s3cret", id), body);
  };
  deliver("a");
  deliver("b");
  deliver("a");  // deduplicated; recorded again, so "b" is now the oldest record
  EXPECT_EQ(backend_.started().size(), 2u);
  deliver("c");  // pushes "b" out of the window
  EXPECT_EQ(backend_.started().size(), 3u);
  deliver("a");
  EXPECT_EQ(backend_.started().size(), 3u);
  deliver("b");  // forgotten: builds again
  EXPECT_EQ(backend_.started().size(), 4u);
}

TEST_F(WebhookProcessorTest, OneProjectsErrorDoesNotStopAnother) {
  backend_.AddProject("app-ssh", "git@github.com:octo/app.git", "main", "/kiln/app/webhook");
  backend_.AddProject("app-full", "https://github.com/octo/app.git", "main", "/kiln/app/webhook");
  backend_.FailBuildsOf("app", absl::ResourceExhaustedError("concurrent build limit 1 reached"));
  HttpResult r = Deliver("push", PushPayload().dump(), "s3cret");
  EXPECT_EQ(r.status, 200) << r.body;
  json body = Body(r);
  EXPECT_EQ(body["builds"].size(), 2u);
  ASSERT_EQ(body["errors"].size(), 1u);
  EXPECT_EQ(body["errors"][0]["project"], "app");
  EXPECT_EQ(body["errors"][0]["code"], "RESOURCE_EXHAUSTED");
  std::vector<std::string> names;
  for (const auto& s : backend_.started()) names.push_back(s.project);
  EXPECT_THAT(names, UnorderedElementsAre("app-ssh", "app-full"));
}

TEST_F(WebhookProcessorTest, RedeliveryRetriesOnlyProjectsThatFailed) {
  backend_.AddProject("other", "https://github.com/octo/app", "main", "/kiln/app/webhook");
  backend_.FailBuildsOf("other", absl::UnavailableError("store busy"));
  HttpResult first = Deliver("push", PushPayload().dump(), "s3cret", "g");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(Body(first)["errors"][0]["project"], "other");
  backend_.ClearFailures();
  HttpResult again = Deliver("push", PushPayload().dump(), "s3cret", "g");
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Body(again)["builds"], json({"app:build-1", "other:build-2"}));
  std::vector<std::string> names;
  for (const auto& st : backend_.started()) names.push_back(st.project);
  EXPECT_THAT(names, ElementsAre("app", "other"));
}

TEST_F(WebhookProcessorTest, AllBuildsRefusedForLimitIs429) {
  backend_.FailBuildsOf("app", absl::ResourceExhaustedError("limit"));
  HttpResult r = Deliver("push", PushPayload().dump(), "s3cret");
  EXPECT_EQ(r.status, 429);
  EXPECT_THAT(Body(r)["builds"], IsEmpty());
  EXPECT_EQ(Body(r)["errors"][0]["project"], "app");
}

TEST_F(WebhookProcessorTest, AllBuildsFailedOtherwiseIs500) {
  backend_.FailBuildsOf("app", absl::InternalError("boom"));
  EXPECT_EQ(Deliver("push", PushPayload().dump(), "s3cret").status, 500);
}

TEST_F(WebhookProcessorTest, OnlyProjectsWhoseSecretVerifiesBuild) {
  backend_.AddProject("app-other-secret", "https://github.com/octo/app", "main", "/kiln/other");
  backend_.SetSecret("/kiln/other", "different");
  HttpResult r = Deliver("push", PushPayload().dump(), "different");
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(backend_.started()[0].project, "app-other-secret");
}

TEST_F(WebhookProcessorTest, TagPushDoesNotBuildBranchProject) {
  HttpResult r = Deliver("push", PushPayload("refs/tags/v1").dump(), "s3cret");
  EXPECT_EQ(r.status, 202);
  EXPECT_THAT(backend_.started(), IsEmpty());
}

// ---- pull requests and filter groups ----

TEST_F(WebhookProcessorTest, PullRequestStartsABuildAtTheHeadShaWithPrTrigger) {
  backend_.SetFilterGroups("app", {{Filter(kiln::v1::WebhookFilter::EVENT, "PULL_REQUEST_CREATED"),
                                    Filter(kiln::v1::WebhookFilter::BASE_REF, "^refs/heads/main$")}});
  HttpResult r = Deliver("pull_request", PullRequestPayload("opened").dump(), "s3cret", "pr-guid");
  EXPECT_EQ(r.status, 200) << r.body;
  std::vector<FakeBackend::Started> started = backend_.started();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].source_version, kSha2);  // pull_request.head.sha
  const kiln::v1::WebhookTrigger& t = started[0].trigger;
  EXPECT_EQ(t.event(), "PULL_REQUEST_CREATED");
  EXPECT_EQ(t.trigger(), "pr/17");
  EXPECT_EQ(t.pull_request_number(), 17);
  EXPECT_EQ(t.head_ref(), "refs/heads/feature/login");
  EXPECT_EQ(t.base_ref(), "refs/heads/main");
  EXPECT_EQ(t.actor_account_id(), "583231");
  EXPECT_EQ(t.delivery_id(), "pr-guid");
  kiln::v1::WebhookDelivery d = Last();
  EXPECT_EQ(d.event_type(), "PULL_REQUEST_CREATED");
  EXPECT_EQ(d.commit(), kSha2);
  EXPECT_EQ(d.head_ref(), "refs/heads/feature/login");
  EXPECT_THAT(d.matched_projects(), ElementsAre("app"));
  EXPECT_THAT(d.build_ids(), ElementsAre("app:build-1"));
}

TEST_F(WebhookProcessorTest, MergedPullRequestMatchesOnlyMergedFilter) {
  backend_.SetFilterGroups("app", {{Filter(kiln::v1::WebhookFilter::EVENT, "PULL_REQUEST_MERGED")}});
  EXPECT_EQ(Deliver("pull_request", PullRequestPayload("closed", false).dump(), "s3cret", "1").status, 202);
  EXPECT_EQ(Deliver("pull_request", PullRequestPayload("closed", true).dump(), "s3cret", "2").status, 200);
  ASSERT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(backend_.started()[0].trigger.event(), "PULL_REQUEST_MERGED");
}

TEST_F(WebhookProcessorTest, ProjectWithoutFilterGroupsIgnoresPullRequests) {
  HttpResult r = Deliver("pull_request", PullRequestPayload().dump(), "s3cret");
  EXPECT_EQ(r.status, 202);
  EXPECT_THAT(backend_.started(), IsEmpty());
  EXPECT_THAT(Last().reason(), HasSubstr("app: no filter groups: only a PUSH to refs/heads/main"));
}

TEST_F(WebhookProcessorTest, NonMatchingPushRecordsTheReasonAndStartsNothing) {
  backend_.SetFilterGroups("app", {{Filter(kiln::v1::WebhookFilter::EVENT, "PUSH"),
                                    Filter(kiln::v1::WebhookFilter::HEAD_REF, "^refs/heads/main$")}});
  HttpResult r = Deliver("push", PushPayload("refs/heads/dev").dump(), "s3cret", "guid-dev");
  EXPECT_EQ(r.status, 202);
  EXPECT_THAT(backend_.started(), IsEmpty());
  const std::string reason =
      "no project matched: app: group 1: HEAD_REF \"^refs/heads/main$\" did not match "
      "\"refs/heads/dev\"";
  EXPECT_EQ(Body(r)["message"], reason);
  kiln::v1::WebhookDelivery d = Last();
  EXPECT_EQ(d.delivery_id(), "guid-dev");
  EXPECT_EQ(d.github_event(), "push");
  EXPECT_EQ(d.event_type(), "PUSH");
  EXPECT_EQ(d.http_status(), 202);
  EXPECT_EQ(d.repository(), "https://github.com/octo/app.git");
  EXPECT_EQ(d.head_ref(), "refs/heads/dev");
  EXPECT_EQ(d.commit(), kSha2);
  EXPECT_EQ(d.received().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_THAT(d.matched_projects(), IsEmpty());
  EXPECT_THAT(d.build_ids(), IsEmpty());
  EXPECT_EQ(d.reason(), reason);
  // Listed under the project it was evaluated against.
  EXPECT_EQ(log_->List("app", 10)->size(), 1u);
}

TEST_F(WebhookProcessorTest, FilePathFilterBuildsOnlyPushesTouchingMatchingFiles) {
  backend_.SetFilterGroups("app", {{Filter(kiln::v1::WebhookFilter::EVENT, "PUSH"),
                                    Filter(kiln::v1::WebhookFilter::FILE_PATH, "^src/")}});
  EXPECT_EQ(Deliver("push", PushPayload().dump(), "s3cret", "1").status, 200);  // src/a.cc changed
  json docs = PushPayload();
  docs["commits"] = json::array({{{"id", "x"}, {"modified", {"README"}}}});
  EXPECT_EQ(Deliver("push", docs.dump(), "s3cret", "2").status, 202);
  EXPECT_EQ(backend_.started().size(), 1u);
}

TEST_F(WebhookProcessorTest, EveryRequestIsRecordedIncludingRejectedOnes) {
  Deliver("push", PushPayload().dump(), "wrong", "bad-sig");
  kiln::v1::WebhookDelivery d = Last();
  EXPECT_EQ(d.http_status(), 401);
  EXPECT_EQ(d.reason(), "signature mismatch");
  EXPECT_EQ(d.delivery_id(), "bad-sig");
  EXPECT_EQ(d.head_ref(), "");  // nothing was parsed
  EXPECT_EQ(d.commit(), "");

  Deliver("push", "{", "s3cret", "bad-json");
  EXPECT_EQ(Last().http_status(), 400);
  EXPECT_THAT(Last().reason(), HasSubstr("malformed JSON"));

  Deliver("push", PushPayload().dump(), "s3cret", "good");
  EXPECT_EQ(Last().http_status(), 200);
  EXPECT_EQ(Last().reason(), "");
  EXPECT_EQ(log_->List("", 10)->size(), 3u);
}

TEST_F(WebhookProcessorTest, UnauthenticatedRequestCannotShadowARecordedDelivery) {
  Deliver("push", PushPayload().dump(), "s3cret", "guid-1");
  Deliver("push", PushPayload().dump(), "wrong", "guid-1");  // 401, same delivery id
  HttpResult again = Deliver("push", PushPayload().dump(), "s3cret", "guid-1");
  EXPECT_EQ(again.status, 200);
  EXPECT_THAT(Body(again)["message"].get<std::string>(), HasSubstr("already processed"));
  EXPECT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(Last().reason(), "duplicate delivery");
}

TEST_F(WebhookProcessorTest, HeadersAreRecordedAsPrintableAscii) {
  std::string body = PushPayload().dump();
  std::map<std::string, std::string> headers = Headers("push", body, "s3cret", "id\xff\n" + std::string(300, 'x'));
  processor_.HandleGitHub(headers, body);
  const std::string id = Last().delivery_id();
  EXPECT_EQ(id.size(), 128u);
  EXPECT_EQ(id.substr(0, 4), "id??");
}

TEST(WebhookRedelivery, IsDeduplicatedAfterTheStoreIsReopened) {
  const std::string dir = test::MakeTempDir("webhook-restart");
  FakeBackend backend;
  backend.AddProject("app", "https://github.com/octo/app", "main", "/kiln/app/webhook");
  backend.SetSecret("/kiln/app/webhook", "s3cret");
  const std::string body = PushPayload().dump();
  const auto headers = Headers("push", body, "s3cret", "guid-restart");
  json first;
  {
    auto store = RocksDbStore::Open({dir + "/db"});
    ASSERT_TRUE(store.ok()) << store.status();
    auto log = WebhookDeliveryLog::Open(store->get());
    ASSERT_TRUE(log.ok()) << log.status();
    WebhookProcessor processor(&backend, log->get());
    HttpResult r = processor.HandleGitHub(headers, body);
    ASSERT_EQ(r.status, 200) << r.body;
    first = json::parse(r.body);
  }
  // A new coordinator process: new store handle, new log, new processor.
  auto store = RocksDbStore::Open({dir + "/db"});
  ASSERT_TRUE(store.ok()) << store.status();
  auto log = WebhookDeliveryLog::Open(store->get());
  ASSERT_TRUE(log.ok()) << log.status();
  WebhookProcessor processor(&backend, log->get());
  HttpResult again = processor.HandleGitHub(headers, body);
  EXPECT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(json::parse(again.body)["builds"], first["builds"]);
  EXPECT_EQ(backend.started().size(), 1u);
  auto recorded = (*log)->List("", 10);
  ASSERT_TRUE(recorded.ok());
  ASSERT_EQ(recorded->size(), 2u);
  EXPECT_EQ(recorded->front().reason(), "duplicate delivery");
  EXPECT_EQ(recorded->front().build_ids(0), first["builds"][0]);
}

}  // namespace
}  // namespace kiln::coordinator
