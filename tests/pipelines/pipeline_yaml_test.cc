// pipeline.yaml parsing and the structure rules of reference §3.1/§3.2: one test per rule, named
// after it, checking the rule is named and the position points at the offending value.
#include "coordinator/pipelines/pipeline_yaml.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiln::coordinator {
namespace {

using ::kiln::test::IsOk;
using ::kiln::test::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kFlask[] = R"(name: flask-app
execution_mode: SUPERSEDED
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

absl::StatusOr<kiln::v1::Pipeline> Parse(const std::string& yaml) {
  return ParsePipelineYaml(yaml, "pipeline.yaml");
}

// A two-stage pipeline whose second stage's actions are `actions` (YAML flow list items).
std::string TwoStages(const std::string& actions) {
  return "name: p\nstages:\n"
         "  - name: Source\n"
         "    actions: [{name: Src, category: Source, configuration: {project: app}, "
         "output_artifacts: [Out]}]\n"
         "  - name: Build\n"
         "    actions:\n" +
         actions;
}

TEST(PipelineYamlTest, ParsesTheFlaskPipeline) {
  absl::StatusOr<kiln::v1::Pipeline> p = Parse(kFlask);
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->name(), "flask-app");
  EXPECT_EQ(p->execution_mode(), "SUPERSEDED");
  ASSERT_EQ(p->stages_size(), 4);
  const auto& build = p->stages(1).actions(0);
  EXPECT_EQ(build.category(), "Build");
  EXPECT_EQ(build.configuration().at("project"), "flask-app");
  EXPECT_EQ(build.input_artifacts(0), "SourceOutput");
  EXPECT_EQ(build.output_artifacts(0), "BuildOutput");
  EXPECT_EQ(build.namespace_(), "BuildVariables");
  EXPECT_EQ(build.run_order(), 1);
  EXPECT_EQ(p->stages(3).actions(0).configuration().at("deployment_group"), "web");
  EXPECT_EQ(p->version(), 0);
  EXPECT_THAT(ValidatePipeline(*p), IsOk());
}

TEST(PipelineYamlTest, ExecutionModeDefaultsToSupersededAndIsCaseInsensitive) {
  std::string yaml = kFlask;
  yaml.replace(yaml.find("execution_mode: SUPERSEDED"), 26, "execution_mode: queued");
  EXPECT_EQ(Parse(yaml)->execution_mode(), "QUEUED");
  yaml.replace(yaml.find("execution_mode: queued"), 22, "");
  EXPECT_EQ(Parse(yaml)->execution_mode(), "SUPERSEDED");
}

TEST(PipelineYamlTest, UnknownExecutionModeIsRejected) {
  std::string yaml = kFlask;
  yaml.replace(yaml.find("SUPERSEDED"), 10, "FASTEST");
  EXPECT_THAT(Parse(yaml), StatusIs(absl::StatusCode::kInvalidArgument,
                                    AllOf(StartsWith("pipeline.yaml:2:17: execution_mode:"),
                                          HasSubstr("SUPERSEDED, QUEUED or PARALLEL"))));
}

TEST(PipelineYamlTest, UnknownKeyIsRejectedWithItsPosition) {
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Out], timeout: 5}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.yaml:7:"), HasSubstr("unknown key 'timeout'"))));
}

TEST(PipelineYamlTest, YamlSyntaxErrorNamesThePosition) {
  EXPECT_THAT(Parse("name: p\nstages: [\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.yaml:"), HasSubstr("YAML syntax error"))));
}

// ---- §3.1 rules ----

TEST(PipelineYamlTest, RuleAtLeastTwoStages) {
  EXPECT_THAT(Parse("name: p\nstages:\n  - name: Source\n    actions: [{name: S, category: Source, "
                    "configuration: {project: app}, output_artifacts: [Out]}]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.yaml:3:3: stages:"), HasSubstr("has 1 stage"),
                             HasSubstr("a pipeline has at least 2 stages"))));
}

TEST(PipelineYamlTest, RuleFirstStageHoldsOnlySourceActions) {
  std::string yaml = kFlask;
  const std::string first = "namespace: SourceVariables}]";
  yaml.replace(yaml.find(first), first.size(),
               "namespace: SourceVariables}, {name: Approve, category: Approval}]");
  EXPECT_THAT(Parse(yaml),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[0].actions[1].category:"),
                             HasSubstr("the first stage holds only source actions"))));
}

