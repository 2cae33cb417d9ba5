// End-to-end deployments (issue 4): the real kiln-coordinator and three kiln-agent processes (three
// "hosts": separate work dirs and deployment roots, each with its own APP_PORT), the kiln CLI, git,
// dockerd and the local registry. examples/flask-app is built and its image pushed; its build
// artifact (appspec.yml + deploy/ hooks) is the revision rolled out OneAtATime by a deployment group;
// the app must then answer on every host. A second revision whose ValidateService fails on one host
// fails the deployment, is rolled back automatically, and the previous version answers everywhere.
// Through a pipeline (Source → Build → Approval → Deploy) a push ends deployed on three hosts.
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "kiln/v1/deploy.pb.h"
#include "tests/e2e/farm.h"
#include "tests/testing/status_matchers.h"

namespace kiln::e2e {
namespace {

namespace fs = std::filesystem;
using ::kiln::test::IsOk;
using ::kiln::v1::BuildStatus;
using ::testing::HasSubstr;
using ::testing::Not;

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

bool UnderCi() {
  const std::string ci = EnvOr("CI", "");
  return ci == "true" || ci == "1";
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// GET http://127.0.0.1:<port>/version, or "" if nothing answers.
std::string AppVersion(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1, 0);
  c.set_read_timeout(2, 0);
  auto r = c.Get("/version");
  return r && r->status == 200 ? r->body : "";
}

class DeployE2eTest : public ::testing::Test {
 protected:
  static constexpr int kHosts = 3;

  void SetUp() override {
    registry_ = EnvOr("KILN_REGISTRY", "127.0.0.1:5000");
    password_ = std::string(absl::StripAsciiWhitespace(
        ReadAll(EnvOr("KILN_REGISTRY_PASSWORD_FILE", "/var/lib/kiln-dev/registry/password"))));
    if (std::system("docker image inspect python:3.11-slim >/dev/null 2>&1") != 0 || password_.empty()) {
      if (UnderCi()) GTEST_FAIL() << "CI=true but no Docker engine / registry (run tools/dev/setup.sh)";
      GTEST_SKIP() << "needs dockerd, python:3.11-slim and the local registry (tools/dev/setup.sh)";
    }
    std::string t = absl::StrCat(::testing::TempDir(), "kiln-deploy-",
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name(), "-XXXXXX");
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
    // Ports for the three hosts' app containers, distinct per test run.
    const int base = 20000 + static_cast<int>(absl::ToUnixMicros(absl::Now()) % 20000);
    for (int i = 0; i < kHosts; ++i) ports_.push_back(base + i);
  }

  void TearDown() override {
    for (int port : ports_) {
      std::system(absl::StrCat("docker rm -f flask-app-", port, " >/dev/null 2>&1").c_str());
    }
    if (HasFailure() && farm_ != nullptr) {
      std::cerr << "deploy e2e: files kept in " << dir_ << "\n";
      for (const auto& e : fs::directory_iterator(dir_ + "/logs")) {
        const std::string text = ReadAll(e.path().string());
        std::cerr << "---- tail of " << e.path().string() << "\n"
                  << text.substr(text.size() > 6000 ? text.size() - 6000 : 0) << "\n";
      }
    }
    farm_.reset();
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
  }

