// pipeline.yaml (the `kiln pipeline apply -f` format) -> kiln.v1.Pipeline, and the structure rules of
// reference/aws-semantics.md §3.1 shared by the CLI (with file:line:col) and the coordinator (with
// proto field paths). Pure functions; thread-safe.
//
//   name: flask-app
//   execution_mode: SUPERSEDED          # default; QUEUED | PARALLEL (§3.3)
//   stages:
//     - name: Source
//       actions:
//         - name: Source
//           category: Source            # Source | Build | Test | Approval | Deploy
//           configuration: {project: flask-app}
//           output_artifacts: [SourceOutput]
//           namespace: SourceVariables
//     - name: Build
//       actions:
//         - name: Build
//           category: Build
//           configuration:
//             project: flask-app
//             # Optional, CodePipeline's CodeBuild format: a JSON list of {name, value, type?}
//             # (type PLAINTEXT (default) or PARAMETER_STORE); values may use variables.
//             environment_variables: '[{"name": "COMMIT", "value": "#{SourceVariables.CommitId}"}]'
//           input_artifacts: [SourceOutput]
//           output_artifacts: [BuildOutput]
//           namespace: BuildVariables
//           run_order: 1                # default 1; same run_order = parallel
//     - name: Approve
//       actions: [{name: Approve, category: Approval, configuration: {summary: "Ship #{SourceVariables.CommitId}?"}}]
//     - name: Deploy
//       actions:
//         - {name: Deploy, category: Deploy, input_artifacts: [BuildOutput],
//            configuration: {application: flask-app, deployment_group: web}}
//
// Configuration keys per category: Source {project}; Build/Test {project, environment_variables?};
// Approval {summary?}; Deploy {application, deployment_group}. Configuration values may use
// #{namespace.variable} and #{codepipeline.PipelineExecutionId} (§3.2), substituted when the action
// starts. Kiln-specific rules beyond §3.1: names use [A-Za-z0-9.@_-] (artifacts [A-Za-z0-9_-],
// namespaces [A-Za-z0-9@_-]), at most 100 characters; every stage holds an action; a Deploy action's
// input artifact is the output of a Build or Test action (a build's artifact zip is the revision).
#ifndef KILN_COORDINATOR_PIPELINES_PIPELINE_YAML_H_
#define KILN_COORDINATOR_PIPELINES_PIPELINE_YAML_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kiln/v1/build.pb.h"
#include "kiln/v1/deploy.pb.h"

namespace kiln::coordinator {

// A broken rule: `path` is the field path ("stages[1].actions[0].input_artifacts[0]"; "" = the
// whole pipeline), `message` says what is wrong and ends with the rule, e.g.
// "... (§3.1: stage names are unique within the pipeline)".
struct PipelineViolation {
  std::string path;
  std::string message;
};

// The first rule `pipeline` breaks, checking in this order: names and execution_mode; §3.1 at least
// 2 stages; the first stage holds only source actions; it holds at least one; no other stage holds
// a source action; at least one non-source action; every stage holds an action; unique stage names;
// unique action names within a stage; known categories and their configuration keys; run_order
// positive (0 = default 1); unique output artifact names; artifact counts per category; inputs
// produced by an earlier action; unique namespaces, not "codepipeline", not an artifact name.
std::optional<PipelineViolation> FindPipelineViolation(const kiln::v1::Pipeline& pipeline);

// FindPipelineViolation as a status: INVALID_ARGUMENT "pipeline.<path>: <message>", else OK.
absl::Status ValidatePipeline(const kiln::v1::Pipeline& pipeline);

// The Build/Test configuration `environment_variables`: a JSON list of {"name", "value", "type"?}
// objects (type PLAINTEXT, the default, or PARAMETER_STORE), as CodePipeline's CodeBuild action
// takes it. Values are returned as written (variables not substituted). Errors: INVALID_ARGUMENT
// describing the problem (not JSON, not a list, a missing or non-string name/value, an unknown type,
// a duplicate name).
absl::StatusOr<std::vector<kiln::v1::EnvironmentVariable>> ParseBuildEnvironmentVariables(
    std::string_view json);

// Fills defaults: execution_mode SUPERSEDED, run_order 1.
void NormalizePipeline(kiln::v1::Pipeline& pipeline);

// Parses pipeline YAML. Unknown keys and wrong types are rejected. Errors: INVALID_ARGUMENT
// "<file>:<line>:<col>: <key path>: <problem>" (rule violations point at the offending value).
// The result is normalized and passes ValidatePipeline; its version is 0 (the server sets it).
absl::StatusOr<kiln::v1::Pipeline> ParsePipelineYaml(std::string_view yaml_text,
                                                     std::string_view file_name);

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_PIPELINES_PIPELINE_YAML_H_
