// End-to-end behaviour of the farm in one process: real coordinator, real agents, real bash and git.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "coordinator/http/webhook.h"
#include "tests/integration/farm_fixture.h"
#include "tests/testing/build_helpers.h"

namespace kiln::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using kiln::v1::Build;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;

using ::kiln::test::FindPhase;
using ::kiln::test::Millis;

class FarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    farm_ = std::make_unique<Farm>(MakeTempDir("kiln-farm"));
    farm_->StartCoordinator();
    repo_ = std::make_unique<GitRepo>(farm_->dir(), "app");
  }
  std::unique_ptr<Farm> farm_;
  std::unique_ptr<GitRepo> repo_;
};

TEST_F(FarmTest, BuildRunsEveryPhaseInOneShellAndSucceeds) {
  const std::string sha = repo_->Commit({{"buildspec.yml", R"(version: 0.2
env:
  variables:
    GREETING: "hello $NOT_EXPANDED"
  exported-variables:
    - CARRIED
phases:
  install:
    commands:
      - mkdir -p sub && cd sub
      - export CARRIED=from-install
  build:
    commands:
      - echo "cwd=$(basename $PWD) carried=$CARRIED greeting=$GREETING"
      - echo "resolved=$CODEBUILD_RESOLVED_SOURCE_VERSION kiln=$KILN_RESOLVED_SOURCE_VERSION number=$CODEBUILD_BUILD_NUMBER"
)"}}, "first");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  Build started = farm_->StartBuild("app");
  EXPECT_EQ(started.build_number(), 1);
  std::string log;
  Build b = farm_->WaitForCompletion(started.id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::SUCCEEDED) << log;
  EXPECT_EQ(b.resolved_source_version(), sha);
  EXPECT_THAT(log, HasSubstr("cwd=sub carried=from-install greeting=hello $NOT_EXPANDED"));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("resolved=", sha, " kiln=", sha, " number=1")));
  std::vector<BuildPhaseType::Value> types;
  for (const auto& p : b.phases()) types.push_back(p.phase_type());
  EXPECT_THAT(types, ::testing::ElementsAre(
                         BuildPhaseType::SUBMITTED, BuildPhaseType::QUEUED, BuildPhaseType::PROVISIONING,
                         BuildPhaseType::DOWNLOAD_SOURCE, BuildPhaseType::INSTALL, BuildPhaseType::PRE_BUILD,
                         BuildPhaseType::BUILD, BuildPhaseType::POST_BUILD, BuildPhaseType::UPLOAD_ARTIFACTS,
                         BuildPhaseType::FINALIZING, BuildPhaseType::COMPLETED));
  EXPECT_EQ(b.log_size_bytes(), static_cast<int64_t>(log.size()));
  EXPECT_EQ(b.exported_variables().at("CARRIED"), "from-install");
}

TEST_F(FarmTest, FailedBuildPhaseStillRunsPostBuildWithSucceedingZero) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  build:
    commands:
      - echo building
      - exit 7
      - echo never-printed
  post_build:
    commands:
      - echo "post_build succeeding=$CODEBUILD_BUILD_SUCCEEDING"
)"}}, "failing");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build b = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::FAILED);
  EXPECT_THAT(log, HasSubstr("post_build succeeding=0"));
  EXPECT_THAT(log, Not(HasSubstr("never-printed")));
  ASSERT_NE(FindPhase(b, BuildPhaseType::BUILD), nullptr);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::BUILD)->phase_status(), BuildStatus::FAILED);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::POST_BUILD)->phase_status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::UPLOAD_ARTIFACTS)->phase_status(), BuildStatus::SUCCEEDED);
}

TEST_F(FarmTest, PreBuildFailureSkipsToFinalizing) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  pre_build:
    commands:
      - "false"
  build:
    commands:
      - echo build-ran
)"}}, "prebuild fails");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build b = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::FAILED);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::BUILD), nullptr);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::POST_BUILD), nullptr);
  ASSERT_NE(FindPhase(b, BuildPhaseType::FINALIZING), nullptr);
  EXPECT_THAT(log, Not(HasSubstr("build-ran")));
}

