// End-to-end behaviour of Kiln as it is deployed: kiln-coordinator and kiln-agent as real processes
// (signalled with SIGTERM/SIGKILL), the kiln CLI, real git repositories with the real post-receive
// webhook hook, and (for the image build) the real dockerd and registry. The in-process farm tests
// (tests/integration/farm_test.cc) cover the protocol details; these cover what only real processes
// show: signals, restarts on the same data dir and ports, process trees, exit codes, the hook script.
//
// Registry settings come from KILN_REGISTRY (default 127.0.0.1:5000), KILN_REGISTRY_USER (kiln) and
// KILN_REGISTRY_PASSWORD_FILE (/var/lib/kiln-dev/registry/password), as tools/dev/test.sh exports
// them. Without a usable Docker engine the Docker test is skipped, or fails under CI=true.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "coordinator/http/webhook.h"
#include "tests/e2e/farm.h"
#include "tests/testing/build_helpers.h"
#include "tests/testing/status_matchers.h"

namespace kiln::e2e {
namespace {

namespace fs = std::filesystem;
using ::kiln::test::IsOk;
using ::kiln::v1::Build;
using ::kiln::v1::BuildPhaseType;
using ::kiln::v1::BuildStatus;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using ::kiln::test::FindPhase;
using ::kiln::test::Millis;

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  std::ifstream("/dev/urandom", std::ios::binary).read(raw.data(), static_cast<std::streamsize>(bytes));
  static const char* d = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : raw) {
    hex += d[c >> 4];
    hex += d[c & 15];
  }
  return hex;
}


std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

bool UnderCi() {
  const std::string ci = EnvOr("CI", "");
  return ci == "true" || ci == "1";
}

// A project.yaml for `name` building `location` (branch main, buildspec.yml), with a webhook secret
// parameter /kiln/webhooks/<name>, plus `extra` lines.
std::string ProjectYaml(const std::string& name, const std::string& location, const std::string& extra = "") {
  return absl::StrCat("name: ", name, "\nsource: {type: git, location: \"", location,
                      "\", branch: main, buildspec: buildspec.yml}\nwebhook: {secret_parameter: /kiln/webhooks/",
                      name, "}\n", extra);
}

// A buildspec whose build phase runs `commands` (YAML list items, already quoted as needed).
std::string BuildOnly(const std::vector<std::string>& commands) {
  std::string s = "version: 0.2\nphases:\n  build:\n    commands:\n";
  for (const auto& c : commands) absl::StrAppend(&s, "      - ", c, "\n");
  return s;
}

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = absl::StrCat(::testing::TempDir(), "kiln-e2e-",
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name(), "-XXXXXX");
    ASSERT_NE(mkdtemp(t.data()), nullptr);
    dir_ = t;
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "e2e: the farm's files are kept in " << dir_ << "\n";
      if (fs::exists(dir_ + "/logs")) {
        for (const auto& e : fs::directory_iterator(dir_ + "/logs")) {
          std::vector<std::string> lines = absl::StrSplit(ReadFile(e.path().string()), '\n');
          const size_t from = lines.size() > 40 ? lines.size() - 40 : 0;
          std::cerr << "---- last lines of " << e.path().string() << "\n";
          for (size_t i = from; i < lines.size(); ++i) std::cerr << lines[i] << "\n";
        }
      }
    }
    farm_.reset();  // SIGTERM agents and coordinator
    if (!HasFailure()) fs::remove_all(dir_);
  }

  absl::Status StartFarm(Farm::Options options = {}) {
    farm_ = std::make_unique<Farm>(dir_, options);
    return farm_->StartCoordinator();
  }

  // `kiln build start ARGS...`: the new build's id.
  std::string StartBuild(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"build", "start"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = farm_->Kiln(argv);
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return std::string(absl::StripAsciiWhitespace(r->out));
  }

  // A fresh webhook secret, stored as the SecureString parameter /kiln/webhooks/<project> and in a
  // file for the hook. Returns the file's path.
  std::string MakeWebhookSecret(const std::string& project) {
    secret_ = RandomHex(32);
    const std::string file = dir_ + "/webhook-secret";
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, secret_.data(), secret_.size()), static_cast<ssize_t>(secret_.size()));
    close(fd);
    EXPECT_THAT(farm_->PutParameter("/kiln/webhooks/" + project, secret_, /*secure=*/true), IsOk());
    return file;
  }

  // Stops an agent with `signal` while its build runs `sleep 600`; checks the build ends FAULT with a
  // reason naming the agent, and (if `tree_must_be_gone`) that the build's processes died with it.
  void AgentLossEndsTheBuildFault(int signal, bool tree_must_be_gone);

  std::string dir_;
  std::string secret_;
  std::unique_ptr<Farm> farm_;
};

