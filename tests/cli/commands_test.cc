// The `kiln` CLI against a fake KilnService served by a real in-process gRPC server on 127.0.0.1:0:
// exact output, requests sent and exit codes. The last tests run the real `kiln` binary.
#include "tools/cli/commands.h"

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cli {
namespace {

using ::kiln::v1::Build;
using ::kiln::v1::BuildPhase;
using ::kiln::v1::BuildPhaseType;
using ::kiln::v1::BuildStatus;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kT0 = 1700000000;  // Unix seconds: 2023-11-14T22:13:20Z

BuildPhase Phase(BuildPhaseType::Value type, BuildStatus::Value status, int64_t millis = 0,
                 const std::string& context = "") {
  BuildPhase p;
  p.set_phase_type(type);
  p.set_phase_status(status);
  p.set_duration_in_millis(millis);
  if (!context.empty()) {
    p.add_contexts()->set_status_code("COMMAND_EXECUTION_ERROR");
    p.mutable_contexts(0)->set_message(context);
  }
  return p;
}

Build MakeBuild(const std::string& id, BuildStatus::Value status, std::vector<BuildPhase> phases) {
  Build b;
  b.set_id(id);
  b.set_build_number(7);
  b.set_project_name("app");
  b.set_build_status(status);
  b.set_current_phase(phases.empty() ? BuildPhaseType::SUBMITTED : phases.back().phase_type());
  b.set_source_version("main");
  b.mutable_start_time()->set_seconds(kT0);
  for (BuildPhase& p : phases) *b.add_phases() = std::move(p);
  if (status != BuildStatus::IN_PROGRESS) {
    b.set_build_complete(true);
    b.set_resolved_source_version("abcdef1234567890");
    b.mutable_end_time()->set_seconds(kT0 + 12);
    b.mutable_end_time()->set_nanos(300'000'000);
  }
  return b;
}

// Log stream of a build whose BUILD phase ends `final`.
std::vector<v1::StreamBuildLogsResponse> LogScript(const std::string& id, BuildStatus::Value final) {
  std::vector<v1::StreamBuildLogsResponse> script(5);
  *script[0].mutable_build() = MakeBuild(id, BuildStatus::IN_PROGRESS,
                                         {Phase(BuildPhaseType::PRE_BUILD, BuildStatus::IN_PROGRESS)});
  script[1].set_data("hello\n");
  *script[2].mutable_build() =
      MakeBuild(id, BuildStatus::IN_PROGRESS,
                {Phase(BuildPhaseType::PRE_BUILD, BuildStatus::SUCCEEDED, 1200),
                 Phase(BuildPhaseType::BUILD, BuildStatus::IN_PROGRESS)});
  script[3].set_data("world\n");
  *script[4].mutable_build() =
      MakeBuild(id, final,
                {Phase(BuildPhaseType::PRE_BUILD, BuildStatus::SUCCEEDED, 1200),
                 Phase(BuildPhaseType::BUILD, final, 2000,
                       final == BuildStatus::FAILED ? "Error while executing command: make" : ""),
                 Phase(BuildPhaseType::COMPLETED, BuildStatus::UNKNOWN)});
  return script;
}

// A finished build with a primary and a secondary artifact, a FAILED and an INCOMPLETE report.
Build BuildWithOutputs() {
  Build b = MakeBuild("app:outputs", BuildStatus::FAILED,
                      {Phase(BuildPhaseType::BUILD, BuildStatus::SUCCEEDED, 2000)});
  v1::BuildArtifact* primary = b.add_artifacts();
  primary->set_name("app");
  primary->set_sha256("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  primary->set_size_bytes(20480);
  primary->set_file_count(3);
  v1::BuildArtifact* docs = b.add_artifacts();
  docs->set_identifier("docs");
  docs->set_name("site");
  docs->set_sha256("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
  docs->set_size_bytes(512);
  docs->set_file_count(1);
  v1::TestReport* unit = b.add_reports();
  unit->set_name("app-unit");
  unit->set_status("FAILED");
  unit->set_total(12);
  unit->set_passed(9);
  unit->set_failed(2);
  unit->set_skipped(1);
  unit->set_message("not shown unless INCOMPLETE");
  v1::TestReport* lint = b.add_reports();
  lint->set_name("app-lint");
  lint->set_status("INCOMPLETE");
  lint->set_message("reports/lint.xml:3:1: Start-end tags mismatch");
  return b;
}

// Canned answers; records what it was asked.
class FakeKiln final : public v1::KilnService::Service {
 public:
  grpc::Status PutProject(grpc::ServerContext*, const v1::PutProjectRequest* req,
                          v1::PutProjectResponse* resp) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    put_projects_.push_back(*req);
    *resp->mutable_project() = req->project();
    return grpc::Status::OK;
  }
  grpc::Status ListProjects(grpc::ServerContext*, const v1::ListProjectsRequest*,
                            v1::ListProjectsResponse* resp) override {
    v1::Project* p = resp->add_projects();
    p->set_name("flask-app");
    p->mutable_source()->set_location("/srv/git/flask.git");
    p->mutable_source()->set_branch("main");
    p->set_concurrent_build_limit(1);
    p->set_on_limit(v1::OnLimit::REJECT);
    (*p->mutable_agent_labels())["os"] = "linux";
    (*p->mutable_agent_labels())["docker"] = "true";
    v1::Project* q = resp->add_projects();
    q->set_name("lib");
    q->mutable_source()->set_location("/srv/git/lib.git");
    q->mutable_source()->set_branch("dev");
    return grpc::Status::OK;
  }
  grpc::Status StartBuild(grpc::ServerContext*, const v1::StartBuildRequest* req,
                          v1::StartBuildResponse* resp) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    start_builds_.push_back(*req);
    if (req->project_name() == "full") {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "project full is at its limit of 1");
    }
    resp->mutable_build()->set_id(req->project_name() + ":ok");
    return grpc::Status::OK;
  }
  grpc::Status GetBuild(grpc::ServerContext*, const v1::GetBuildRequest* req,
                        v1::GetBuildResponse* resp) override {
    if (req->id() == "app:outputs") {
      *resp->mutable_build() = BuildWithOutputs();
      return grpc::Status::OK;
    }
    if (req->id() != "app:fail") return grpc::Status(grpc::StatusCode::NOT_FOUND, "build " + req->id() + " not found");
    *resp->mutable_build() = LogScript("app:fail", BuildStatus::FAILED).back().build();
    return grpc::Status::OK;
  }
  grpc::Status ListBuilds(grpc::ServerContext*, const v1::ListBuildsRequest* req,
                          v1::ListBuildsResponse* resp) override {
    *resp->add_builds() = MakeBuild("app:2", BuildStatus::IN_PROGRESS, {});
    *resp->add_builds() = LogScript("app:1", BuildStatus::SUCCEEDED).back().build();
    return grpc::Status::OK;
  }
  grpc::Status StopBuild(grpc::ServerContext*, const v1::StopBuildRequest* req,
                         v1::StopBuildResponse* resp) override {
    *resp->mutable_build() = MakeBuild(req->id(), BuildStatus::IN_PROGRESS, {});
    return grpc::Status::OK;
  }
  grpc::Status StreamBuildLogs(grpc::ServerContext*, const v1::StreamBuildLogsRequest* req,
                               grpc::ServerWriter<v1::StreamBuildLogsResponse>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      log_requests_.push_back(*req);
    }
    const BuildStatus::Value final = req->build_id() == "app:fail" ? BuildStatus::FAILED : BuildStatus::SUCCEEDED;
    for (const auto& r : LogScript(req->build_id(), final)) {
      if (!req->follow() && r.has_build()) continue;
      writer->Write(r);
    }
    return grpc::Status::OK;
  }
  grpc::Status PutParameter(grpc::ServerContext*, const v1::PutParameterRequest* req,
                            v1::PutParameterResponse* resp) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    put_params_.push_back(*req);
    resp->set_version(3);
    return grpc::Status::OK;
  }
  grpc::Status ListParameters(grpc::ServerContext*, const v1::ListParametersRequest*,
                              v1::ListParametersResponse* resp) override {
    v1::Parameter* plain = resp->add_parameters();
    plain->set_name("/app/region");
    plain->set_value("eu-west-1");
    plain->set_version(1);
    v1::Parameter* secure = resp->add_parameters();
    secure->set_name("/app/token");
    secure->set_type(v1::Parameter::SECURE_STRING);
    secure->set_value("must-not-show");  // a server bug the CLI must not amplify
    secure->set_version(2);
    return grpc::Status::OK;
  }
  grpc::Status ListAgents(grpc::ServerContext*, const v1::ListAgentsRequest*,
                          v1::ListAgentsResponse* resp) override {
    if (hang_) {
      // Holds the call past the client's deadline; released by the test.
      release_.WaitForNotificationWithTimeout(absl::Seconds(30));
      return grpc::Status::OK;
    }
    v1::AgentInfo* a = resp->add_agents();
    a->set_agent_id("agent-1");
    a->set_hostname("ip-10-0-0-5");
    a->set_connected(true);
    a->set_slots(2);
    a->set_running_builds(1);
    (*a->mutable_labels())["docker"] = "true";
    a->set_last_seen_unix_millis(kT0 * 1000);
    return grpc::Status::OK;
  }
  grpc::Status ListWebhookDeliveries(grpc::ServerContext*, const v1::ListWebhookDeliveriesRequest* req,
                                     v1::ListWebhookDeliveriesResponse* resp) override {
    {
      absl::MutexLock lock(&mu_);
      delivery_requests_.push_back(*req);
    }
    v1::WebhookDelivery* pr = resp->add_deliveries();
    pr->set_delivery_id("72d3162e-cc78-11e3-81ab-4c9367dc0958");
    pr->set_github_event("pull_request");
    pr->set_event_type("PULL_REQUEST_CREATED");
    pr->mutable_received()->set_seconds(kT0 + 60);
    pr->set_head_ref("refs/heads/feature/login");
    pr->set_commit("0123456789abcdef0123456789abcdef01234567");
    pr->set_http_status(200);
    pr->add_matched_projects("app");
    pr->add_build_ids("app:42");
    v1::WebhookDelivery* push = resp->add_deliveries();
    push->set_delivery_id("d-1");
    push->set_github_event("push");
    push->set_event_type("PUSH");
    push->mutable_received()->set_seconds(kT0);
    push->set_head_ref("refs/heads/dev");
    push->set_commit("fedcba9876543210");
    push->set_http_status(202);
    push->set_reason("no project matched: app: group 1: HEAD_REF \"^refs/heads/main$\" did not match \"refs/heads/dev\"");
    v1::WebhookDelivery* poll = resp->add_deliveries();
    poll->set_delivery_id("poll-7");
    poll->set_github_event("poll");
    poll->mutable_received()->set_seconds(kT0);
    return grpc::Status::OK;
  }
  std::vector<v1::ListWebhookDeliveriesRequest> delivery_requests() {
    absl::MutexLock lock(&mu_);
    return delivery_requests_;
  }
  std::vector<v1::ListWebhookDeliveriesRequest> delivery_requests_ ABSL_GUARDED_BY(mu_);

  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<v1::PutProjectRequest> put_projects() {
    absl::MutexLock lock(&mu_);
    return put_projects_;
  }
  std::vector<v1::StartBuildRequest> start_builds() {
    absl::MutexLock lock(&mu_);
    return start_builds_;
  }
  std::vector<v1::StreamBuildLogsRequest> log_requests() {
    absl::MutexLock lock(&mu_);
    return log_requests_;
  }
  std::vector<v1::PutParameterRequest> put_params() {
    absl::MutexLock lock(&mu_);
    return put_params_;
  }

  bool hang_ = false;  // set before the server serves ListAgents
  absl::Notification release_;

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;  // calls of the recording rpcs
  std::vector<v1::PutProjectRequest> put_projects_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::StartBuildRequest> start_builds_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::StreamBuildLogsRequest> log_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::PutParameterRequest> put_params_ ABSL_GUARDED_BY(mu_);
};

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    stub_ = v1::KilnService::NewStub(grpc::CreateChannel(Address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (!fake_.release_.HasBeenNotified()) fake_.release_.Notify();
    server_->Shutdown();
  }
  std::string Address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  FakeKiln fake_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::KilnService::Stub> stub_;
  std::ostringstream out_, err_;
};