  // Coordinator, three agents labelled role=web with APP_PORT set, parameters, the flask-app project
  // and its repository (the example app), the application and the deployment group.
  void StartFarmAndProject() {
    farm_ = std::make_unique<Farm>(dir_, Farm::Options{});
    ASSERT_THAT(farm_->StartCoordinator(), IsOk());
    for (int i = 0; i < kHosts; ++i) {
      ASSERT_THAT(farm_->StartAgent(1, "role=web,docker=true", -1,
                                    {{"APP_PORT", absl::StrCat(ports_[i])}}),
                  IsOk());
    }
    ASSERT_THAT(farm_->PutParameter("/flask-app/docker-credentials/username",
                                    EnvOr("KILN_REGISTRY_USER", "kiln"), false),
                IsOk());
    ASSERT_THAT(farm_->PutParameter("/flask-app/docker-credentials/password", password_, true), IsOk());
    ASSERT_THAT(farm_->PutParameter("/flask-app/docker-registry/url", registry_, false), IsOk());
    auto repo = Repo::Create(dir_, "flask-app");
    ASSERT_THAT(repo, IsOk());
    repo_ = std::make_unique<Repo>(*std::move(repo));
    ASSERT_THAT(repo_->CopyIn(SourceDir() + "/examples/flask-app"), IsOk());
    ASSERT_THAT(farm_->ApplyProject(
                    "flask-app", absl::StrCat("name: flask-app\nsource: {type: git, location: \"",
                                              repo_->bare_path(),
                                              "\", branch: main}\nwebhook: {secret_parameter: "
                                              "/kiln/webhooks/flask-app}\n")),
                IsOk());
    // The bare repository's post-receive hook sends signed GitHub-style push deliveries.
    const std::string secret = absl::StrCat(absl::ToUnixNanos(absl::Now()), "-e2e-webhook-secret");
    const std::string secret_file = dir_ + "/webhook-secret";
    std::ofstream(secret_file) << secret;
    fs::permissions(secret_file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
    ASSERT_THAT(farm_->PutParameter("/kiln/webhooks/flask-app", secret, /*secure=*/true), IsOk());
    ASSERT_THAT(repo_->InstallWebhookHook(farm_->webhook_url(), secret_file), IsOk());
    auto app = farm_->Kiln({"deploy", "app", "create", "flask-app"});
    ASSERT_THAT(app, IsOk());
    ASSERT_EQ(app->exit_code, 0) << app->err;
    const std::string group = dir_ + "/deployment-group.yaml";
    fs::copy_file(SourceDir() + "/examples/flask-app/deployment-group.yaml", group);
    auto g = farm_->Kiln({"deploy", "group", "apply", "-f", group});
    ASSERT_THAT(g, IsOk());
    ASSERT_EQ(g->exit_code, 0) << g->err;
  }

  // Commits `files` (plus a unique marker so every run has its own image tag), pushes, builds
  // flask-app at that commit and returns {build id, commit}.
  std::pair<std::string, std::string> Build(const std::map<std::string, std::string>& files) {
    std::map<std::string, std::string> all = files;
    all[".e2e-run"] = absl::StrCat(absl::ToUnixNanos(absl::Now()));
    auto sha = repo_->Commit(all, "change");
    EXPECT_THAT(sha, IsOk());
    EXPECT_THAT(repo_->Git({"push", "-q", "origin", "main"}), IsOk());
    auto r = farm_->Kiln({"build", "start", "flask-app", "--source-version", *sha});
    EXPECT_THAT(r, IsOk());
    const std::string id(absl::StripAsciiWhitespace(r->out));
    auto f = farm_->FollowBuild(id, absl::Seconds(300));
    EXPECT_THAT(f, IsOk());
    EXPECT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED) << f->log;
    return {id, *sha};
  }

  kiln::v1::Deployment GetDeployment(const std::string& id) {
    kiln::v1::Deployment d;
    auto r = farm_->Kiln({"deploy", "get", id, "--json"});
    EXPECT_THAT(r, IsOk());
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r->out, &d).ok()) << r->out;
    return d;
  }

  // `kiln deploy create ... --wait`: {exit code, deployment id}.
  std::pair<int, std::string> Deploy(const std::string& build_id) {
    auto r = farm_->Kiln({"deploy", "create", "--application", "flask-app", "--group", "web", "--build",
                          build_id, "--wait"},
                         absl::Seconds(300));
    EXPECT_THAT(r, IsOk());
    return {r->exit_code, std::string(absl::StripAsciiWhitespace(r->out))};
  }

  std::string registry_, password_, dir_;
  std::vector<int> ports_;
  std::unique_ptr<Farm> farm_;
  std::unique_ptr<Repo> repo_;
};