TEST_F(E2eTest, PushWithSignedWebhookBuildsTheImageIntoTheRegistry) {
  const std::string registry = EnvOr("KILN_REGISTRY", "127.0.0.1:5000");
  const std::string user = EnvOr("KILN_REGISTRY_USER", "kiln");
  const std::string password_file = EnvOr("KILN_REGISTRY_PASSWORD_FILE", "/var/lib/kiln-dev/registry/password");
  {
    std::string why;
    auto info = e2e::Run({"docker", "info"}, ::testing::TempDir(), absl::Seconds(60));
    if (!info.ok()) {
      why = absl::StrCat("`docker info` could not run: ", info.status().ToString());
    } else if (info->exit_code != 0) {
      why = absl::StrCat("`docker info` failed (exit ", info->exit_code, "): ", info->err);
    } else if (access(password_file.c_str(), R_OK) != 0) {
      why = absl::StrCat("the registry password file ", password_file, " is not readable");
    }
    if (!why.empty()) {
      if (UnderCi()) FAIL() << "CI=true and no usable Docker engine/registry: " << why;
      GTEST_SKIP() << "no usable Docker engine/registry: " << why;
    }
  }
  const std::string password(absl::StripTrailingAsciiWhitespace(ReadFile(password_file)));
  ASSERT_FALSE(password.empty());

  ASSERT_THAT(StartFarm(), IsOk());
  for (int i = 0; i < 2; ++i) ASSERT_THAT(farm_->StartAgent(1, "docker=true,role=builder"), IsOk());
  ASSERT_THAT(farm_->PutParameter("/flask-app/docker-credentials/username", user, false), IsOk());
  ASSERT_THAT(farm_->PutParameter("/flask-app/docker-credentials/password", password, true), IsOk());
  ASSERT_THAT(farm_->PutParameter("/flask-app/docker-registry/url", registry, false), IsOk());
  const std::string secret_file = MakeWebhookSecret("flask-app");

  auto repo = Repo::Create(dir_, "flask-app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->InstallWebhookHook(farm_->webhook_url(), secret_file), IsOk());
  // The example's own project.yaml, pointed at this test's repository.
  const std::string project = ReadFile(SourceDir() + "/examples/flask-app/project.yaml");
  ASSERT_THAT(project, HasSubstr("/srv/git/flask-app.git"));
  ASSERT_THAT(farm_->ApplyProject("flask-app", absl::StrReplaceAll(project, {{"/srv/git/flask-app.git",
                                                                               repo->bare_path()}})),
              IsOk());

  ASSERT_THAT(repo->CopyIn(SourceDir() + "/examples/flask-app"), IsOk());
  // One extra post_build command prints the secure password: the log must show it masked.
  std::string buildspec = ReadFile(repo->work_path() + "/buildspec.yml");
  const std::string last_post_build = "      - echo \"Build completed on $(date)\"\n";
  ASSERT_TRUE(absl::StrContains(buildspec, last_post_build));
  buildspec = absl::StrReplaceAll(
      buildspec, {{last_post_build,
                   last_post_build + "      - echo \"masked=$DOCKER_REGISTRY_PASSWORD\"\n"}});
  // A random file makes the commit (and so the image tag) unique to this run.
  auto sha = repo->Commit({{"buildspec.yml", buildspec}, {".e2e-run", RandomHex(16)}}, "Flask example app");
  ASSERT_THAT(sha, IsOk());
  auto push = repo->Push();
  ASSERT_THAT(push, IsOk());
  EXPECT_THAT(push->err, HasSubstr("kiln: refs/heads/main: HTTP 200"));

  auto ids = farm_->ListBuildIds("flask-app");
  ASSERT_THAT(ids, IsOk());
  ASSERT_EQ(ids->size(), 1u) << "the push must start exactly one build";
  const std::string id = ids->front();
  auto f = farm_->FollowBuild(id, absl::Minutes(9));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->exit_code, 0) << f->progress;
  EXPECT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED) << f->progress;
  EXPECT_EQ(f->build.resolved_source_version(), *sha);
  EXPECT_EQ(f->build.initiator(), "webhook/github");
  EXPECT_EQ(f->build.webhook().head_ref(), "refs/heads/main");
  // The deployment revision: appspec.yml and the hook scripts (examples/flask-app/buildspec.yml).
  ASSERT_EQ(f->build.artifacts_size(), 1);
  EXPECT_EQ(f->build.artifacts(0).file_count(), 5);
  ids = farm_->ListBuildIds("flask-app");
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ids->size(), 1u);

  httplib::Client reg("http://" + registry);
  reg.set_basic_auth(user.c_str(), password.c_str());
  auto tags = reg.Get("/v2/flask-app/tags/list");
  ASSERT_TRUE(tags) << "registry " << registry << " did not answer";
  ASSERT_EQ(tags->status, 200) << tags->body;
  nlohmann::json doc = nlohmann::json::parse(tags->body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(doc.is_object() && doc["tags"].is_array()) << tags->body;
  EXPECT_THAT(doc["tags"].get<std::vector<std::string>>(), Contains(*sha));

  auto stored = farm_->Kiln({"build", "logs", id});
  ASSERT_THAT(stored, IsOk());
  ASSERT_EQ(stored->exit_code, 0) << stored->err;
  EXPECT_THAT(stored->out, HasSubstr("masked=***"));
  // Never print these logs on failure: they would carry the password.
  EXPECT_FALSE(absl::StrContains(stored->out, password)) << "the registry password is in the stored build log";
  EXPECT_FALSE(absl::StrContains(f->log, password)) << "the registry password is in the followed build log";
  EXPECT_FALSE(absl::StrContains(farm_->DaemonLogs(), password)) << "the registry password is in a daemon log";
}