TEST_F(FarmTest, OnFailureContinueRunsTheNextPhasesButTheBuildStillFails) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  pre_build:
    on-failure: CONTINUE
    commands:
      - "false"
  build:
    commands:
      - echo "build-ran succeeding=$CODEBUILD_BUILD_SUCCEEDING"
)"}}, "continue");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build b = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::FAILED);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::PRE_BUILD)->phase_status(), BuildStatus::FAILED);
  ASSERT_NE(FindPhase(b, BuildPhaseType::BUILD), nullptr);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::BUILD)->phase_status(), BuildStatus::SUCCEEDED);
  EXPECT_THAT(log, HasSubstr("build-ran succeeding=0"));
}

TEST_F(FarmTest, OnFailureAbortSkipsPostBuild) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  build:
    on-failure: ABORT
    commands:
      - "false"
  post_build:
    commands:
      - echo post-build-ran
)"}}, "abort");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build b = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::FAILED);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::POST_BUILD), nullptr);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::UPLOAD_ARTIFACTS), nullptr);
  EXPECT_THAT(log, Not(HasSubstr("\npost-build-ran")));
}

TEST_F(FarmTest, ConcurrencyLimitOneRunsBuildsOneAtATimeInOrder) {
  repo_->Commit({{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - echo run\n"}}, "c");
  farm_->StartAgent(/*slots=*/2);
  farm_->StartAgent(/*slots=*/2);
  farm_->PutProject("app", repo_->bare_path(), /*limit=*/1);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(farm_->StartBuild("app").id());
  std::vector<Build> builds;
  for (const auto& id : ids) builds.push_back(farm_->WaitForCompletion(id));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(builds[i].build_status(), BuildStatus::SUCCEEDED);
    EXPECT_EQ(builds[i].build_number(), i + 1);
  }
  // Never two running: each build was provisioned only after the previous one completed.
  for (int i = 1; i < 3; ++i) {
    int64_t prev_end = Millis(builds[i - 1].end_time());
    int64_t start = Millis(FindPhase(builds[i], BuildPhaseType::PROVISIONING)->start_time());
    EXPECT_GE(start, prev_end) << "build " << i + 1 << " started before build " << i << " ended";
  }
}

TEST_F(FarmTest, RoutingSendsBuildsOnlyToAgentsWithTheLabels) {
  repo_->Commit({{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - echo labelled\n"}}, "l");
  farm_->StartAgent(1, {{"role", "plain"}});
  farm_->PutProject("app", repo_->bare_path(), 0, {{"role", "builder"}});
  Build queued = farm_->StartBuild("app");
  // No agent carries role=builder: the build stays queued until one joins.
  farm_->StartAgent(1, {{"role", "builder"}});
  Build b = farm_->WaitForCompletion(queued.id());
  EXPECT_EQ(b.build_status(), BuildStatus::SUCCEEDED);
  kiln::v1::ListAgentsRequest req;
  kiln::v1::ListAgentsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(farm_->stub().ListAgents(&ctx, req, &resp).ok());
  std::string builder_id;
  for (const auto& a : resp.agents()) {
    if (a.labels().at("role") == "builder") builder_id = a.agent_id();
  }
  EXPECT_EQ(b.agent_id(), builder_id);
}

TEST_F(FarmTest, MissingParameterFailsDownloadSourceWithCodeBuildMessage) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
env:
  parameter-store:
    TOKEN: /app/missing-token
phases:
  build:
    commands:
      - echo should-not-run
)"}}, "param");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build b = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::FAILED);
  const auto* ds = FindPhase(b, BuildPhaseType::DOWNLOAD_SOURCE);
  ASSERT_NE(ds, nullptr);
  EXPECT_EQ(ds->phase_status(), BuildStatus::FAILED);
  ASSERT_GE(ds->contexts_size(), 1);
  EXPECT_EQ(ds->contexts(0).status_code(), "Decrypted Variables Error");
  EXPECT_EQ(ds->contexts(0).message(), "parameter does not exist: /app/missing-token");
  EXPECT_THAT(log, HasSubstr("Phase context status code: Decrypted Variables Error Message: "
                             "parameter does not exist: /app/missing-token"));
  EXPECT_EQ(FindPhase(b, BuildPhaseType::INSTALL), nullptr);
}

TEST_F(FarmTest, SecureParameterReachesTheBuildButIsMaskedInTheLog) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
env:
  parameter-store:
    TOKEN: /app/token
phases:
  build:
    commands:
      - echo "token=$TOKEN"
      - test "$TOKEN" = "s3cr3t-value-42"
)"}}, "secret");
  farm_->PutParameter("/app/token", "s3cr3t-value-42", /*secure=*/true);
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build b = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::SUCCEEDED) << log;
  EXPECT_THAT(log, HasSubstr("token=***"));
  EXPECT_THAT(log, Not(HasSubstr("s3cr3t-value-42")));
}