TEST(PipelineYamlTest, RuleFirstStageHoldsAtLeastOneSourceAction) {
  EXPECT_THAT(Parse("name: p\nstages:\n  - name: Source\n    actions: []\n  - name: A\n"
                    "    actions: [{name: A, category: Approval}]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.yaml:4:14: stages[0].actions:"),
                             HasSubstr("the first stage holds at least one source action"))));
}

TEST(PipelineYamlTest, RuleNoSourceActionOutsideTheFirstStage) {
  EXPECT_THAT(Parse(TwoStages("      - {name: Again, category: Source, configuration: {project: app}, "
                              "output_artifacts: [Out2]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[0].category:"),
                             HasSubstr("no stage other than the first holds a source action"))));
}

TEST(PipelineYamlTest, RuleAtLeastOneNonSourceAction) {
  EXPECT_THAT(Parse(TwoStages("      []\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least one stage has a non-source action")));
}

TEST(PipelineYamlTest, RuleEveryStageHoldsAnAction) {
  EXPECT_THAT(Parse(TwoStages("      - {name: A, category: Approval}\n  - name: Empty\n    actions: []\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[2].actions:"),
                             HasSubstr("every stage holds at least one action"))));
}

TEST(PipelineYamlTest, RuleStageNamesAreUnique) {
  EXPECT_THAT(
      Parse(TwoStages("      - {name: A, category: Approval}\n  - name: Build\n"
                      "    actions: [{name: B, category: Approval}]\n")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith("pipeline.yaml:8:11: stages[2].name:"),
                     HasSubstr("also used by stages[1]"),
                     HasSubstr("stage names are unique within the pipeline"))));
}

TEST(PipelineYamlTest, RuleActionNamesAreUniqueWithinAStage) {
  EXPECT_THAT(Parse(TwoStages("      - {name: A, category: Approval}\n"
                              "      - {name: A, category: Approval}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.yaml:8:16: stages[1].actions[1].name:"),
                             HasSubstr("action names are unique within a stage"))));
  // The same action name in two stages is fine.
  EXPECT_THAT(Parse(TwoStages("      - {name: Src, category: Approval}\n")), IsOk());
}

TEST(PipelineYamlTest, RuleOutputArtifactNamesAreUnique) {
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Out], output_artifacts: [Out]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[0].output_artifacts[0]:"),
                             HasSubstr("also produced by stages[0].actions[0]"),
                             HasSubstr("output artifact names are unique within the pipeline"))));
}

TEST(PipelineYamlTest, RuleInputArtifactIsProducedByAnEarlierAction) {
  // Unknown artifact.
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Nope]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[0].input_artifacts[0]:"),
                             HasSubstr("no action outputs an artifact named 'Nope'"),
                             HasSubstr("an input artifact is the output of an earlier action"))));
  // Same stage, same run_order: not earlier.
  const std::string parallel =
      "      - {name: B1, category: Build, configuration: {project: app}, input_artifacts: [Out], "
      "output_artifacts: [B1Out]}\n"
      "      - {name: B2, category: Build, configuration: {project: app}, input_artifacts: [B1Out]";
  EXPECT_THAT(Parse(TwoStages(parallel + "}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[1].input_artifacts[0]:"),
                             HasSubstr("does not run before 'B2'"))));
  // A lower run_order in the same stage is earlier.
  EXPECT_THAT(Parse(TwoStages(parallel + ", run_order: 2}\n")), IsOk());
  // A later stage is not earlier.
  EXPECT_THAT(Parse("name: p\nstages:\n  - name: Source\n    actions: [{name: S, category: Source, "
                    "configuration: {project: app}, output_artifacts: [Out]}]\n"
                    "  - name: A\n    actions: [{name: B, category: Build, configuration: "
                    "{project: app}, input_artifacts: [Later]}]\n"
                    "  - name: C\n    actions: [{name: B, category: Build, configuration: "
                    "{project: app}, input_artifacts: [Out], output_artifacts: [Later]}]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'Later' is produced by stages[2].actions[0]")));
}