TEST_F(E2eTest, LimitOneWithThreeQuickPushesRunsOneAtATimeInOrder) {
  ASSERT_THAT(StartFarm(), IsOk());
  ASSERT_THAT(farm_->StartAgent(2), IsOk());
  ASSERT_THAT(farm_->StartAgent(2), IsOk());
  const std::string secret_file = MakeWebhookSecret("app");
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->InstallWebhookHook(farm_->webhook_url(), secret_file), IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path(), "concurrent_build_limit: 1\n")), IsOk());

  const std::string spec = BuildOnly({"sleep 1", "echo \"built $CODEBUILD_RESOLVED_SOURCE_VERSION\""});
  std::vector<std::string> shas;
  for (int i = 0; i < 3; ++i) {
    auto sha = repo->Commit({{"buildspec.yml", spec}, {"push.txt", absl::StrCat(i, "\n")}}, absl::StrCat("push ", i));
    ASSERT_THAT(sha, IsOk());
    shas.push_back(*sha);
    auto push = repo->Push();
    ASSERT_THAT(push, IsOk());
    ASSERT_THAT(push->err, HasSubstr("kiln: refs/heads/main: HTTP 200")) << "push " << i;
  }

  auto ids = farm_->ListBuildIds("app");
  ASSERT_THAT(ids, IsOk());
  ASSERT_EQ(ids->size(), 3u);
  std::vector<Build> builds;
  for (const std::string& id : *ids) {
    auto f = farm_->FollowBuild(id);
    ASSERT_THAT(f, IsOk());
    EXPECT_EQ(f->exit_code, 0) << f->progress;
    EXPECT_THAT(f->log, HasSubstr("built " + f->build.resolved_source_version()));
    builds.push_back(f->build);
  }
  std::sort(builds.begin(), builds.end(),
            [](const Build& a, const Build& b) { return a.build_number() < b.build_number(); });
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(builds[i].build_number(), i + 1);
    EXPECT_EQ(builds[i].build_status(), BuildStatus::SUCCEEDED);
    EXPECT_EQ(builds[i].source_version(), shas[i]) << "build " << i + 1 << " is not push " << i + 1;
    EXPECT_EQ(builds[i].resolved_source_version(), shas[i]);
  }
  for (int i = 1; i < 3; ++i) {
    const auto* provisioning = FindPhase(builds[i], BuildPhaseType::PROVISIONING);
    ASSERT_NE(provisioning, nullptr);
    EXPECT_GE(Millis(provisioning->start_time()), Millis(builds[i - 1].end_time()))
        << "build " << i + 1 << " was provisioned before build " << i << " ended";
  }
}