TEST_F(FarmTest, MalformedBuildspecFailsWithFileLineAndKeyAndTheFarmCarriesOn) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  biuld:
    commands:
      - echo typo
)"}}, "bad");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  std::string log;
  Build bad = farm_->WaitForCompletion(farm_->StartBuild("app").id(), &log);
  EXPECT_EQ(bad.build_status(), BuildStatus::FAILED);
  const auto* ds = FindPhase(bad, BuildPhaseType::DOWNLOAD_SOURCE);
  ASSERT_NE(ds, nullptr);
  ASSERT_GE(ds->contexts_size(), 1);
  EXPECT_EQ(ds->contexts(0).status_code(), "YAML_FILE_ERROR");
  EXPECT_THAT(ds->contexts(0).message(), HasSubstr("buildspec.yml:3:"));
  EXPECT_THAT(ds->contexts(0).message(), HasSubstr("biuld"));

  const std::string good = repo_->Commit(
      {{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - echo fixed\n"}}, "fix");
  Build ok = farm_->WaitForCompletion(farm_->StartBuild("app").id());
  EXPECT_EQ(ok.build_status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(ok.resolved_source_version(), good);
}

TEST_F(FarmTest, StopEndsARunningBuildStopped) {
  repo_->Commit({{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 600\n"}}, "s");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  Build started = farm_->StartBuild("app");
  farm_->WaitForPhase(started.id(), BuildPhaseType::BUILD);
  kiln::v1::StopBuildRequest req;
  req.set_id(started.id());
  kiln::v1::StopBuildResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(farm_->stub().StopBuild(&ctx, req, &resp).ok());
  Build b = farm_->WaitForCompletion(started.id());
  EXPECT_EQ(b.build_status(), BuildStatus::STOPPED);
  EXPECT_EQ(FindPhase(b, BuildPhaseType::BUILD)->phase_status(), BuildStatus::STOPPED);
}

TEST_F(FarmTest, QueuedBuildsSurviveACoordinatorRestart) {
  repo_->Commit({{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - echo after-restart\n"}}, "r");
  farm_->PutProject("app", repo_->bare_path());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(farm_->StartBuild("app").id());
  farm_->StopCoordinator();
  farm_->StartCoordinator();
  farm_->StartAgent();
  for (const auto& id : ids) {
    std::string log;
    Build b = farm_->WaitForCompletion(id, &log);
    EXPECT_EQ(b.build_status(), BuildStatus::SUCCEEDED);
    EXPECT_THAT(log, HasSubstr("after-restart"));
  }
  // Build numbers keep counting after the restart.
  EXPECT_EQ(farm_->StartBuild("app").build_number(), 4);
}

TEST_F(FarmTest, RunningBuildIsReattachedAfterACoordinatorRestartWithItsWholeLogOnce) {
  repo_->Commit({{"buildspec.yml", R"(version: 0.2
phases:
  build:
    commands:
      - echo before-outage
      - while [ ! -f "$CODEBUILD_SRC_DIR/../go1" ]; do sleep 0.05; done
      - echo during-outage
      - echo printed > "$CODEBUILD_SRC_DIR/../printed.fifo"
      - while [ ! -f "$CODEBUILD_SRC_DIR/../go2" ]; do sleep 0.05; done
      - echo after-restart
)"}}, "reattach");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  Build started = farm_->StartBuild("app");
  farm_->WaitForPhase(started.id(), BuildPhaseType::BUILD);
  const std::string build_dir =
      Sh("ls -d '" + farm_->dir() + "'/agent-0/builds/*/ | head -n1 | tr -d '\\n'");
  Sh("mkfifo '" + build_dir + "/printed.fifo'");
  farm_->StopCoordinator();
  // The build prints while no coordinator is there; reading the FIFO waits until it has.
  Sh("touch '" + build_dir + "/go1' && cat '" + build_dir + "/printed.fifo' >/dev/null");
  farm_->StartCoordinator();
  Sh("touch '" + build_dir + "/go2'");
  std::string log;
  Build b = farm_->WaitForCompletion(started.id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::SUCCEEDED) << log;
  for (const char* line : {"\nbefore-outage\n", "\nduring-outage\n", "\nafter-restart\n"}) {
    size_t first = log.find(line);
    ASSERT_NE(first, std::string::npos) << line << " missing from:\n" << log;
    EXPECT_EQ(log.find(line, first + 1), std::string::npos) << line << " appears twice";
  }
  EXPECT_LT(log.find("before-outage"), log.find("during-outage"));
  EXPECT_LT(log.find("during-outage"), log.find("after-restart"));
}

TEST_F(FarmTest, AgentStoppedMidBuildEndsTheBuildFaultWithAReason) {
  repo_->Commit({{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 600\n"}}, "f");
  int agent = farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  Build started = farm_->StartBuild("app");
  farm_->WaitForLog(started.id(), "Running command sleep 600");
  farm_->StopAgent(agent);
  Build b = farm_->WaitForCompletion(started.id());
  EXPECT_EQ(b.build_status(), BuildStatus::FAULT);
  const auto* bp = FindPhase(b, BuildPhaseType::BUILD);
  ASSERT_NE(bp, nullptr);
  ASSERT_GE(bp->contexts_size(), 1);
  EXPECT_EQ(bp->contexts(0).status_code(), "AGENT_ERROR");
  EXPECT_THAT(bp->contexts(0).message(), HasSubstr("is shutting down"));
}


TEST_F(FarmTest, SignedPushWebhookBuildsThePushedCommitAndBadSignatureBuildsNothing) {
  const std::string sha = repo_->Commit(
      {{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - echo from-webhook\n"}}, "w");
  farm_->StartAgent();
  farm_->PutProject("app", repo_->bare_path());
  farm_->PutParameter("/kiln/webhooks/app", "hook-secret", true);
  const std::string body = absl::StrCat(
      R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":")", sha,
      R"(","created":true,"deleted":false,"forced":false,"repository":{"name":"app","full_name":"local/app","clone_url":")",
      repo_->bare_path(), R"("},"commits":[],"head_commit":{"id":")", sha,
      R"(","message":"w"},"sender":{"id":42,"login":"dev"}})");
  httplib::Client http("127.0.0.1", farm_->coordinator().http_port());
  httplib::Headers bad = {{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", "d-1"},
                          {"X-Hub-Signature-256", coordinator::ComputeGitHubSignature(body, "wrong")}};
  auto r1 = http.Post("/webhooks/github", bad, body, "application/json");
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 401);
  kiln::v1::ListBuildsRequest lreq;
  kiln::v1::ListBuildsResponse lresp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(farm_->stub().ListBuilds(&ctx, lreq, &lresp).ok());
  }
  EXPECT_EQ(lresp.builds_size(), 0);

  httplib::Headers good = {{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", "d-2"},
                           {"X-Hub-Signature-256", coordinator::ComputeGitHubSignature(body, "hook-secret")}};
  auto r2 = http.Post("/webhooks/github", good, body, "application/json");
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 200) << r2->body;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(farm_->stub().ListBuilds(&ctx, lreq, &lresp).ok());
  }
  ASSERT_EQ(lresp.builds_size(), 1);
  std::string log;
  Build b = farm_->WaitForCompletion(lresp.builds(0).id(), &log);
  EXPECT_EQ(b.build_status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(b.source_version(), sha);
  EXPECT_EQ(b.resolved_source_version(), sha);
  EXPECT_EQ(b.initiator(), "webhook/github");
  EXPECT_EQ(b.webhook().head_ref(), "refs/heads/main");
  EXPECT_THAT(log, HasSubstr("from-webhook"));
}

TEST_F(FarmTest, WebhookDeliveriesAreListedAndRedeliveryAfterRestartStartsNothing) {
  const std::string sha = repo_->Commit(
      {{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - echo hi\n"}}, "w");
  farm_->PutProject("app", repo_->bare_path());
  farm_->PutParameter("/kiln/webhooks/app", "hook-secret", true);
  const std::string body = absl::StrCat(
      R"({"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":")", sha,
      R"(","repository":{"clone_url":")", repo_->bare_path(), R"("},"sender":{"id":42}})");
  auto post = [&](const std::string& delivery, const std::string& secret) {
    httplib::Client http("127.0.0.1", farm_->coordinator().http_port());
    httplib::Headers h = {{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", delivery},
                          {"X-Hub-Signature-256", coordinator::ComputeGitHubSignature(body, secret)}};
    auto r = http.Post("/webhooks/github", h, body, "application/json");
    return r ? r->status : -1;
  };
  auto deliveries = [&](const std::string& project) {
    kiln::v1::ListWebhookDeliveriesRequest req;
    req.set_project_name(project);
    kiln::v1::ListWebhookDeliveriesResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(farm_->stub().ListWebhookDeliveries(&ctx, req, &resp).ok());
    return resp;
  };
  EXPECT_EQ(post("d-bad", "wrong"), 401);
  EXPECT_EQ(post("d-1", "hook-secret"), 200);
  kiln::v1::ListWebhookDeliveriesResponse all = deliveries("");
  ASSERT_EQ(all.deliveries_size(), 2);
  EXPECT_EQ(all.deliveries(0).delivery_id(), "d-1");
  ASSERT_EQ(all.deliveries(0).build_ids_size(), 1);
  EXPECT_EQ(all.deliveries(1).reason(), "signature mismatch");
  EXPECT_EQ(deliveries("app").deliveries_size(), 1);  // the 401 was evaluated against no project

  farm_->StopCoordinator();
  farm_->StartCoordinator();
  EXPECT_EQ(post("d-1", "hook-secret"), 200);  // GitHub "Redeliver" after the restart
  kiln::v1::ListBuildsRequest lreq;
  kiln::v1::ListBuildsResponse lresp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(farm_->stub().ListBuilds(&ctx, lreq, &lresp).ok());
  EXPECT_EQ(lresp.builds_size(), 1);
  EXPECT_EQ(deliveries("").deliveries(0).reason(), "duplicate delivery");
}

TEST_F(FarmTest, RejectPolicyRefusesBuildsOverTheLimit) {
  repo_->Commit({{"buildspec.yml", "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 600\n"}}, "x");
  kiln::v1::PutProjectRequest req;
  farm_->PutProject("app", repo_->bare_path(), 1);
  kiln::v1::GetProjectRequest g;
  g.set_name("app");
  kiln::v1::GetProjectResponse gr;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(farm_->stub().GetProject(&ctx, g, &gr).ok());
  }
  *req.mutable_project() = gr.project();
  req.mutable_project()->set_on_limit(kiln::v1::OnLimit::REJECT);
  kiln::v1::PutProjectResponse pr;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(farm_->stub().PutProject(&ctx, req, &pr).ok());
  }
  Build first = farm_->StartBuild("app");
  kiln::v1::StartBuildRequest s;
  s.set_project_name("app");
  kiln::v1::StartBuildResponse sr;
  grpc::ClientContext ctx;
  grpc::Status st = farm_->stub().StartBuild(&ctx, s, &sr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("Cannot have more than 1 active builds"));
  kiln::v1::StopBuildRequest stop;
  stop.set_id(first.id());
  kiln::v1::StopBuildResponse stop_resp;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(farm_->stub().StopBuild(&ctx2, stop, &stop_resp).ok());
  EXPECT_EQ(farm_->WaitForCompletion(first.id()).build_status(), BuildStatus::STOPPED);
}

}  // namespace
}  // namespace kiln::test
