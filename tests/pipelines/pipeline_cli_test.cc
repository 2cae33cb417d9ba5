// `kiln pipeline ...` commands against the real PipelineServiceImpl and PipelineController (fake
// builds and deployments, in-memory store, fake clock) served by an in-process gRPC server on
// 127.0.0.1:0: exact output, exit codes and the state the commands leave behind.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/pipelines/pipeline_controller.h"
#include "coordinator/pipelines/pipeline_service.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/pipelines/pipeline_fakes.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/mem_store.h"
#include "tests/testing/status_matchers.h"
#include "tools/cli/pipeline_commands.h"

namespace kiln::cli {
namespace {

using ::kiln::test::IsOk;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kYaml[] = R"(name: flask-app
stages:
  - name: Source
    actions: [{name: Source, category: Source, configuration: {project: flask-app}, output_artifacts: [SourceOutput], namespace: SourceVariables}]
  - name: Build
    actions: [{name: Build, category: Build, configuration: {project: flask-app}, input_artifacts: [SourceOutput], output_artifacts: [BuildOutput], namespace: BuildVariables}]
  - name: Approve
    actions: [{name: Approve, category: Approval}]
  - name: Deploy
    actions: [{name: Deploy, category: Deploy, configuration: {application: flask-app, deployment_group: web}, input_artifacts: [BuildOutput]}]
)";

class PipelineCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    builds_.AddProject("flask-app");
    coordinator::PipelineController::Options o;
    o.store = &store_;
    o.builds = &builds_;
    o.deployments = &deploys_;
    o.clock = &clock_;
    auto c = coordinator::PipelineController::Create(o);
    ASSERT_THAT(c, IsOk());
    controller_ = *std::move(c);
    service_ = std::make_unique<coordinator::PipelineServiceImpl>(controller_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = kiln::v1::PipelineService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // Applies kYaml and starts an execution at `commit`; returns its id.
  std::string ApplyAndStart(const std::string& commit) {
    PipelineApplyOptions apply;
    apply.file = WriteFile("pipeline.yaml", kYaml);
    std::ostringstream out, err;
    EXPECT_EQ(PipelineApply(*stub_, apply, out, err), kExitOk) << err.str();
    PipelineStartOptions start;
    start.name = "flask-app";
    start.commit = commit;
    out.str("");
    EXPECT_EQ(PipelineStart(*stub_, start, out, err), kExitOk) << err.str();
    std::string id = out.str();
    if (!id.empty()) id.pop_back();  // newline
    return id;
  }

  test::MemStore store_;
  test::FakeClock clock_;
  test::FakeBuilds builds_;
  test::FakeDeployments deploys_;
  std::unique_ptr<coordinator::PipelineController> controller_;
  std::unique_ptr<coordinator::PipelineServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<kiln::v1::PipelineService::Stub> stub_;
};

TEST_F(PipelineCliTest, ApplyPrintsTheVersionAndCountsUpdates) {
  PipelineApplyOptions opts;
  opts.file = WriteFile("pipeline.yaml", kYaml);
  std::ostringstream out, err;
  EXPECT_EQ(PipelineApply(*stub_, opts, out, err), kExitOk);
  EXPECT_EQ(PipelineApply(*stub_, opts, out, err), kExitOk);
  EXPECT_EQ(out.str(),
            "pipeline flask-app applied (version 1)\npipeline flask-app applied (version 2)\n");
  EXPECT_EQ(err.str(), "");
}

TEST_F(PipelineCliTest, ApplyReportsParseErrorsWithoutCallingTheServer) {
  PipelineApplyOptions opts;
  opts.file = WriteFile("bad.yaml", "name: flask-app\nstages:\n  - name: Source\n    actions: []\n");
  std::ostringstream out, err;
  EXPECT_EQ(PipelineApply(*stub_, opts, out, err), kExitFailure);
  EXPECT_THAT(err.str(), StartsWith("kiln: " + opts.file + ":3:3: stages:"));
  EXPECT_THAT(err.str(), HasSubstr("at least 2 stages"));
  EXPECT_THAT(controller_->GetPipeline("flask-app", 0),
              test::StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PipelineCliTest, GetShowsExecutionsStagesAndActions) {
  const std::string id = ApplyAndStart("0123456789abcdef");
  clock_.Advance(absl::Seconds(75));
  builds_.Complete("flask-app:1", kiln::v1::BuildStatus::SUCCEEDED);
  controller_->Tick();

  PipelineGetOptions opts;
  opts.name = "flask-app";
  std::ostringstream out, err;
  ASSERT_EQ(PipelineGet(*stub_, opts, out, err), kExitOk) << err.str();
  EXPECT_EQ(out.str(),
            absl::StrCat("pipeline flask-app  version 1  mode SUPERSEDED\n"
                         "stages: Source -> Build -> Approve -> Deploy\n"
                         "\n"
                         "execution ", id, "  InProgress  trigger manual  commit 0123456789ab  "
                         "started 2027-01-15 08:00:00 UTC  -\n"
                         "  Source     Succeeded   0.0s\n"
                         "    Source   Succeeded   0123456789abcdef  flask-app main at 0123456789abcdef\n"
                         "  Build      Succeeded   1m15s\n"
                         "    Build    Succeeded   flask-app:1       build flask-app:1 SUCCEEDED\n"
                         "  Approve    InProgress  -\n"
                         "    Approve  Waiting     -\n"
                         "  Deploy     -           -\n"));
}

TEST_F(PipelineCliTest, GetJsonPrintsTheResponse) {
  ApplyAndStart("abc");
  PipelineGetOptions opts;
  opts.name = "flask-app";
  opts.json = true;
  std::ostringstream out, err;
  ASSERT_EQ(PipelineGet(*stub_, opts, out, err), kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("\"sourceCommit\": \"abc\""));
  EXPECT_THAT(out.str(), HasSubstr("\"executionMode\": \"SUPERSEDED\""));
}

TEST_F(PipelineCliTest, UnknownPipelineIsNotFound) {
  PipelineGetOptions opts;
  opts.name = "nope";
  std::ostringstream out, err;
  EXPECT_EQ(PipelineGet(*stub_, opts, out, err), kExitFailure);
  EXPECT_EQ(err.str(), "kiln: NOT_FOUND: pipeline nope not found\n");
}

TEST_F(PipelineCliTest, ApproveAndRejectAnswerTheApproval) {
  const std::string a = ApplyAndStart("aaa");
  builds_.Complete("flask-app:1", kiln::v1::BuildStatus::SUCCEEDED);
  controller_->Tick();

  PipelineApprovalOptions opts;
  opts.name = "flask-app";
  opts.execution = a;
  opts.stage = "Approve";
  opts.action = "Approve";
  opts.summary = "ship it";
  std::ostringstream out, err;
  ASSERT_EQ(PipelineApproval(*stub_, opts, out, err), kExitOk) << err.str();
  EXPECT_EQ(out.str(), absl::StrCat("Approve/Approve approved; execution ", a, " InProgress\n"));
  EXPECT_EQ(deploys_.started().size(), 1u);

  // Not waiting any more: rejecting now fails.
  opts.approve = false;
  out.str("");
  EXPECT_EQ(PipelineApproval(*stub_, opts, out, err), kExitFailure);
  EXPECT_THAT(err.str(), StartsWith("kiln: FAILED_PRECONDITION: approval Approve/Approve"));
}

TEST_F(PipelineCliTest, RetryRerunsAFailedStage) {
  const std::string a = ApplyAndStart("aaa");
  builds_.Complete("flask-app:1", kiln::v1::BuildStatus::FAILED);
  controller_->Tick();

  PipelineRetryOptions opts;
  opts.name = "flask-app";
  opts.execution = a;
  opts.stage = "Build";
  std::ostringstream out, err;
  ASSERT_EQ(PipelineRetry(*stub_, opts, out, err), kExitOk) << err.str();
  EXPECT_EQ(out.str(), absl::StrCat("stage Build retried; execution ", a, " InProgress\n"));
  EXPECT_EQ(builds_.started().size(), 2u);

  opts.stage = "Approve";
  EXPECT_EQ(PipelineRetry(*stub_, opts, out, err), kExitFailure);
  EXPECT_THAT(err.str(), HasSubstr("kiln: FAILED_PRECONDITION: stage Approve"));
}

}  // namespace
}  // namespace kiln::cli