TEST_F(E2eTest, SigkillOfTheCoordinatorLosesNoQueuedBuild) {
  ASSERT_THAT(StartFarm(), IsOk());
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->Commit({{"buildspec.yml", BuildOnly({"echo \"ran build $CODEBUILD_BUILD_NUMBER\""})}}, "c"), IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path())), IsOk());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(StartBuild({"app"}));
    auto b = farm_->GetBuild(ids.back());
    ASSERT_THAT(b, IsOk());
    EXPECT_EQ(b->current_phase(), BuildPhaseType::QUEUED);  // no agent yet
  }

  EXPECT_THAT(farm_->StopCoordinator(SIGKILL), ::kiln::test::IsOkAndHolds(128 + SIGKILL));
  ASSERT_THAT(farm_->StartCoordinator(), IsOk());
  ASSERT_THAT(farm_->StartAgent(1), IsOk());
  for (int i = 0; i < 3; ++i) {
    auto f = farm_->FollowBuild(ids[i]);
    ASSERT_THAT(f, IsOk());
    EXPECT_EQ(f->exit_code, 0) << f->progress;
    EXPECT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED);
    EXPECT_EQ(f->build.build_number(), i + 1);
    EXPECT_THAT(f->log, HasSubstr(absl::StrCat("ran build ", i + 1)));
  }
  // The build counter survived too.
  auto next = farm_->GetBuild(StartBuild({"app"}));
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->build_number(), 4);
}

TEST_F(E2eTest, SigkillOfTheCoordinatorDuringARunningBuildLetsTheAgentReattachAndFinishIt) {
  // One lease covers the restart plus the agent's reconnect backoff.
  ASSERT_THAT(StartFarm({.heartbeat_millis = 200, .lease_millis = 8000}), IsOk());
  ASSERT_THAT(farm_->StartAgent(1), IsOk());
  const std::string gate = dir_ + "/gate";
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->Commit({{"buildspec.yml",
                             BuildOnly({"echo before-the-kill",
                                        absl::StrCat("while [ ! -f '", gate, "' ]; do sleep 0.05; done"),
                                        "echo after-the-restart"})}},
                           "gated"),
              IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path())), IsOk());
  const std::string id = StartBuild({"app"});
  ASSERT_THAT(farm_->WaitForBuild(id, [&](const Build& b) {
    if (b.current_phase() != BuildPhaseType::BUILD) return b.build_complete();
    auto log = farm_->Kiln({"build", "logs", id});
    return log.ok() && absl::StrContains(log->out, "before-the-kill");
  }), IsOk());
  auto running = farm_->GetBuild(id);
  ASSERT_THAT(running, IsOk());
  ASSERT_EQ(running->current_phase(), BuildPhaseType::BUILD);

  EXPECT_THAT(farm_->StopCoordinator(SIGKILL), ::kiln::test::IsOkAndHolds(128 + SIGKILL));
  ASSERT_THAT(farm_->StartCoordinator(), IsOk());
  const std::string agent_id = farm_->AgentId(0);
  ASSERT_THAT(PollUntil(absl::Seconds(30), "the agent to reconnect", [&] {
    auto c = farm_->AgentConnected(agent_id);
    return c.ok() && *c;
  }), IsOk());
  std::ofstream(gate) << "go\n";

  auto f = farm_->FollowBuild(id);
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->exit_code, 0) << f->progress;
  EXPECT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED) << f->log;
  EXPECT_EQ(f->build.agent_id(), agent_id);
  // The full log, once: the command output from before the kill and from after the restart (the
  // "Running command ..." lines quote them too, hence the whole-line match).
  auto count_lines = [&](const std::string& line) {
    std::vector<std::string> parts = absl::StrSplit(f->log, absl::StrCat("\n", line, "\n"));
    return parts.size() - 1;
  };
  EXPECT_EQ(count_lines("before-the-kill"), 1u) << f->log;
  EXPECT_EQ(count_lines("after-the-restart"), 1u) << f->log;
  EXPECT_LT(f->log.find("\nbefore-the-kill\n"), f->log.find("\nafter-the-restart\n"));
  EXPECT_EQ(f->build.log_size_bytes(), static_cast<int64_t>(f->log.size()));
  EXPECT_TRUE(farm_->agent(0)->IsAlive());
}

