// End-to-end checks of the CodeBuild features of issue 3 through real processes: kiln-coordinator and
// kiln-agent binaries, the kiln CLI, git, and (where a test says so) the real Docker engine.
// Artifacts (§1.10) are fetched with `kiln artifact get` and listed with unzip; reports (§1.9) and the
// cache (§1.11) are read back from `kiln build get`; stop, build timeout and queued timeout (§1.13)
// are observed on the build record. Timeouts use --minute-ms so that "5 minutes" lasts 1 s.
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "coordinator/http/webhook.h"
#include "httplib.h"
#include "tests/e2e/farm.h"
#include "tests/testing/build_helpers.h"
#include "tests/testing/status_matchers.h"

namespace kiln::e2e {
namespace {

namespace fs = std::filesystem;
using ::kiln::test::FindPhase;
using ::kiln::test::IsOk;
using ::kiln::v1::Build;
using ::kiln::v1::BuildPhaseType;
using ::kiln::v1::BuildStatus;
using ::testing::HasSubstr;

bool UnderCi() {
  const char* ci = getenv("CI");
  return ci != nullptr && (std::string(ci) == "true" || std::string(ci) == "1");
}

// Output of a shell command (stdout), or "" if it cannot run.
std::string Shell(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// A buildspec whose build phase runs `commands` (YAML list items).
std::string BuildOnly(const std::vector<std::string>& commands) {
  std::string s = "version: 0.2\nphases:\n  build:\n    commands:\n";
  for (const auto& c : commands) absl::StrAppend(&s, "      - ", c, "\n");
  return s;
}

bool DockerImageAvailable() {
  return std::system("docker image inspect python:3.11-slim >/dev/null 2>&1") == 0;
}

#define REQUIRE_DOCKER()                                                                       \
  do {                                                                                         \
    if (!DockerImageAvailable()) {                                                             \
      if (UnderCi()) FAIL() << "CI=true but no Docker engine with python:3.11-slim";           \
      GTEST_SKIP() << "no Docker engine with python:3.11-slim (run tools/dev/setup.sh first)"; \
    }                                                                                          \
  } while (0)

class CompatE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = absl::StrCat(::testing::TempDir(), "kiln-compat-",
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                                 "-XXXXXX");
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override {
    if (HasFailure() && farm_ != nullptr) {
      std::cerr << "compat e2e: files kept in " << dir_ << "\n" << farm_->DaemonLogs().substr(0, 20000);
    }
    farm_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // Starts a coordinator (timeouts: 1 "minute" = `minute_millis`) and an agent with `slots`.
  void StartFarm(int slots = 2, int64_t minute_millis = 60000) {
    Farm::Options o;
    o.minute_millis = minute_millis;
    farm_ = std::make_unique<Farm>(dir_, o);
    ASSERT_THAT(farm_->StartCoordinator(), IsOk());
    if (slots > 0) {
      ASSERT_THAT(farm_->StartAgent(slots), IsOk());
    }
  }

  // A repository named `name` with `buildspec` committed, and a project for it with `extra` YAML.
  void MakeProject(const std::string& name, const std::string& buildspec,
                   const std::map<std::string, std::string>& files = {},
                   const std::string& extra = "") {
    auto repo = Repo::Create(dir_, name);
    ASSERT_THAT(repo, IsOk());
    std::map<std::string, std::string> all = files;
    all["buildspec.yml"] = buildspec;
    ASSERT_THAT(repo->Commit(all, "buildspec"), IsOk());
    ASSERT_THAT(repo->Git({"push", "-q", "origin", "main"}), IsOk());
    ASSERT_THAT(farm_->ApplyProject(name, absl::StrCat("name: ", name, "\nsource: {type: git, location: \"",
                                                       repo->bare_path(), "\", branch: main}\n", extra)),
                IsOk());
  }

  std::string StartBuild(const std::string& project) {
    auto r = farm_->Kiln({"build", "start", project});
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return std::string(absl::StripAsciiWhitespace(r->out));
  }

  std::string dir_;
  std::unique_ptr<Farm> farm_;
};

TEST_F(CompatE2eTest, ArtifactsAreStoredByContentAndFetchedAsAZipWithCodeBuildsMemberList) {
  StartFarm();
  MakeProject("art", R"yaml(version: 0.2
phases:
  build:
    commands:
      - mkdir -p dist/lib docs reports
      - echo app > dist/app.txt && echo lib > dist/lib/x.so && echo guide > docs/guide.md
      - printf '<testsuite><testcase name="a"/><testcase name="b"><failure message="no"/></testcase></testsuite>' > reports/junit.xml
      - cd docs
reports:
  unit:
    files: ['**/*.xml']
    base-directory: reports
artifacts:
  files: ['**/*']
  base-directory: dist
  name: art-$CODEBUILD_BUILD_NUMBER
  secondary-artifacts:
    docs:
      files: [docs/*]
      discard-paths: yes
)yaml");
  const std::string id = StartBuild("art");
  auto f = farm_->FollowBuild(id);
  ASSERT_THAT(f, IsOk());
  ASSERT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED) << f->log;
  ASSERT_EQ(f->build.artifacts_size(), 2) << f->build.DebugString();
  const auto& primary = f->build.artifacts(0);
  EXPECT_EQ(primary.name(), "art-1");
  EXPECT_EQ(primary.file_count(), 2);
  // The blob is stored under its SHA-256 in the coordinator's store.
  EXPECT_TRUE(fs::exists(absl::StrCat(dir_, "/coordinator/artifacts/sha256/", primary.sha256().substr(0, 2),
                                      "/", primary.sha256())));
  // build get shows the artifacts and the report summary.
  auto get = farm_->Kiln({"build", "get", id});
  ASSERT_THAT(get, IsOk());
  EXPECT_THAT(get->out, HasSubstr(primary.sha256().substr(0, 12)));
  EXPECT_THAT(get->out, HasSubstr("art-unit"));
  EXPECT_THAT(get->out, HasSubstr("2 total, 1 passed, 1 failed, 0 skipped"));
  // kiln artifact get: the zip's member list is what CodeBuild would upload.
  const std::string zip = dir_ + "/primary.zip";
  auto fetched = farm_->Kiln({"artifact", "get", id, "-o", zip});
  ASSERT_THAT(fetched, IsOk());
  ASSERT_EQ(fetched->exit_code, 0) << fetched->err;
  EXPECT_EQ(Shell("unzip -Z1 " + zip), "app.txt\nlib/x.so\n");
  EXPECT_EQ(Shell("sha256sum " + zip).substr(0, 64), primary.sha256());
  const std::string docs = dir_ + "/docs.zip";
  fetched = farm_->Kiln({"artifact", "get", id, "--name", "docs", "-o", docs});
  ASSERT_THAT(fetched, IsOk());
  ASSERT_EQ(fetched->exit_code, 0) << fetched->err;
  EXPECT_EQ(Shell("unzip -Z1 " + docs), "guide.md\n");
  // An unknown name is a clear error.
  fetched = farm_->Kiln({"artifact", "get", id, "--name", "nope", "-o", dir_ + "/x.zip"});
  ASSERT_THAT(fetched, IsOk());
  EXPECT_EQ(fetched->exit_code, 1);
  EXPECT_THAT(fetched->err, HasSubstr("NOT_FOUND"));
}

TEST_F(CompatE2eTest, ZeroMatchingArtifactPathsFailsTheBuildInUploadArtifacts) {
  StartFarm();
  MakeProject("noart", "version: 0.2\nphases:\n  build:\n    commands: [echo hi]\n"
                       "artifacts:\n  files: [target/app.jar]\n");
  auto f = farm_->FollowBuild(StartBuild("noart"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->build.build_status(), BuildStatus::FAILED);
  const auto* upload = FindPhase(f->build, BuildPhaseType::UPLOAD_ARTIFACTS);
  ASSERT_NE(upload, nullptr);
  EXPECT_EQ(upload->phase_status(), BuildStatus::FAILED);
  ASSERT_GE(upload->contexts_size(), 1);
  EXPECT_EQ(upload->contexts(0).status_code(), "CLIENT_ERROR");
  EXPECT_THAT(upload->contexts(0).message(), HasSubstr("no matching artifact paths found"));
  EXPECT_THAT(f->log, HasSubstr("Skipping invalid file path target/app.jar"));
}

TEST_F(CompatE2eTest, CacheIsRestoredOnTheNextBuildAndRoutesItToTheAgentHoldingIt) {
  StartFarm(/*slots=*/1);
  MakeProject("cached", R"yaml(version: 0.2
phases:
  install:
    commands:
      - if [ -f deps/dep.txt ]; then echo "cache-hit $(cat deps/dep.txt)"; else echo cache-miss; fi
      - mkdir -p deps && echo v1 > deps/dep.txt
cache:
  paths: ['deps/**/*']
)yaml");
  auto first = farm_->FollowBuild(StartBuild("cached"));
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->build.build_status(), BuildStatus::SUCCEEDED) << first->log;
  EXPECT_THAT(first->log, HasSubstr("cache-miss"));
  // A second agent with more free slots, and a coordinator restart (which forgets which agent built
  // the project last): only the warm cache the first agent reports can route the build back to it.
  ASSERT_THAT(farm_->StartAgent(4), IsOk());
  ASSERT_THAT(farm_->StopCoordinator(SIGTERM), IsOk());
  ASSERT_THAT(farm_->StartCoordinator(), IsOk());
  const std::string a0 = farm_->AgentId(0), a1 = farm_->AgentId(1);
  ASSERT_THAT(PollUntil(absl::Seconds(30), "both agents reconnected",
                        [&] {
                          auto c0 = farm_->AgentConnected(a0);
                          auto c1 = farm_->AgentConnected(a1);
                          return c0.ok() && *c0 && c1.ok() && *c1;
                        }),
              IsOk());
  auto second = farm_->FollowBuild(StartBuild("cached"));
  ASSERT_THAT(second, IsOk());
  ASSERT_EQ(second->build.build_status(), BuildStatus::SUCCEEDED) << second->log;
  EXPECT_THAT(second->log, HasSubstr("cache-hit v1"));
  EXPECT_EQ(second->build.agent_id(), a0);
}

TEST_F(CompatE2eTest, BuildTimeoutEndsTimedOutAndQueuedTimeoutEndsAQueuedBuild) {
  StartFarm(/*slots=*/1, /*minute_millis=*/200);  // timeout_minutes 5 = 1 s
  MakeProject("slow", BuildOnly({"echo started; sleep 60"}), {}, "timeout_minutes: 5\n");
  auto f = farm_->FollowBuild(StartBuild("slow"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->build.build_status(), BuildStatus::TIMED_OUT) << f->log;
  const auto* build = FindPhase(f->build, BuildPhaseType::BUILD);
  ASSERT_NE(build, nullptr);
  EXPECT_EQ(build->phase_status(), BuildStatus::TIMED_OUT);

  // No agent carries gpu=yes: the build waits in the queue past queued_timeout_minutes.
  MakeProject("stuck", BuildOnly({"echo never"}), {},
              "queued_timeout_minutes: 5\nagent_labels: {gpu: \"yes\"}\n");
  auto q = farm_->WaitForBuild(StartBuild("stuck"), [](const Build& b) { return b.build_complete(); },
                               absl::Seconds(30));
  ASSERT_THAT(q, IsOk());
  EXPECT_EQ(q->build_status(), BuildStatus::TIMED_OUT);
  const auto* queued = FindPhase(*q, BuildPhaseType::QUEUED);
  ASSERT_NE(queued, nullptr);
  EXPECT_EQ(queued->phase_status(), BuildStatus::TIMED_OUT);
  ASSERT_GE(queued->contexts_size(), 1);
  EXPECT_THAT(queued->contexts(0).message(), HasSubstr("5 minutes"));
  EXPECT_EQ(FindPhase(*q, BuildPhaseType::BUILD), nullptr);
}

TEST_F(CompatE2eTest, StopEndsABuildWithinFiveSecondsAndCancelsItsDockerBuild) {
  REQUIRE_DOCKER();
  StartFarm();
  const std::string marker = absl::StrCat("kiln-stop-", getpid(), "-", absl::ToUnixMicros(absl::Now()));
  MakeProject("stopme", BuildOnly({"docker build --no-cache -t " + marker + " ."}),
              {{"Dockerfile", absl::StrCat("FROM python:3.11-slim\nRUN echo ", marker, " && sleep 300\n")}});
  const std::string id = StartBuild("stopme");
  const std::string running = "docker ps --no-trunc --format '{{.Command}}' | grep -c " + marker;
  ASSERT_THAT(PollUntil(absl::Seconds(60), "the docker build's RUN container",
                        [&] { return absl::StripAsciiWhitespace(Shell(running)) == "1"; }),
              IsOk());
  const absl::Time asked = absl::Now();
  auto stop = farm_->Kiln({"build", "stop", id});
  ASSERT_THAT(stop, IsOk());
  ASSERT_EQ(stop->exit_code, 0) << stop->err;
  auto b = farm_->WaitForBuild(id, [](const Build& b) { return b.build_complete(); }, absl::Seconds(5));
  ASSERT_THAT(b, IsOk()) << "the build did not end within 5 s of the stop";
  EXPECT_LE(absl::Now() - asked, absl::Seconds(5));
  EXPECT_EQ(b->build_status(), BuildStatus::STOPPED);
  // The docker build is cancelled with the build's process tree: its RUN container goes away.
  EXPECT_THAT(PollUntil(absl::Seconds(5), "the RUN container to go",
                        [&] { return absl::StripAsciiWhitespace(Shell(running)) == "0"; }),
              IsOk());
}

TEST_F(CompatE2eTest, EnvironmentImageRunsTheBuildInAContainerAndPrivilegedGetsTheDockerSocket) {
  REQUIRE_DOCKER();
  StartFarm();
  MakeProject("inimage",
              BuildOnly({"test -f /.dockerenv && echo in-container",
                         "python3 -c 'import sys; print(\"python\", sys.version_info[0])'",
                         "test -S /var/run/docker.sock && echo has-socket"}),
              {}, "environment: {image: \"python:3.11-slim\", privileged: true}\n");
  auto f = farm_->FollowBuild(StartBuild("inimage"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED) << f->log;
  EXPECT_THAT(f->log, HasSubstr("in-container"));
  EXPECT_THAT(f->log, HasSubstr("python 3"));
  EXPECT_THAT(f->log, HasSubstr("has-socket"));
  EXPECT_EQ(absl::StripAsciiWhitespace(
                Shell("docker ps -aq --filter label=kiln.build-id=" + f->build.id() + " | wc -l")),
            "0");
}

TEST_F(CompatE2eTest, WebhookFilterGroupsPullRequestsDeliveriesAndSourcePolling) {
  StartFarm();
  const std::string secret = absl::StrCat("e2e-filter-secret-", absl::ToUnixNanos(absl::Now()));
  const std::string secret_file = dir_ + "/secret";
  std::ofstream(secret_file) << secret;
  fs::permissions(secret_file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  ASSERT_THAT(farm_->PutParameter("/kiln/webhooks/hooked", secret, /*secure=*/true), IsOk());
  auto repo = Repo::Create(dir_, "hooked");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->Commit({{"buildspec.yml",
                             BuildOnly({"echo \"version=$CODEBUILD_SOURCE_VERSION "
                                        "event=$CODEBUILD_WEBHOOK_EVENT\""})}},
                           "buildspec"),
              IsOk());
  ASSERT_THAT(repo->Git({"push", "-q", "origin", "main"}), IsOk());  // before the hook: no delivery
  ASSERT_THAT(repo->InstallWebhookHook(farm_->webhook_url(), secret_file), IsOk());
  ASSERT_THAT(farm_->ApplyProject("hooked", absl::StrCat(R"(name: hooked
source: {type: git, location: ")", repo->bare_path(), R"(", branch: main}
webhook:
  secret_parameter: /kiln/webhooks/hooked
  filter_groups:
    - - {type: EVENT, pattern: "PULL_REQUEST_CREATED, PULL_REQUEST_UPDATED"}
      - {type: BASE_REF, pattern: "^refs/heads/main$"}
    - - {type: EVENT, pattern: PUSH}
      - {type: HEAD_REF, pattern: "^refs/heads/main$"}
      - {type: FILE_PATH, pattern: "^docs/", exclude_matched_pattern: true}
)")),
              IsOk());
  auto builds = [&] {
    auto ids = farm_->ListBuildIds("hooked");
    return ids.ok() ? ids->size() : size_t{999};
  };

  // A push touching only docs/ is excluded by FILE_PATH: no build, and the delivery says why.
  ASSERT_THAT(repo->Commit({{"docs/guide.md", "guide\n"}}, "docs"), IsOk());
  auto push = repo->Push();
  ASSERT_THAT(push, IsOk());
  EXPECT_EQ(builds(), 0u);
  auto deliveries = farm_->Kiln({"webhook", "deliveries", "--project", "hooked"});
  ASSERT_THAT(deliveries, IsOk());
  EXPECT_THAT(deliveries->out, HasSubstr("FILE_PATH"));

  // A push to main with a source change builds.
  auto code = repo->Commit({{"src.txt", "v1\n"}}, "code");
  ASSERT_THAT(code, IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  ASSERT_THAT(PollUntil(absl::Seconds(30), "the push build", [&] { return builds() == 1u; }), IsOk());

  // A pull request opened from a feature branch: the PR build checks out its head and reports pr/5.
  ASSERT_THAT(repo->Git({"checkout", "-q", "-b", "feature"}), IsOk());
  auto head = repo->Commit({{"src.txt", "feature\n"}}, "feature");
  ASSERT_THAT(head, IsOk());
  ASSERT_THAT(repo->Git({"push", "-q", "origin", "feature"}), IsOk());  // HEAD_REF: no build
  const std::string body = absl::StrCat(
      R"({"action":"opened","number":5,"pull_request":{"number":5,"title":"Feature",)",
      R"("head":{"ref":"feature","sha":")", *head, R"("},"base":{"ref":"main","repo":{"clone_url":")",
      repo->bare_path(), R"("}}},"repository":{"clone_url":")", repo->bare_path(),
      R"("},"sender":{"id":4242}})");
  httplib::Client http("127.0.0.1", farm_->http_port());
  httplib::Headers headers = {{"X-GitHub-Event", "pull_request"},
                              {"X-GitHub-Delivery", absl::StrCat("pr-", absl::ToUnixNanos(absl::Now()))},
                              {"X-Hub-Signature-256", coordinator::ComputeGitHubSignature(body, secret)}};
  auto res = http.Post("/webhooks/github", headers, body, "application/json");
  ASSERT_TRUE(res) << "the coordinator did not answer";
  EXPECT_EQ(res->status, 200) << res->body;
  ASSERT_THAT(PollUntil(absl::Seconds(30), "the PR build", [&] { return builds() == 2u; }), IsOk());
  auto ids = farm_->ListBuildIds("hooked");
  ASSERT_THAT(ids, IsOk());
  auto pr = farm_->FollowBuild(ids->front());
  ASSERT_THAT(pr, IsOk());
  EXPECT_EQ(pr->build.build_status(), BuildStatus::SUCCEEDED) << pr->log;
  EXPECT_EQ(pr->build.resolved_source_version(), *head);
  EXPECT_EQ(pr->build.webhook().trigger(), "pr/5");
  EXPECT_THAT(pr->log, HasSubstr("version=pr/5 event=PULL_REQUEST_CREATED"));

  // Source polling (no webhooks): the first poll records the head; a new commit starts one build.
  auto polled = Repo::Create(dir_, "polled");
  ASSERT_THAT(polled, IsOk());
  ASSERT_THAT(polled->Commit({{"buildspec.yml", BuildOnly({"echo polled"})}}, "first"), IsOk());
  ASSERT_THAT(polled->Git({"push", "-q", "origin", "main"}), IsOk());
  ASSERT_THAT(farm_->ApplyProject("polled", absl::StrCat("name: polled\nsource: {type: git, location: \"",
                                                         polled->bare_path(),
                                                         "\", branch: main, poll_interval_seconds: 10}\n")),
              IsOk());
  ASSERT_THAT(PollUntil(absl::Seconds(30), "the first poll",
                        [&] {
                          // The poller logs the head it recorded (poller/source_poller.cc).
                          return absl::StrContains(farm_->DaemonLogs(),
                                                   "poller: project polled: refs/heads/main is at");
                        }),
              IsOk());
  auto second = polled->Commit({{"src.txt", "x\n"}}, "second");
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT(polled->Git({"push", "-q", "origin", "main"}), IsOk());
  ASSERT_THAT(PollUntil(absl::Seconds(40), "a build started by polling",
                        [&] {
                          auto ids = farm_->ListBuildIds("polled");
                          return ids.ok() && ids->size() == 1;
                        }),
              IsOk());
  auto polled_ids = farm_->ListBuildIds("polled");
  auto b = farm_->GetBuild(polled_ids->front());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->initiator(), "poll");
  EXPECT_EQ(b->source_version(), *second);
}

}  // namespace
}  // namespace kiln::e2e