TEST_F(CliTest, ProjectApplySendsParsedProject) {
  ProjectApplyOptions opts;
  opts.file = WriteFile("project.yaml",
                        "name: flask-app\n"
                        "source: {type: git, location: /srv/git/flask-app.git}\n"
                        "agent_labels: {docker: \"true\"}\n");
  EXPECT_EQ(ProjectApply(*stub_, opts, out_, err_), 0) << err_.str();
  EXPECT_EQ(out_.str(), "project flask-app applied\n");
  ASSERT_EQ(fake_.put_projects().size(), 1u);
  const v1::Project p = fake_.put_projects()[0].project();
  EXPECT_EQ(p.name(), "flask-app");
  EXPECT_EQ(p.source().location(), "/srv/git/flask-app.git");
  EXPECT_EQ(p.source().branch(), "main");  // default filled in by the parser
  EXPECT_EQ(p.agent_labels().at("docker"), "true");
}

TEST_F(CliTest, ProjectApplyRejectsBadFileWithLocationWithoutCallingServer) {
  ProjectApplyOptions opts;
  opts.file = WriteFile("bad.yaml", "name: flask-app\nbogus_key: 1\n");
  EXPECT_EQ(ProjectApply(*stub_, opts, out_, err_), 1);
  EXPECT_THAT(err_.str(), HasSubstr("kiln: " + opts.file + ":2:"));
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(CliTest, ProjectApplyReportsMissingFile) {
  ProjectApplyOptions opts;
  opts.file = ::testing::TempDir() + "/does-not-exist.yaml";
  EXPECT_EQ(ProjectApply(*stub_, opts, out_, err_), 1);
  EXPECT_THAT(err_.str(), HasSubstr("cannot read"));
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(CliTest, ProjectListPrintsAlignedTable) {
  EXPECT_EQ(ProjectList(*stub_, {}, out_, err_), 0);
  EXPECT_EQ(out_.str(),
            "NAME       SOURCE              BRANCH  LIMIT     LABELS\n"
            "flask-app  /srv/git/flask.git  main    1 reject  docker=true,os=linux\n"
            "lib        /srv/git/lib.git    dev     -\n");
}

TEST_F(CliTest, BuildStartPrintsOnlyIdAndSendsOverrides) {
  BuildStartOptions opts;
  opts.project = "app";
  opts.source_version = "v1.2";
  opts.env = {"A=1", "B=x=y"};
  opts.timeout_minutes = 30;
  EXPECT_EQ(BuildStart(*stub_, opts, out_, err_), 0);
  EXPECT_EQ(out_.str(), "app:ok\n");
  EXPECT_EQ(err_.str(), "");
  ASSERT_EQ(fake_.start_builds().size(), 1u);
  const v1::StartBuildRequest req = fake_.start_builds()[0];
  EXPECT_EQ(req.source_version(), "v1.2");
  EXPECT_EQ(req.timeout_in_minutes_override(), 30);
  EXPECT_EQ(req.initiator(), "kiln-cli");
  ASSERT_EQ(req.environment_variables_override_size(), 2);
  EXPECT_EQ(req.environment_variables_override(1).name(), "B");
  EXPECT_EQ(req.environment_variables_override(1).value(), "x=y");
}

TEST_F(CliTest, BuildStartRejectsMalformedEnvAsUsageError) {
  BuildStartOptions opts;
  opts.project = "app";
  opts.env = {"NOEQUALS"};
  EXPECT_EQ(BuildStart(*stub_, opts, out_, err_), 2);
  EXPECT_EQ(fake_.calls(), 0);
}

TEST_F(CliTest, BuildStartFollowExitsWithBuildOutcome) {
  BuildStartOptions opts;
  opts.project = "app";
  opts.follow = true;
  EXPECT_EQ(BuildStart(*stub_, opts, out_, err_), 0);
  EXPECT_EQ(out_.str(), "app:ok\nhello\nworld\n");
  EXPECT_THAT(err_.str(), HasSubstr("==> build app:ok SUCCEEDED in 12.3s\n"));
}

TEST_F(CliTest, RpcErrorPrintsCodeNameAndExitsOne) {
  BuildStartOptions start;
  start.project = "full";
  EXPECT_EQ(BuildStart(*stub_, start, out_, err_), 1);
  EXPECT_EQ(err_.str(), "kiln: RESOURCE_EXHAUSTED: project full is at its limit of 1\n");
  EXPECT_EQ(out_.str(), "");

  std::ostringstream err;
  BuildGetOptions get;
  get.build_id = "app:nope";
  EXPECT_EQ(BuildGet(*stub_, get, out_, err), 1);
  EXPECT_EQ(err.str(), "kiln: NOT_FOUND: build app:nope not found\n");
}

TEST_F(CliTest, UnaryCallsHaveADeadline) {
  fake_.hang_ = true;
  CommandOptions opts;
  opts.deadline = absl::Milliseconds(200);
  EXPECT_EQ(AgentList(*stub_, opts, out_, err_), 1);
  EXPECT_THAT(err_.str(), HasSubstr("kiln: DEADLINE_EXCEEDED: "));
  fake_.release_.Notify();
}

TEST_F(CliTest, BuildGetJsonUsesProtoJsonNames) {
  BuildGetOptions opts;
  opts.build_id = "app:fail";
  opts.json = true;
  EXPECT_EQ(BuildGet(*stub_, opts, out_, err_), 0);
  const std::string json = out_.str();
  EXPECT_THAT(json, HasSubstr("\"id\": \"app:fail\""));
  EXPECT_THAT(json, HasSubstr("\"buildStatus\": \"FAILED\""));
  EXPECT_THAT(json, HasSubstr("\"phaseType\": \"BUILD\""));
  EXPECT_THAT(json, HasSubstr("\"phaseStatus\": \"SUCCEEDED\""));
  EXPECT_THAT(json, HasSubstr("\"durationInMillis\": \"1200\""));
  EXPECT_EQ(json.back(), '\n');
}

TEST_F(CliTest, BuildGetSummaryShowsPhasesAndContexts) {
  BuildGetOptions opts;
  opts.build_id = "app:fail";
  EXPECT_EQ(BuildGet(*stub_, opts, out_, err_), 0);
  const std::string text = out_.str();
  EXPECT_THAT(text, ContainsRegex("Status: +FAILED\n"));
  EXPECT_THAT(text, ContainsRegex("Resolved: +abcdef1234567890\n"));
  EXPECT_THAT(text, ContainsRegex("Started: +2023-11-14T22:13:20Z\n"));
  EXPECT_THAT(text, ContainsRegex("\n  PRE_BUILD +SUCCEEDED +1\\.2s\n"));
  EXPECT_THAT(text, ContainsRegex(
                        "\n  BUILD +FAILED +2\\.0s +COMMAND_EXECUTION_ERROR: Error while executing command: make\n"));
  EXPECT_THAT(text, Not(HasSubstr("Artifacts:")));
  EXPECT_THAT(text, Not(HasSubstr("Reports:")));
}

TEST_F(CliTest, BuildGetSummaryShowsArtifactsAndReportsAfterPhases) {
  BuildGetOptions opts;
  opts.build_id = "app:outputs";
  EXPECT_EQ(BuildGet(*stub_, opts, out_, err_), 0) << err_.str();
  const std::string text = out_.str();
  EXPECT_THAT(text, HasSubstr("  BUILD  SUCCEEDED  2.0s\n"
                              "Artifacts:\n"
                              "  (primary)  app   0123456789ab  20480 bytes  3 files\n"
                              "  docs       site  fedcba987654  512 bytes    1 file\n"
                              "Reports:\n"
                              "  app-unit  FAILED      12 total, 9 passed, 2 failed, 1 skipped\n"
                              "  app-lint  INCOMPLETE  0 total, 0 passed, 0 failed, 0 skipped   "
                              "reports/lint.xml:3:1: Start-end tags mismatch\n"));
  EXPECT_THAT(text, Not(HasSubstr("not shown unless INCOMPLETE")));
}

TEST_F(CliTest, BuildListShowsShortShaAndDuration) {
  EXPECT_EQ(BuildList(*stub_, {}, out_, err_), 0);
  EXPECT_EQ(out_.str(),
            "ID     NUMBER  STATUS       PHASE      SOURCE   STARTED               DURATION\n"
            "app:2  7       IN_PROGRESS  SUBMITTED  -        2023-11-14T22:13:20Z  -\n"
            "app:1  7       SUCCEEDED    COMPLETED  abcdef1  2023-11-14T22:13:20Z  12.3s\n");
}

TEST_F(CliTest, BuildStopPrintsStatus) {
  BuildStopOptions opts;
  opts.build_id = "app:3";
  EXPECT_EQ(BuildStop(*stub_, opts, out_, err_), 0);
  EXPECT_EQ(out_.str(), "build app:3 IN_PROGRESS (stop requested)\n");
}

TEST_F(CliTest, LogsFollowInterleavesDataAndPhaseProgressInOrder) {
  BuildLogsOptions opts;
  opts.build_id = "app:ok";
  opts.follow = true;
  std::ostringstream both;  // stdout and stderr in one stream shows the interleaving
  EXPECT_EQ(BuildLogs(*stub_, opts, both, both), 0);
  EXPECT_EQ(both.str(),
            "==> PRE_BUILD started\n"
            "hello\n"
            "==> PRE_BUILD SUCCEEDED in 1.2s\n"
            "==> BUILD started\n"
            "world\n"
            "==> BUILD SUCCEEDED in 2.0s\n"
            "==> build app:ok SUCCEEDED in 12.3s\n");
  ASSERT_EQ(fake_.log_requests().size(), 1u);
  EXPECT_TRUE(fake_.log_requests()[0].follow());
}

TEST_F(CliTest, LogsFollowExitsOneForFailedBuild) {
  BuildLogsOptions opts;
  opts.build_id = "app:fail";
  opts.follow = true;
  EXPECT_EQ(BuildLogs(*stub_, opts, out_, err_), 1);
  EXPECT_EQ(out_.str(), "hello\nworld\n");
  EXPECT_THAT(err_.str(),
              HasSubstr("==> BUILD FAILED in 2.0s: COMMAND_EXECUTION_ERROR: Error while executing command: make\n"));
  EXPECT_THAT(err_.str(), HasSubstr("==> build app:fail FAILED in 12.3s\n"));
}

TEST_F(CliTest, LogsWithoutFollowPrintsLogOnlyAndExitsZero) {
  BuildLogsOptions opts;
  opts.build_id = "app:fail";
  EXPECT_EQ(BuildLogs(*stub_, opts, out_, err_), 0);
  EXPECT_EQ(out_.str(), "hello\nworld\n");
  EXPECT_EQ(err_.str(), "");
  EXPECT_FALSE(fake_.log_requests()[0].follow());
}

TEST_F(CliTest, ParamPutSecureFromStdinNeverEchoesValue) {
  std::istringstream in("s3cr3t-value\n");
  ParamPutOptions opts;
  opts.name = "/ci/token";
  opts.value = "-";
  opts.secure = true;
  opts.in = &in;
  EXPECT_EQ(ParamPut(*stub_, opts, out_, err_), 0);
  EXPECT_EQ(out_.str(), "parameter /ci/token version 3\n");
  EXPECT_THAT(out_.str() + err_.str(), Not(HasSubstr("s3cr3t")));
  ASSERT_EQ(fake_.put_params().size(), 1u);
  EXPECT_EQ(fake_.put_params()[0].value(), "s3cr3t-value");
  EXPECT_EQ(fake_.put_params()[0].type(), v1::Parameter::SECURE_STRING);
  EXPECT_FALSE(fake_.put_params()[0].overwrite());
}

TEST_F(CliTest, ParamListHidesSecureValues) {
  EXPECT_EQ(ParamList(*stub_, {}, out_, err_), 0);
  EXPECT_EQ(out_.str(),
            "NAME         TYPE           VERSION  VALUE\n"
            "/app/region  STRING         1        eu-west-1\n"
            "/app/token   SECURE_STRING  2\n");
}

TEST_F(CliTest, AgentListPrintsTable) {
  EXPECT_EQ(AgentList(*stub_, {}, out_, err_), 0);
  EXPECT_EQ(out_.str(),
            "ID       HOSTNAME     CONNECTED  SLOTS  RUNNING  LABELS       LAST SEEN\n"
            "agent-1  ip-10-0-0-5  yes        2      1        docker=true  2023-11-14T22:13:20Z\n");
}

TEST_F(CliTest, WebhookDeliveriesPrintsTableAndSendsFilter) {
  WebhookDeliveriesOptions opts;
  opts.project = "app";
  opts.limit = 3;
  EXPECT_EQ(WebhookDeliveries(*stub_, opts, out_, err_), 0) << err_.str();
  EXPECT_EQ(out_.str(),
            "TIME                  DELIVERY                              EVENT                 STATUS  "
            "REF                       COMMIT        MATCHED  BUILDS  REASON\n"
            "2023-11-14T22:14:20Z  72d3162e-cc78-11e3-81ab-4c9367dc0958  PULL_REQUEST_CREATED  200     "
            "refs/heads/feature/login  0123456789ab  app      app:42  -\n"
            "2023-11-14T22:13:20Z  d-1                                   PUSH                  202     "
            "refs/heads/dev            fedcba987654  -        -       no project matched: app: group 1: "
            "HEAD_REF \"^refs/heads/main$\" did not match \"refs/heads/dev\"\n"
            "2023-11-14T22:13:20Z  poll-7                                poll                  -       "
            "-                         -             -        -       -\n");
  ASSERT_EQ(fake_.delivery_requests().size(), 1u);
  EXPECT_EQ(fake_.delivery_requests()[0].project_name(), "app");
  EXPECT_EQ(fake_.delivery_requests()[0].page_size(), 3);
}

TEST_F(CliTest, WebhookDeliveriesJsonUsesProtoJsonNames) {
  WebhookDeliveriesOptions opts;
  opts.json = true;
  EXPECT_EQ(WebhookDeliveries(*stub_, opts, out_, err_), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("\"deliveryId\": \"poll-7\""));
  EXPECT_THAT(out_.str(), HasSubstr("\"eventType\": \"PULL_REQUEST_CREATED\""));
  EXPECT_THAT(out_.str(), HasSubstr("\"buildIds\": [\n"));
  EXPECT_EQ(fake_.delivery_requests()[0].page_size(), 50);  // the default
}

// --- DiffBuilds / formatting ---

TEST(DiffBuildsTest, PhaseThatStartsAndEndsBetweenSnapshotsYieldsBothEvents) {
  const Build before = MakeBuild("b", BuildStatus::IN_PROGRESS, {Phase(BuildPhaseType::INSTALL, BuildStatus::IN_PROGRESS)});
  const Build after = MakeBuild("b", BuildStatus::IN_PROGRESS,
                                {Phase(BuildPhaseType::INSTALL, BuildStatus::SUCCEEDED, 50),
                                 Phase(BuildPhaseType::PRE_BUILD, BuildStatus::FAILED, 9, "boom"),
                                 Phase(BuildPhaseType::BUILD, BuildStatus::IN_PROGRESS)});
  std::vector<std::string> lines;
  for (const ProgressEvent& e : DiffBuilds(before, after)) lines.push_back(FormatProgressEvent(e));
  EXPECT_THAT(lines, ::testing::ElementsAre("==> INSTALL SUCCEEDED in 0.0s", "==> PRE_BUILD started",
                                            "==> PRE_BUILD FAILED in 0.0s: COMMAND_EXECUTION_ERROR: boom",
                                            "==> BUILD started"));
}

TEST(DiffBuildsTest, IdenticalSnapshotsYieldNothing) {
  const Build b = LogScript("b", BuildStatus::SUCCEEDED).back().build();
  EXPECT_TRUE(DiffBuilds(b, b).empty());
}

TEST(DiffBuildsTest, CompletedPseudoPhaseYieldsOnlyBuildCompletion) {
  Build before = MakeBuild("b", BuildStatus::IN_PROGRESS, {Phase(BuildPhaseType::FINALIZING, BuildStatus::SUCCEEDED)});
  Build after = before;
  *after.add_phases() = Phase(BuildPhaseType::COMPLETED, BuildStatus::UNKNOWN);
  after.set_build_complete(true);
  after.set_build_status(BuildStatus::STOPPED);
  after.mutable_end_time()->set_seconds(kT0 + 125);
  const std::vector<ProgressEvent> events = DiffBuilds(before, after);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(FormatProgressEvent(events[0]), "==> build b STOPPED in 2m05s");
}

TEST(FormatDurationTest, ScalesUnits) {
  EXPECT_EQ(FormatDuration(1299), "1.2s");
  EXPECT_EQ(FormatDuration(59'999), "59.9s");
  EXPECT_EQ(FormatDuration(61'000), "1m01s");
  EXPECT_EQ(FormatDuration(3'720'000), "1h02m");
}

// --- the real binary: flag parsing, env, exit codes ---

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

RunResult RunKiln(const std::string& args, const std::string& env = "") {
  const std::string cmd = absl::StrCat(env, " '", KILN_CLI_BINARY, "' ", args, " 2>&1 </dev/null");
  RunResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) r.output.append(buf, n);
  const int status = pclose(pipe);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

TEST_F(CliTest, BinaryUsageErrorsExitTwo) {
  EXPECT_EQ(RunKiln("").exit_code, 2);
  EXPECT_EQ(RunKiln("build frobnicate").exit_code, 2);
  EXPECT_EQ(RunKiln("build get").exit_code, 2);
  EXPECT_EQ(RunKiln("--help").exit_code, 0);
}

TEST_F(CliTest, BinaryTakesCoordinatorFromFlagOrEnvironment) {
  RunResult env = RunKiln("project list", "KILN_COORDINATOR=" + Address());
  EXPECT_EQ(env.exit_code, 0) << env.output;
  EXPECT_THAT(env.output, HasSubstr("flask-app"));
  RunResult flag = RunKiln("--coordinator " + Address() + " build get app:nope");
  EXPECT_EQ(flag.exit_code, 1);
  EXPECT_EQ(flag.output, "kiln: NOT_FOUND: build app:nope not found\n");
}

TEST_F(CliTest, BinaryWebhookDeliveriesChecksLimit) {
  EXPECT_EQ(RunKiln("webhook deliveries --limit 0").exit_code, 2);
  RunResult r = RunKiln("--coordinator " + Address() + " webhook deliveries --project app --limit 5");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("poll-7"));
}

}  // namespace
}  // namespace kiln::cli