TEST_F(E2eTest, BadSignatureIsRejectedWith401AndStartsNoBuild) {
  ASSERT_THAT(StartFarm(), IsOk());
  MakeWebhookSecret("app");
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  auto sha = repo->Commit({{"buildspec.yml", BuildOnly({"echo hi"})}}, "w");
  ASSERT_THAT(sha, IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path())), IsOk());
  const std::string body = absl::StrCat(
      R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":")", *sha,
      R"(","created":true,"deleted":false,"forced":false,"repository":{"name":"app","full_name":"local/app",)",
      R"("clone_url":")", repo->bare_path(), R"("},"commits":[],"head_commit":{"id":")", *sha,
      R"(","message":"w"},"sender":{"id":42,"login":"dev"}})");
  httplib::Client http("127.0.0.1", farm_->http_port());
  auto post = [&](const std::string& delivery, const std::string& signature) {
    httplib::Headers h = {{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", delivery}};
    if (!signature.empty()) h.emplace("X-Hub-Signature-256", signature);
    return http.Post("/webhooks/github", h, body, "application/json");
  };

  auto wrong = post("d-wrong", coordinator::ComputeGitHubSignature(body, "not-the-secret"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401) << wrong->body;
  auto unsigned_delivery = post("d-unsigned", "");
  ASSERT_TRUE(unsigned_delivery);
  EXPECT_EQ(unsigned_delivery->status, 401) << unsigned_delivery->body;
  auto ids = farm_->ListBuildIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, IsEmpty());

  // The same delivery correctly signed is accepted: the 401s were about the signature alone.
  auto good = post("d-good", coordinator::ComputeGitHubSignature(body, secret_));
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200) << good->body;
  ids = farm_->ListBuildIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ids->size(), 1u);
}

