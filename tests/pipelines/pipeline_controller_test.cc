// The pipeline execution engine (reference §3) against fake builds and deployments, an in-memory
// store and a fake clock: actions, variables, the three execution modes, approvals and retry.
#include "coordinator/pipelines/pipeline_controller.h"

#include <memory>
#include <string>
#include <vector>

#include "coordinator/pipelines/pipeline_yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/pipelines/pipeline_fakes.h"
#include "tests/testing/build_helpers.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/mem_store.h"
#include "tests/testing/status_matchers.h"

namespace kiln::coordinator {
namespace {

using ::kiln::test::IsOk;
using ::kiln::test::StatusIs;
using ::kiln::v1::ActionExecution;
using ::kiln::v1::BuildStatus;
using ::kiln::v1::PipelineExecution;
using ::kiln::v1::StageExecution;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Source -> Build (variables in, exported variables out) -> Approve -> Deploy.
constexpr char kFlask[] = R"(name: flask-app
execution_mode: MODE
stages:
  - name: Source
    actions: [{name: Source, category: Source, configuration: {project: flask-app}, output_artifacts: [SourceOutput], namespace: SourceVariables}]
  - name: Build
    actions:
      - name: Build
        category: Build
        configuration:
          project: flask-app
          environment_variables: '[{"name": "COMMIT", "value": "#{SourceVariables.CommitId}"}, {"name": "EXECUTION", "value": "#{codepipeline.PipelineExecutionId}"}]'
        input_artifacts: [SourceOutput]
        output_artifacts: [BuildOutput]
        namespace: BuildVariables
  - name: Approve
    actions: [{name: Approve, category: Approval, configuration: {summary: "Ship #{BuildVariables.VERSION} from #{SourceVariables.BranchName}?"}}]
  - name: Deploy
    actions: [{name: Deploy, category: Deploy, configuration: {application: flask-app, deployment_group: "web-#{BuildVariables.ENV}"}, input_artifacts: [BuildOutput]}]
)";

std::string FlaskYaml(const std::string& mode) {
  std::string yaml = kFlask;
  yaml.replace(yaml.find("MODE"), 4, mode);
  return yaml;
}

const StageExecution& Stage(const PipelineExecution& e, const std::string& name) {
  for (const StageExecution& s : e.stages()) {
    if (s.stage() == name) return s;
  }
  ADD_FAILURE() << "no stage " << name;
  static const StageExecution kNone;
  return kNone;
}

const ActionExecution& Action(const PipelineExecution& e, const std::string& stage,
                              const std::string& action) {
  for (const ActionExecution& a : Stage(e, stage).actions()) {
    if (a.action() == action) return a;
  }
  static const ActionExecution kNone;  // status "" = not started
  return kNone;
}

class PipelineControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    builds_.AddProject("flask-app");
    builds_.AddProject("other");
    Restart();
  }

  void Restart() {
    controller_.reset();
    PipelineController::Options o;
    o.store = &store_;
    o.builds = &builds_;
    o.deployments = &deploys_;
    o.clock = &clock_;
    absl::StatusOr<std::unique_ptr<PipelineController>> c = PipelineController::Create(o);
    ASSERT_THAT(c, IsOk());
    controller_ = *std::move(c);
  }

  void Apply(const std::string& yaml) {
    absl::StatusOr<kiln::v1::Pipeline> p = ParsePipelineYaml(yaml, "pipeline.yaml");
    ASSERT_THAT(p, IsOk());
    ASSERT_THAT(controller_->PutPipeline(*p), IsOk());
  }

  // Starts a manual execution of flask-app at `commit`; returns its id.
  std::string Start(const std::string& commit) {
    absl::StatusOr<PipelineExecution> e = controller_->StartPipelineExecution("flask-app", commit);
    EXPECT_THAT(e, IsOk());
    return e.ok() ? e->id() : "";
  }

  PipelineExecution Get(const std::string& id, const std::string& pipeline = "flask-app") {
    absl::StatusOr<kiln::v1::GetPipelineResponse> r = controller_->GetPipeline(pipeline, 100);
    EXPECT_THAT(r, IsOk());
    if (r.ok()) {
      for (const PipelineExecution& e : r->executions()) {
        if (e.id() == id) return e;
      }
    }
    ADD_FAILURE() << "no execution " << id;
    return {};
  }

  absl::StatusOr<PipelineExecution> Approve(const std::string& id, bool approved,
                                            const std::string& summary = "") {
    kiln::v1::PutApprovalResultRequest req;
    req.set_pipeline("flask-app");
    req.set_execution_id(id);
    req.set_stage("Approve");
    req.set_action("Approve");
    req.set_approved(approved);
    req.set_summary(summary);
    return controller_->PutApprovalResult(req);
  }

  absl::StatusOr<PipelineExecution> Retry(const std::string& id, const std::string& stage) {
    kiln::v1::RetryStageExecutionRequest req;
    req.set_pipeline("flask-app");
    req.set_execution_id(id);
    req.set_stage(stage);
    return controller_->RetryStageExecution(req);
  }

  // Completes a build SUCCEEDED with the variables the flask pipeline's later actions use.
  void Succeed(const std::string& build_id) {
    builds_.Complete(build_id, BuildStatus::SUCCEEDED, {{"VERSION", "1"}, {"ENV", "prod"}});
  }

  // The source_version of every build started so far, in order.
  std::vector<std::string> BuiltCommits() {
    std::vector<std::string> commits;
    for (const std::string& id : builds_.started()) {
      commits.push_back(builds_.build(id).source_version());
    }
    return commits;
  }

  test::MemStore store_;
  test::FakeClock clock_;
  test::FakeBuilds builds_;
  test::FakeDeployments deploys_;
  std::unique_ptr<PipelineController> controller_;
};