TEST_F(DeployE2eTest, OneAtATimeDeploysToThreeHostsAndAFailedValidateServiceIsRolledBack) {
  ASSERT_NO_FATAL_FAILURE(StartFarmAndProject());

  // 1. Build v1 and deploy it OneAtATime: the app answers v1 on every host.
  auto [build1, v1] = Build({});
  auto [code1, d1] = Deploy(build1);
  ASSERT_EQ(code1, 0) << "deployment " << d1 << " of v1 did not succeed";
  kiln::v1::Deployment dep1 = GetDeployment(d1);
  EXPECT_EQ(dep1.status(), "Succeeded");
  ASSERT_EQ(dep1.targets_size(), kHosts);
  for (const auto& t : dep1.targets()) {
    EXPECT_EQ(t.status(), "Succeeded") << t.agent_id();
    ASSERT_EQ(t.lifecycle_events_size(), 7);
    EXPECT_EQ(t.lifecycle_events(0).name(), "ApplicationStop");
    EXPECT_EQ(t.lifecycle_events(6).name(), "ValidateService");
    EXPECT_EQ(t.lifecycle_events(6).status(), "Succeeded");
  }
  // OneAtATime: no two hosts' event windows overlap.
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (const auto& t : dep1.targets()) {
    windows.emplace_back(t.lifecycle_events(0).start_time().seconds() * 1000 +
                             t.lifecycle_events(0).start_time().nanos() / 1000000,
                         t.lifecycle_events(6).end_time().seconds() * 1000 +
                             t.lifecycle_events(6).end_time().nanos() / 1000000);
  }
  std::sort(windows.begin(), windows.end());
  for (size_t i = 1; i < windows.size(); ++i) EXPECT_LE(windows[i - 1].second, windows[i].first);
  for (int port : ports_) EXPECT_EQ(AppVersion(port), v1) << "port " << port;
  // The host's log holds the hooks' output.
  auto logs = farm_->Kiln({"deploy", "logs", d1, "--host", dep1.targets(0).agent_id()});
  ASSERT_THAT(logs, IsOk());
  EXPECT_THAT(logs->out, HasSubstr("answers version " + v1));

  // 2. v2 fails ValidateService on one host: the deployment fails and is rolled back. OneAtATime
  //    lets the LAST host fail without failing the deployment (§4.9), and the host order is the
  //    coordinator's, so two hosts refuse v2: whichever comes first fails and stops the rollout.
  auto [build2, v2] = Build({{"deploy/fail-on", absl::StrCat(ports_[1], "\n", ports_[2], "\n")}});
  auto [code2, d2] = Deploy(build2);
  EXPECT_NE(code2, 0);
  kiln::v1::Deployment dep2 = GetDeployment(d2);
  EXPECT_EQ(dep2.status(), "Failed");
  EXPECT_THAT(dep2.error_message(), HasSubstr("ValidateService"));
  int failed_hosts = 0;
  for (const auto& t : dep2.targets()) failed_hosts += t.status() == "Failed";
  EXPECT_EQ(failed_hosts, 1) << "OneAtATime stops at the first failed host";
  ASSERT_FALSE(dep2.rolled_back_by().empty()) << "no automatic rollback";
  ASSERT_THAT(PollUntil(absl::Seconds(180), "the rollback to finish",
                        [&] {
                          kiln::v1::Deployment r = GetDeployment(dep2.rolled_back_by());
                          return r.status() == "Succeeded" || r.status() == "Failed" ||
                                 r.status() == "Stopped";
                        },
                        absl::Milliseconds(500)),
              IsOk());
  kiln::v1::Deployment rollback = GetDeployment(dep2.rolled_back_by());
  EXPECT_EQ(rollback.status(), "Succeeded");
  EXPECT_EQ(rollback.creator(), "codeDeployRollback");
  EXPECT_EQ(rollback.rollback_of(), d2);
  EXPECT_EQ(rollback.revision().build_artifact().build_id(), build1);
  for (int port : ports_) EXPECT_EQ(AppVersion(port), v1) << "port " << port << " after the rollback";
}