TEST(PipelineYamlTest, RuleArtifactCountsPerCategory) {
  const auto counts = HasSubstr("artifact counts per category");
  // Source: exactly one output.
  EXPECT_THAT(Parse("name: p\nstages:\n  - name: Source\n    actions: [{name: S, category: Source, "
                    "configuration: {project: app}}]\n  - name: A\n    actions: [{name: A, "
                    "category: Approval}]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[0].actions[0].output_artifacts:"),
                             HasSubstr("a Source action has 1 output artifacts, 'S' has 0"), counts)));
  // Build: at least one input.
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("takes 1..5 input artifacts, 'B' has 0"), counts)));
  // Approval: no artifacts.
  EXPECT_THAT(Parse(TwoStages("      - {name: A, category: Approval, input_artifacts: [Out]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("an Approval action takes 0 input artifacts"), counts)));
  // Deploy: exactly one input, no output.
  EXPECT_THAT(Parse(TwoStages("      - {name: D, category: Deploy, configuration: {application: a, "
                              "deployment_group: g}, input_artifacts: [Out], output_artifacts: "
                              "[X]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("a Deploy action has 0 output artifacts"), counts)));
}

TEST(PipelineYamlTest, RuleRunOrderIsPositive) {
  EXPECT_THAT(Parse(TwoStages("      - {name: A, category: Approval, run_order: 0}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.yaml:7:50: stages[1].actions[0].run_order:"),
                             HasSubstr("0 is not positive"),
                             HasSubstr("run_order is a positive integer"))));
  // Over the API, 0 means the default and a negative value breaks the rule.
  kiln::v1::Pipeline p = *Parse(TwoStages("      - {name: A, category: Approval}\n"));
  p.mutable_stages(1)->mutable_actions(0)->set_run_order(0);
  EXPECT_THAT(ValidatePipeline(p), IsOk());
  p.mutable_stages(1)->mutable_actions(0)->set_run_order(-3);
  EXPECT_THAT(ValidatePipeline(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.stages[1].actions[0].run_order: -3 is not positive"),
                             HasSubstr("run_order is a positive integer"))));
}

TEST(PipelineYamlTest, RuleNamespacesAreUnique) {
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Out], namespace: Vars}\n"
                              "      - {name: C, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Out], namespace: Vars}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[1].namespace:"),
                             HasSubstr("namespaces are unique within the pipeline"))));
}

TEST(PipelineYamlTest, RuleNamespaceDoesNotCollideWithAnArtifactName) {
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Out], namespace: Out}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[0].namespace:"),
                             HasSubstr("must not collide with an artifact name"))));
}

TEST(PipelineYamlTest, RuleCodepipelineNamespaceIsReserved) {
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app}, "
                              "input_artifacts: [Out], namespace: codepipeline}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the namespace codepipeline is reserved")));
}

// ---- Kiln rules ----

TEST(PipelineYamlTest, ConfigurationKeysAreCheckedPerCategory) {
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, input_artifacts: [Out]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("a Build action needs configuration key 'project'")));
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app, "
                              "image: x}, input_artifacts: [Out]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[0].configuration.image:"),
                             HasSubstr("allowed: project, environment_variables"))));
  EXPECT_THAT(Parse(TwoStages("      - {name: B, category: Build, configuration: {project: app, "
                              "environment_variables: 'not json'}, input_artifacts: [Out]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("environment_variables must be a JSON list")));
}

TEST(PipelineYamlTest, UnknownCategoryIsRejected) {
  EXPECT_THAT(Parse(TwoStages("      - {name: L, category: Invoke}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("stages[1].actions[0].category:"),
                             HasSubstr("'Invoke' is not a category Kiln runs"))));
}

TEST(PipelineYamlTest, DeployInputMustComeFromABuild) {
  EXPECT_THAT(Parse(TwoStages("      - {name: D, category: Deploy, configuration: {application: a, "
                              "deployment_group: g}, input_artifacts: [Out]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("a Deploy action deploys a build's artifact")));
}

TEST(PipelineYamlTest, ValidatePipelineNamesProtoFieldPaths) {
  kiln::v1::Pipeline p = *Parse(kFlask);
  p.mutable_stages(2)->set_name("Build");
  EXPECT_THAT(ValidatePipeline(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("pipeline.stages[2].name: stage name 'Build'"),
                             HasSubstr("stage names are unique"))));
}

TEST(PipelineYamlTest, BuildEnvironmentVariablesParse) {
  auto vars = ParseBuildEnvironmentVariables(
      R"([{"name": "A", "value": "#{X.Y}"}, {"name": "B", "value": "/p", "type": "PARAMETER_STORE"}])");
  ASSERT_THAT(vars, IsOk());
  ASSERT_EQ(vars->size(), 2u);
  EXPECT_EQ((*vars)[0].value(), "#{X.Y}");
  EXPECT_EQ((*vars)[1].type(), kiln::v1::EnvironmentVariable::PARAMETER_STORE);
  EXPECT_THAT(ParseBuildEnvironmentVariables(R"([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than once")));
}

}  // namespace
}  // namespace kiln::coordinator