TEST_F(PipelineControllerTest, HappyPathRunsSourceBuildApprovalDeployPassingVariables) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string id = Start("abc123");

  PipelineExecution e = Get(id);
  EXPECT_EQ(e.status(), "InProgress");
  EXPECT_EQ(e.trigger(), "manual");
  EXPECT_EQ(e.source_commit(), "abc123");
  EXPECT_EQ(e.pipeline_version(), 1);
  EXPECT_EQ(Stage(e, "Source").status(), "Succeeded");
  EXPECT_THAT(Action(e, "Source", "Source").output_variables(),
              UnorderedElementsAre(Pair("CommitId", "abc123"), Pair("BranchName", "main")));
  EXPECT_EQ(Stage(e, "Build").status(), "InProgress");
  ASSERT_EQ(builds_.started().size(), 1u);
  const kiln::v1::Build build = builds_.build(builds_.started()[0]);
  EXPECT_EQ(Action(e, "Build", "Build").external_id(), build.id());
  EXPECT_EQ(build.project_name(), "flask-app");
  EXPECT_EQ(build.source_version(), "abc123");
  EXPECT_EQ(build.initiator(), "codepipeline/flask-app");
  ASSERT_EQ(build.environment_variables_size(), 2);
  EXPECT_EQ(build.environment_variables(0).value(), "abc123");
  EXPECT_EQ(build.environment_variables(1).value(), id);

  controller_->Tick();  // the build is still running
  EXPECT_EQ(Stage(Get(id), "Build").status(), "InProgress");

  builds_.Complete(build.id(), BuildStatus::SUCCEEDED, {{"VERSION", "1.2"}, {"ENV", "prod"}});
  controller_->Tick();
  e = Get(id);
  EXPECT_EQ(Stage(e, "Build").status(), "Succeeded");
  EXPECT_THAT(Action(e, "Build", "Build").output_variables(),
              UnorderedElementsAre(Pair("VERSION", "1.2"), Pair("ENV", "prod")));
  EXPECT_EQ(Stage(e, "Approve").status(), "InProgress");
  EXPECT_EQ(Action(e, "Approve", "Approve").status(), "Waiting");
  EXPECT_EQ(Action(e, "Approve", "Approve").summary(), "Ship 1.2 from main?");

  clock_.Advance(absl::Hours(1));
  controller_->Tick();
  EXPECT_EQ(Action(Get(id), "Approve", "Approve").status(), "Waiting");
  EXPECT_THAT(deploys_.started(), IsEmpty());

  ASSERT_THAT(Approve(id, true, "looks good"), IsOk());
  e = Get(id);
  EXPECT_EQ(Action(e, "Approve", "Approve").status(), "Succeeded");
  EXPECT_EQ(Action(e, "Approve", "Approve").summary(), "looks good");
  EXPECT_EQ(Stage(e, "Deploy").status(), "InProgress");
  ASSERT_EQ(deploys_.started().size(), 1u);
  EXPECT_EQ(deploys_.started()[0].application, "flask-app");
  EXPECT_EQ(deploys_.started()[0].group, "web-prod");
  EXPECT_EQ(deploys_.started()[0].build_id, build.id());
  EXPECT_EQ(deploys_.started()[0].artifact, "");  // the primary artifact
  EXPECT_EQ(Action(e, "Deploy", "Deploy").external_id(), "d-1");

  deploys_.Set("d-1", "Succeeded");
  controller_->Tick();
  e = Get(id);
  EXPECT_EQ(e.status(), "Succeeded");
  for (const StageExecution& s : e.stages()) {
    EXPECT_EQ(s.status(), "Succeeded") << s.stage();
    EXPECT_TRUE(s.has_end_time()) << s.stage();
  }
  EXPECT_EQ(test::Millis(e.end_time()) - test::Millis(e.start_time()), 3600 * 1000);
}