TEST_F(E2eTest, MalformedBuildspecFailsNamingFileLineAndKeyAndDaemonsStayUp) {
  ASSERT_THAT(StartFarm(), IsOk());
  ASSERT_THAT(farm_->StartAgent(1), IsOk());
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path())), IsOk());
  struct Case {
    std::string buildspec;
    std::string where;  // "buildspec.yml:<line>:"
    std::string key;
  };
  const std::vector<Case> cases = {
      // `- echo key: value` is the map {"echo key": "value"}, not a command.
      {BuildOnly({"echo fine", "echo key: value"}), "buildspec.yml:6:", "echo key"},
      {"version: 0.2\nphases:\n  biuld:\n    commands:\n      - echo typo\n", "buildspec.yml:3:", "biuld"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    auto sha = repo->Commit({{"buildspec.yml", c.buildspec}}, "bad");
    ASSERT_THAT(sha, IsOk());
    ASSERT_THAT(repo->Push(), IsOk());
    auto f = farm_->FollowBuild(StartBuild({"app", "--source-version", *sha}));
    ASSERT_THAT(f, IsOk());
    EXPECT_EQ(f->exit_code, 1);
    EXPECT_EQ(f->build.build_status(), BuildStatus::FAILED);
    const auto* ds = FindPhase(f->build, BuildPhaseType::DOWNLOAD_SOURCE);
    ASSERT_NE(ds, nullptr);
    EXPECT_EQ(ds->phase_status(), BuildStatus::FAILED);
    ASSERT_GE(ds->contexts_size(), 1);
    EXPECT_EQ(ds->contexts(0).status_code(), "YAML_FILE_ERROR");
    EXPECT_THAT(ds->contexts(0).message(), HasSubstr(c.where));
    EXPECT_THAT(ds->contexts(0).message(), HasSubstr(c.key));
    EXPECT_EQ(FindPhase(f->build, BuildPhaseType::BUILD), nullptr);
    EXPECT_TRUE(farm_->coordinator()->IsAlive());
    EXPECT_TRUE(farm_->agent(0)->IsAlive());
  }

  auto good = repo->Commit({{"buildspec.yml", BuildOnly({"echo fixed"})}}, "fix");
  ASSERT_THAT(good, IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  auto f = farm_->FollowBuild(StartBuild({"app"}));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->exit_code, 0) << f->progress;
  EXPECT_EQ(f->build.build_status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(f->build.resolved_source_version(), *good);
  EXPECT_THAT(f->log, HasSubstr("fixed"));
}

TEST_F(E2eTest, FailingBuildPhaseStillRunsPostBuild) {
  ASSERT_THAT(StartFarm(), IsOk());
  ASSERT_THAT(farm_->StartAgent(1), IsOk());
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  build:
    commands:
      - echo building
      - exit 7
      - echo never-printed
  post_build:
    commands:
      - echo "post_build succeeding=$CODEBUILD_BUILD_SUCCEEDING"
)"}}, "failing"),
              IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path())), IsOk());

  auto r = farm_->Kiln({"build", "start", "app", "--follow"}, absl::Seconds(120));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->exit_code, 1) << r->err;
  const std::string id(absl::StripAsciiWhitespace(r->out.substr(0, r->out.find('\n'))));
  EXPECT_THAT(r->out, HasSubstr("post_build succeeding=0"));
  EXPECT_THAT(r->out, Not(HasSubstr("never-printed")));
  EXPECT_THAT(r->err, HasSubstr("==> BUILD FAILED"));

  auto b = farm_->GetBuild(id);
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->build_status(), BuildStatus::FAILED);
  ASSERT_NE(FindPhase(*b, BuildPhaseType::BUILD), nullptr);
  EXPECT_EQ(FindPhase(*b, BuildPhaseType::BUILD)->phase_status(), BuildStatus::FAILED);
  ASSERT_NE(FindPhase(*b, BuildPhaseType::POST_BUILD), nullptr);
  EXPECT_EQ(FindPhase(*b, BuildPhaseType::POST_BUILD)->phase_status(), BuildStatus::SUCCEEDED);
  auto stored = farm_->Kiln({"build", "logs", id});
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->exit_code, 0);
  EXPECT_THAT(stored->out, HasSubstr("post_build succeeding=0"));
}