TEST_F(DeployE2eTest, AHookOverItsTimeoutIsKilledAndItsEventFails) {
  ASSERT_NO_FATAL_FAILURE(StartFarmAndProject());
  // An appspec whose ApplicationStart sleeps past its 2 s timeout.
  std::string appspec = ReadAll(SourceDir() + "/examples/flask-app/appspec.yml");
  appspec = absl::StrReplaceAll(appspec, {{"location: deploy/start.sh\n      timeout: 300",
                                           "location: deploy/slow.sh\n      timeout: 2"}});
  ASSERT_THAT(appspec, HasSubstr("deploy/slow.sh"));
  auto [build, sha] = Build({{"appspec.yml", appspec}, {"deploy/slow.sh", "#!/bin/sh\nsleep 600\n"}});
  auto [code, id] = Deploy(build);
  EXPECT_NE(code, 0);
  kiln::v1::Deployment d = GetDeployment(id);
  EXPECT_EQ(d.status(), "Failed");
  bool found = false;
  for (const auto& t : d.targets()) {
    for (const auto& e : t.lifecycle_events()) {
      if (e.name() != "ApplicationStart" || e.status() != "Failed") continue;
      found = true;
      EXPECT_EQ(e.error_code(), 3);
      EXPECT_THAT(e.message(), HasSubstr("failed to complete in 2 seconds"));
      EXPECT_LT(e.duration_millis(), 30000);
    }
  }
  EXPECT_TRUE(found) << "no host reports ApplicationStart Failed";
  EXPECT_EQ(absl::StripAsciiWhitespace(
                [] {
                  std::string out;
                  FILE* p = popen("pgrep -f 'deploy/[s]low[.]sh' | wc -l", "r");
                  char buf[64];
                  while (p != nullptr && fgets(buf, sizeof(buf), p) != nullptr) out += buf;
                  if (p != nullptr) pclose(p);
                  return out;
                }()),
            "0")
      << "the timed-out hook is still running";
}

TEST_F(DeployE2eTest, APushRunsThePipelineThroughApprovalToDeployedOnThreeHosts) {
  ASSERT_NO_FATAL_FAILURE(StartFarmAndProject());
  const std::string pipeline = dir_ + "/pipeline.yaml";
  fs::copy_file(SourceDir() + "/examples/flask-app/pipeline.yaml", pipeline);
  auto applied = farm_->Kiln({"pipeline", "apply", "-f", pipeline});
  ASSERT_THAT(applied, IsOk());
  ASSERT_EQ(applied->exit_code, 0) << applied->err;
  // A push: the webhook delivery starts the pipeline (Source action on the project).
  auto sha = repo_->Commit({{".e2e-run", absl::StrCat(absl::ToUnixNanos(absl::Now()))}}, "pipeline run");
  ASSERT_THAT(sha, IsOk());
  auto push = repo_->Push();
  ASSERT_THAT(push, IsOk());
  EXPECT_THAT(push->err, HasSubstr("HTTP 200"));
  // Wait for the approval, approve, wait for the execution to end.
  kiln::v1::GetPipelineResponse state;
  ASSERT_THAT(PollUntil(absl::Seconds(300), "the Approve stage to wait",
                        [&] {
                          auto g = farm_->Kiln({"pipeline", "get", "flask-app", "--json"});
                          state.Clear();
                          return g.ok() &&
                                 google::protobuf::util::JsonStringToMessage(g->out, &state).ok() &&
                                 absl::StrContains(g->out, "\"Waiting\"");
                        },
                        absl::Milliseconds(500)),
              IsOk());
  ASSERT_GE(state.executions_size(), 1);
  EXPECT_EQ(state.executions(0).source_commit(), *sha);
  EXPECT_EQ(state.executions(0).trigger(), "webhook");
  const std::string execution = state.executions(0).id();
  auto approve = farm_->Kiln({"pipeline", "approve", "flask-app", "--execution", execution, "--stage",
                              "Approve", "--action", "Approve", "--summary", "ship it"});
  ASSERT_THAT(approve, IsOk());
  ASSERT_EQ(approve->exit_code, 0) << approve->err;
  ASSERT_THAT(PollUntil(absl::Seconds(300), "the execution to end",
                        [&] {
                          auto g = farm_->Kiln({"pipeline", "get", "flask-app"});
                          return g.ok() && (absl::StrContains(g->out, "Succeeded") &&
                                                absl::StrContains(g->out, execution) &&
                                                !absl::StrContains(g->out, "InProgress") ||
                                            absl::StrContains(g->out, "Failed"));
                        },
                        absl::Milliseconds(500)),
              IsOk());
  auto shown = farm_->Kiln({"pipeline", "get", "flask-app"});
  ASSERT_THAT(shown, IsOk());
  EXPECT_THAT(shown->out, Not(HasSubstr("Failed"))) << shown->out;
  for (int port : ports_) EXPECT_EQ(AppVersion(port), *sha) << "port " << port;
}

}  // namespace
}  // namespace kiln::e2e