TEST_F(PipelineControllerTest, SupersededModeReplacesTheOlderWaitingExecution) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  const std::string b = Start("bbb");
  // The Build stage is locked by a: b waits in front of it.
  EXPECT_EQ(Stage(Get(b), "Source").status(), "Succeeded");
  EXPECT_EQ(Stage(Get(b), "Build").status(), "");
  EXPECT_EQ(Get(b).status(), "InProgress");

  const std::string c = Start("ccc");
  EXPECT_EQ(Get(b).status(), "Superseded");
  EXPECT_TRUE(Get(b).has_end_time());
  EXPECT_EQ(Get(c).status(), "InProgress");
  // The running stage is not interrupted.
  EXPECT_EQ(Stage(Get(a), "Build").status(), "InProgress");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa"));

  Succeed(builds_.started()[0]);
  controller_->Tick();
  EXPECT_EQ(Action(Get(a), "Approve", "Approve").status(), "Waiting");
  EXPECT_EQ(Stage(Get(c), "Build").status(), "InProgress");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "ccc"));
  EXPECT_EQ(Get(b).status(), "Superseded");
}

TEST_F(PipelineControllerTest, QueuedModeRunsExecutionsInTheOrderTheyStarted) {
  Apply(FlaskYaml("QUEUED"));
  const std::string a = Start("aaa");
  const std::string b = Start("bbb");
  const std::string c = Start("ccc");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa"));
  EXPECT_EQ(Get(b).status(), "InProgress");
  EXPECT_EQ(Get(c).status(), "InProgress");

  Succeed(builds_.started()[0]);
  controller_->Tick();
  // a waits for approval (locking Approve); b builds; c keeps its place in the queue.
  EXPECT_EQ(Action(Get(a), "Approve", "Approve").status(), "Waiting");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "bbb"));
  EXPECT_EQ(Stage(Get(c), "Build").status(), "");

  Succeed(builds_.started()[1]);
  controller_->Tick();
  EXPECT_EQ(Stage(Get(b), "Build").status(), "Succeeded");
  EXPECT_EQ(Stage(Get(b), "Approve").status(), "");  // locked by a's pending approval
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "bbb", "ccc"));

  ASSERT_THAT(Approve(a, true), IsOk());
  EXPECT_EQ(Action(Get(b), "Approve", "Approve").status(), "Waiting");
  for (const std::string& id : {a, b, c}) EXPECT_NE(Get(id).status(), "Superseded");
}

TEST_F(PipelineControllerTest, ParallelModeRunsExecutionsIndependently) {
  Apply(FlaskYaml("PARALLEL"));
  const std::string a = Start("aaa");
  const std::string b = Start("bbb");
  const std::string c = Start("ccc");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "bbb", "ccc"));

  Succeed(builds_.started()[2]);
  builds_.Complete(builds_.started()[0], BuildStatus::FAILED);
  controller_->Tick();
  EXPECT_EQ(Get(a).status(), "Failed");
  EXPECT_EQ(Stage(Get(b), "Build").status(), "InProgress");
  EXPECT_EQ(Action(Get(c), "Approve", "Approve").status(), "Waiting");

  Succeed(builds_.started()[1]);
  controller_->Tick();
  // Both wait for approval at the same time: no stage lock.
  EXPECT_EQ(Action(Get(b), "Approve", "Approve").status(), "Waiting");
  EXPECT_EQ(Action(Get(c), "Approve", "Approve").status(), "Waiting");
  ASSERT_THAT(Approve(b, true), IsOk());
  EXPECT_EQ(Stage(Get(b), "Deploy").status(), "InProgress");
  EXPECT_EQ(Action(Get(c), "Approve", "Approve").status(), "Waiting");
}