void E2eTest::AgentLossEndsTheBuildFault(int signal, bool tree_must_be_gone) {
  ASSERT_THAT(StartFarm({.heartbeat_millis = 200, .lease_millis = 2000}), IsOk());
  auto agent = farm_->StartAgent(1);
  ASSERT_THAT(agent, IsOk());
  const std::string agent_id = farm_->AgentId(*agent);
  // A unique argv[0] for the build's long sleep, to find it in /proc.
  const std::string marker = "kiln-e2e-sleeper-" + RandomHex(8);
  auto repo = Repo::Create(dir_, "app");
  ASSERT_THAT(repo, IsOk());
  ASSERT_THAT(repo->Commit({{"buildspec.yml", BuildOnly({"echo sleeping", "(exec -a " + marker + " sleep 600)"})}},
                           "sleeper"),
              IsOk());
  ASSERT_THAT(repo->Push(), IsOk());
  ASSERT_THAT(farm_->ApplyProject("app", ProjectYaml("app", repo->bare_path())), IsOk());
  const std::string id = StartBuild({"app"});
  const std::string build_env = "CODEBUILD_BUILD_ID=" + id + std::string(1, '\0');
  // Whatever happens, no process of this build outlives the test. They descend from the agent this
  // test started (after a SIGKILL of the agent nothing else can end them) and carry its marker.
  absl::Cleanup reap_leftovers = [&] {
    for (const std::string& needle : {marker, build_env}) {
      for (pid_t pid : FindProcesses(needle)) kill(pid, SIGKILL);
    }
  };
  ASSERT_THAT(PollUntil(absl::Seconds(60), "the build's sleep", [&] { return !FindProcesses(marker).empty(); }),
              IsOk());
  auto running = farm_->GetBuild(id);
  ASSERT_THAT(running, IsOk());
  EXPECT_EQ(running->current_phase(), BuildPhaseType::BUILD);

  EXPECT_THAT(farm_->StopAgent(*agent, signal), ::kiln::test::IsOkAndHolds(signal == SIGKILL ? 128 + SIGKILL : 0));
  if (tree_must_be_gone) {
    EXPECT_THAT(FindProcesses(marker), IsEmpty()) << "the build's sleep outlived the agent";
    EXPECT_THAT(FindProcesses(build_env), IsEmpty()) << "processes of build " << id << " outlived the agent";
  } else {
    // SIGKILL gives the agent no chance; its next start kills what the dead process left.
    EXPECT_THAT(FindProcesses(marker), Not(IsEmpty())) << "expected the sleep to survive a SIGKILLed agent";
  }
  auto b = farm_->WaitForBuild(id, [](const Build& b) { return b.build_complete(); }, absl::Seconds(30));
  ASSERT_THAT(b, IsOk()) << "the build is stuck after its agent went away";
  EXPECT_EQ(b->build_status(), BuildStatus::FAULT);
  const auto* phase = FindPhase(*b, BuildPhaseType::BUILD);
  ASSERT_NE(phase, nullptr);
  EXPECT_EQ(phase->phase_status(), BuildStatus::FAULT);
  ASSERT_GE(phase->contexts_size(), 1);
  if (signal == SIGKILL) {
    // No word from the agent: its lease expires.
    EXPECT_EQ(phase->contexts(0).status_code(), "AGENT_LOST");
    EXPECT_THAT(phase->contexts(0).message(), HasSubstr("lease expired"));
  } else {
    // A stopping agent reports the builds it kills.
    EXPECT_EQ(phase->contexts(0).status_code(), "AGENT_ERROR");
    EXPECT_THAT(phase->contexts(0).message(), HasSubstr("is shutting down"));
  }
  EXPECT_THAT(phase->contexts(0).message(), HasSubstr(agent_id));
  EXPECT_TRUE(farm_->coordinator()->IsAlive());
  if (signal == SIGKILL) {
    // The agent's next start kills what the dead process left behind.
    ASSERT_THAT(farm_->StartAgent(1, "", *agent), IsOk());
    EXPECT_THAT(FindProcesses(marker), IsEmpty()) << "the restarted agent left the old build's sleep running";
    EXPECT_THAT(FindProcesses(build_env), IsEmpty()) << "the restarted agent left processes of build " << id;
  }
}

TEST_F(E2eTest, StoppingAnAgentMidBuildEndsTheBuildFaultWithAReason) {
  AgentLossEndsTheBuildFault(SIGTERM, /*tree_must_be_gone=*/true);
}

TEST_F(E2eTest, KillingAnAgentMidBuildEndsTheBuildFaultWithAReason) {
  // SIGKILL gives the agent no chance to end the build's processes: its restart does.
  AgentLossEndsTheBuildFault(SIGKILL, /*tree_must_be_gone=*/false);
}

// Not covered here: a build timeout ending TIMED_OUT. The smallest timeout the API accepts is 5
// minutes (CodeBuild's limit), too slow for this suite; the executor's unit tests cover the timeout
// and the process-tree kill with an injected clock.

}  // namespace
}  // namespace kiln::e2e