TEST_F(PipelineControllerTest, RejectedApprovalFailsTheExecutionAndUnlocksTheStage) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  Succeed(builds_.started()[0]);
  controller_->Tick();
  const std::string b = Start("bbb");
  Succeed(builds_.started()[1]);
  controller_->Tick();
  EXPECT_EQ(Stage(Get(b), "Approve").status(), "");  // waits behind a's pending approval

  absl::StatusOr<PipelineExecution> e = Approve(a, false, "not today");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->status(), "Failed");
  EXPECT_EQ(Stage(*e, "Approve").status(), "Failed");
  EXPECT_EQ(Action(*e, "Approve", "Approve").status(), "Failed");
  EXPECT_EQ(Action(*e, "Approve", "Approve").summary(), "not today");
  EXPECT_EQ(Stage(*e, "Deploy").status(), "");
  EXPECT_THAT(deploys_.started(), IsEmpty());
  EXPECT_EQ(Action(Get(b), "Approve", "Approve").status(), "Waiting");
  // Answering again is refused.
  EXPECT_THAT(Approve(a, true), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("not waiting (Failed)")));
}

TEST_F(PipelineControllerTest, ApprovalNotAnsweredWithinSevenDaysFails) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  Succeed(builds_.started()[0]);
  controller_->Tick();
  clock_.Advance(absl::Hours(7 * 24) - absl::Seconds(1));
  controller_->Tick();
  EXPECT_EQ(Action(Get(a), "Approve", "Approve").status(), "Waiting");
  clock_.Advance(absl::Seconds(1));
  controller_->Tick();
  EXPECT_EQ(Get(a).status(), "Failed");
  EXPECT_THAT(Action(Get(a), "Approve", "Approve").summary(), HasSubstr("not approved within"));
}

TEST_F(PipelineControllerTest, FailedBuildStageRetriedSucceeds) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  builds_.Complete(builds_.started()[0], BuildStatus::FAILED);
  controller_->Tick();
  PipelineExecution e = Get(a);
  EXPECT_EQ(e.status(), "Failed");
  EXPECT_EQ(Stage(e, "Build").status(), "Failed");
  EXPECT_EQ(Action(e, "Build", "Build").summary(), "build flask-app:1 FAILED");
  EXPECT_THAT(Retry(a, "Source"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                           HasSubstr("only a failed stage can be retried")));

  absl::StatusOr<PipelineExecution> retried = Retry(a, "Build");
  ASSERT_THAT(retried, IsOk());
  EXPECT_EQ(retried->status(), "InProgress");
  EXPECT_EQ(Stage(*retried, "Build").status(), "InProgress");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "aaa"));
  EXPECT_EQ(Action(*retried, "Build", "Build").external_id(), builds_.started()[1]);

  Succeed(builds_.started()[1]);
  controller_->Tick();
  e = Get(a);
  EXPECT_EQ(e.status(), "InProgress");
  EXPECT_EQ(Stage(e, "Build").status(), "Succeeded");
  EXPECT_EQ(Action(e, "Approve", "Approve").status(), "Waiting");
}

TEST_F(PipelineControllerTest, RetryRerunsOnlyTheFailedActionsWhileOthersCarryOn) {
  Apply(R"(name: flask-app
stages:
  - name: Source
    actions: [{name: S, category: Source, configuration: {project: flask-app}, output_artifacts: [Src]}]
  - name: Build
    actions:
      - {name: Unit, category: Test, configuration: {project: flask-app}, input_artifacts: [Src]}
      - {name: Image, category: Build, configuration: {project: other}, input_artifacts: [Src]}
)");
  const std::string a = Start("aaa");
  ASSERT_EQ(builds_.started().size(), 2u);
  builds_.Complete(builds_.started()[0], BuildStatus::FAILED);
  controller_->Tick();
  PipelineExecution e = Get(a);
  EXPECT_EQ(e.status(), "Failed");  // at once: the running Image build does not hold the stage
  EXPECT_EQ(Stage(e, "Build").status(), "Failed");
  EXPECT_EQ(Action(e, "Build", "Image").status(), "InProgress");

  Succeed(builds_.started()[1]);
  controller_->Tick();
  e = Get(a);
  EXPECT_EQ(Action(e, "Build", "Image").status(), "Succeeded");  // recorded after the failure
  EXPECT_EQ(e.status(), "Failed");

  ASSERT_THAT(Retry(a, "Build"), IsOk());
  ASSERT_EQ(builds_.started().size(), 3u);  // only Unit runs again
  EXPECT_EQ(builds_.build(builds_.started()[2]).project_name(), "flask-app");
  Succeed(builds_.started()[2]);
  controller_->Tick();
  EXPECT_EQ(Get(a).status(), "Succeeded");
}

TEST_F(PipelineControllerTest, RetryIsRefusedOnceANewerExecutionEnteredTheStage) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  builds_.Complete(builds_.started()[0], BuildStatus::FAILED);
  controller_->Tick();
  Start("bbb");  // the failure unlocked Build: b enters it
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "bbb"));
  EXPECT_THAT(Retry(a, "Build"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("a newer execution")));
}

TEST_F(PipelineControllerTest, RetryIsRefusedAfterThePipelineChanged) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  builds_.Complete(builds_.started()[0], BuildStatus::FAILED);
  controller_->Tick();
  Apply(FlaskYaml("QUEUED"));
  EXPECT_THAT(Retry(a, "Build"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("structure changed")));
}

TEST_F(PipelineControllerTest, UnknownVariableFailsTheActionNamingIt) {
  std::string yaml = FlaskYaml("SUPERSEDED");
  yaml.replace(yaml.find("#{SourceVariables.CommitId}"), 27, "#{SourceVariables.Nope}");
  Apply(yaml);
  const std::string a = Start("aaa");
  PipelineExecution e = Get(a);
  EXPECT_EQ(e.status(), "Failed");
  EXPECT_EQ(Action(e, "Build", "Build").status(), "Failed");
  EXPECT_THAT(Action(e, "Build", "Build").summary(),
              HasSubstr("COMMIT: unknown variable #{SourceVariables.Nope}"));
  EXPECT_THAT(builds_.started(), IsEmpty());
}

TEST_F(PipelineControllerTest, VariablesFromAnUnfinishedOrUnknownNamespaceAreUnknown) {
  const auto lookup = [](const std::string& ns, const std::string& var) -> std::optional<std::string> {
    if (ns == "A" && var == "x") return "1";
    return std::nullopt;
  };
  EXPECT_THAT(SubstituteVariables("v#{A.x}-#{A.x}#{", lookup), test::IsOkAndHolds("v1-1#{"));
  EXPECT_THAT(SubstituteVariables("#{B.x}", lookup),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown variable #{B.x}")));
  EXPECT_THAT(SubstituteVariables("#{Ax}", lookup),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("malformed")));
}

TEST_F(PipelineControllerTest, ActionsWithTheSameRunOrderRunInParallel) {
  Apply(R"(name: flask-app
stages:
  - name: Source
    actions: [{name: S, category: Source, configuration: {project: flask-app}, output_artifacts: [Src]}]
  - name: Build
    actions:
      - {name: Unit, category: Test, configuration: {project: flask-app}, input_artifacts: [Src]}
      - {name: Image, category: Build, configuration: {project: other}, input_artifacts: [Src], output_artifacts: [Img]}
      - {name: Scan, category: Test, configuration: {project: other}, input_artifacts: [Img], run_order: 2}
)");
  const std::string a = Start("aaa");
  ASSERT_EQ(builds_.started().size(), 2u);
  Succeed(builds_.started()[1]);
  controller_->Tick();
  EXPECT_EQ(builds_.started().size(), 2u);  // Scan waits for the whole run_order 1 group
  Succeed(builds_.started()[0]);
  controller_->Tick();
  ASSERT_EQ(builds_.started().size(), 3u);
  EXPECT_EQ(builds_.build(builds_.started()[2]).source_version(), "aaa");
  Succeed(builds_.started()[2]);
  controller_->Tick();
  EXPECT_EQ(Get(a).status(), "Succeeded");
}

TEST_F(PipelineControllerTest, BuildWithoutItsOutputArtifactFails) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  builds_.Complete(builds_.started()[0], BuildStatus::SUCCEEDED, {}, /*artifacts=*/{});
  controller_->Tick();
  EXPECT_EQ(Get(a).status(), "Failed");
  EXPECT_THAT(Action(Get(a), "Build", "Build").summary(), HasSubstr("output artifact BuildOutput"));
}

TEST_F(PipelineControllerTest, FailedDeploymentFailsTheExecution) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  Succeed(builds_.started()[0]);
  controller_->Tick();
  ASSERT_THAT(Approve(a, true), IsOk());
  deploys_.Set("d-1", "Failed");
  controller_->Tick();
  EXPECT_EQ(Get(a).status(), "Failed");
  EXPECT_EQ(Action(Get(a), "Deploy", "Deploy").summary(), "deployment d-1 Failed");
}

TEST_F(PipelineControllerTest, SourceChangeStartsPipelinesOfThatProjectAndBranchOnce) {
  Apply(FlaskYaml("PARALLEL"));
  absl::StatusOr<std::vector<std::string>> ids =
      controller_->OnSourceChange("flask-app", "main", "c1", "webhook");
  ASSERT_THAT(ids, IsOk());
  ASSERT_EQ(ids->size(), 1u);
  PipelineExecution e = Get((*ids)[0]);
  EXPECT_EQ(e.trigger(), "webhook");
  EXPECT_EQ(e.source_commit(), "c1");
  EXPECT_THAT(BuiltCommits(), ElementsAre("c1"));
  // The same commit again (redelivery, or a poll after the webhook) starts nothing.
  EXPECT_THAT(controller_->OnSourceChange("flask-app", "main", "c1", "poll"),
              test::IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(controller_->OnSourceChange("flask-app", "dev", "c2", "webhook"),
              test::IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(controller_->OnSourceChange("other", "main", "c3", "webhook"),
              test::IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(controller_->OnSourceChange("flask-app", "main", "c4", "poll"),
              test::IsOkAndHolds(testing::SizeIs(1)));
}

TEST_F(PipelineControllerTest, ManualStartWithoutCommitUsesTheBranch) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("");
  EXPECT_EQ(Get(a).source_commit(), "main");
  EXPECT_THAT(BuiltCommits(), ElementsAre("main"));
}

TEST_F(PipelineControllerTest, ExecutionsContinueAfterARestart) {
  Apply(FlaskYaml("SUPERSEDED"));
  const std::string a = Start("aaa");
  const std::string b = Start("bbb");
  Restart();
  Succeed(builds_.started()[0]);
  controller_->Tick();
  EXPECT_EQ(Action(Get(a), "Approve", "Approve").status(), "Waiting");
  EXPECT_THAT(BuiltCommits(), ElementsAre("aaa", "bbb"));
  ASSERT_THAT(Approve(a, true), IsOk());
  EXPECT_EQ(Stage(Get(a), "Deploy").status(), "InProgress");
  // A new execution gets a fresh sequence number: it is the newest.
  const std::string c = Start("ccc");
  absl::StatusOr<kiln::v1::GetPipelineResponse> r = controller_->GetPipeline("flask-app", 0);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->executions_size(), 3);
  EXPECT_EQ(r->executions(0).id(), c);
  EXPECT_EQ(r->executions(2).id(), a);
}

TEST_F(PipelineControllerTest, PutPipelineValidatesAndCountsVersions) {
  absl::StatusOr<kiln::v1::Pipeline> p = ParsePipelineYaml(FlaskYaml("SUPERSEDED"), "p.yaml");
  ASSERT_THAT(p, IsOk());
  EXPECT_THAT(controller_->PutPipeline(*p), test::IsOkAndHolds(testing::Property(
                                                &kiln::v1::Pipeline::version, 1)));
  EXPECT_THAT(controller_->PutPipeline(*p), test::IsOkAndHolds(testing::Property(
                                                &kiln::v1::Pipeline::version, 2)));
  p->mutable_stages()->RemoveLast();
  p->mutable_stages()->RemoveLast();
  p->mutable_stages()->RemoveLast();
  EXPECT_THAT(controller_->PutPipeline(*p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least 2 stages")));
  EXPECT_THAT(controller_->GetPipeline("nope", 0), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(controller_->StartPipelineExecution("nope", ""),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace kiln::coordinator
