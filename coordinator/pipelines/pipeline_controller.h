// The pipeline controller: CodePipeline-style pipelines and their executions
// (reference/aws-semantics.md §3).
//
// A pipeline (pipeline_yaml.h) is a list of stages of actions. Each run is a *pipeline execution*
// carrying one source revision. The controller is an engine driven by Tick() (the coordinator's
// ticker, about every 250 ms) and by the API calls, which advance executions at once:
//   - Source actions run when the execution is created and succeed at once, publishing CommitId (the
//     revision) and BranchName (the project's branch) (§3.2). The Source stage therefore never holds
//     a lock for long.
//   - Build/Test actions start a build of configuration.project (BuildBackend::StartBuild with
//     source_version = the CommitId of the source action their first input artifact comes from,
//     initiator "codepipeline/<pipeline>", environment_variables as overrides) and end with the
//     build: SUCCEEDED -> Succeeded (output variables = the build's exported variables; output
//     artifact 1 is the build's primary artifact, artifacts 2..5 its secondary artifacts of the same
//     identifier, each must exist), anything else -> Failed.
//   - Approval actions wait ("Waiting") for PutApprovalResult: approve -> Succeeded, reject ->
//     Failed, no answer within Options::approval_timeout (7 days) -> Failed (§3.4).
//   - Deploy actions call DeploymentStarter::Start with the build and artifact behind their input
//     artifact and end with the deployment (Succeeded -> Succeeded; Failed or Stopped -> Failed).
//   Configuration values (and Build environment variable values) have #{namespace.variable} and
//   #{codepipeline.PipelineExecutionId} substituted before the action starts; an unknown variable,
//   or a value over 1000 characters after substitution, fails the action naming it (§3.2).
//   Actions of a stage with the same run_order run in parallel, larger run_orders after. An action
//   failure fails the stage and the execution at once; actions still running in that stage carry
//   on and are recorded when they end (§3.4 retry).
// Execution modes (§3.3), by the pipeline's current execution_mode:
//   SUPERSEDED: a stage holds one execution at a time (InProgress, including a pending approval). An
//     execution that finished a stage waits in front of the next one while it is locked; a newer
//     execution arriving at the same spot replaces it and the older one ends Superseded. A running
//     stage is never interrupted. A failed stage is unlocked.
//   QUEUED: the same stage locks, but waiting executions queue in arrival order and none is
//     superseded, so executions go through every stage one after another in the order they started.
//   PARALLEL: no locks; executions run independently.
// Retry (§3.4): RetryStageExecution re-runs the failed actions of a failed stage (succeeded actions
// are kept, running ones carry on) and the execution continues. Refused once a newer execution has
// entered that stage (SUPERSEDED and QUEUED), or after the pipeline was updated.
// Statuses: executions InProgress, Succeeded, Failed, Superseded; stages "" (not reached),
// InProgress, Succeeded, Failed; actions InProgress, Waiting (approval), Succeeded, Failed.
// Stopping executions (Stopping/Stopped, Abandoned actions) is not implemented: there is no RPC.
//
// Durable layout (one batch per change; the execution is written after the build or deployment it
// started was created, so a crash in between may start that action again after a restart):
//   pipeline/<name>                          kiln.v1.Pipeline (current version)
//   pipeline-version/<name>/<version:010>    kiln.v1.Pipeline (every version; executions run the
//                                            version they started with)
//   pipeline-execution/<name>/<seq:020>      kiln.v1.PipelineExecution
//   pipeline-execution-id/<execution id>     "<name>/<seq:020>"
//   pipeline-active/<seq:020>                "<name>" while the execution is InProgress or has a
//                                            running action (reloaded by Create)
//   counter/pipeline_execution_seq           decimal int64, the last seq handed out
//
// Thread-safety: every public method is thread-safe. The controller calls its BuildBackend and
// DeploymentStarter while holding its own lock: they must not call back into the controller and
// should not block on the network.
#ifndef KILN_COORDINATOR_PIPELINES_PIPELINE_CONTROLLER_H_
#define KILN_COORDINATOR_PIPELINES_PIPELINE_CONTROLLER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/builds/build_controller.h"
#include "coordinator/store/store.h"
#include "kiln/v1/build.pb.h"
#include "kiln/v1/deploy.pb.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::coordinator {

// What Build/Test and Source actions need from the build side (BuildController in production).
// Implementations must be thread-safe.
class PipelineBuildBackend {
 public:
  virtual ~PipelineBuildBackend() = default;
  // NotFound if there is no such project.
  virtual absl::StatusOr<kiln::v1::Project> GetProject(const std::string& name) = 0;
  // As BuildController::StartBuild.
  virtual absl::StatusOr<kiln::v1::Build> StartBuild(const kiln::v1::StartBuildRequest& request) = 0;
  // NotFound if there is no such build.
  virtual absl::StatusOr<kiln::v1::Build> GetBuild(const std::string& id) = 0;
  // As BuildController::FindArtifact ("" = the primary artifact).
  virtual absl::StatusOr<kiln::v1::BuildArtifact> FindArtifact(const std::string& build_id,
                                                               const std::string& name) = 0;
};

// PipelineBuildBackend over a BuildController (not owned; must outlive this).
class BuildControllerBackend final : public PipelineBuildBackend {
 public:
  explicit BuildControllerBackend(BuildController* builds) : builds_(builds) {}
  absl::StatusOr<kiln::v1::Project> GetProject(const std::string& name) override {
    return builds_->GetProject(name);
  }
  absl::StatusOr<kiln::v1::Build> StartBuild(const kiln::v1::StartBuildRequest& request) override {
    return builds_->StartBuild(request);
  }
  absl::StatusOr<kiln::v1::Build> GetBuild(const std::string& id) override {
    return builds_->GetBuild(id);
  }
  absl::StatusOr<kiln::v1::BuildArtifact> FindArtifact(const std::string& build_id,
                                                       const std::string& name) override {
    return builds_->FindArtifact(build_id, name);
  }

 private:
  BuildController* builds_;
};

// Creates deployments for Deploy actions (the deployment controller, adapted by the coordinator).
// Implementations must be thread-safe.
class DeploymentStarter {
 public:
  virtual ~DeploymentStarter() = default;
  // Starts a deployment of build `build_id`'s artifact `artifact_name` ("" = primary) to
  // `application`/`group`; returns the deployment id. Any error fails the action with its message.
  virtual absl::StatusOr<std::string> Start(const std::string& application, const std::string& group,
                                            const std::string& build_id,
                                            const std::string& artifact_name) = 0;
  // The deployment's status (kiln.v1.Deployment.status: Created, Queued, InProgress, Succeeded,
  // Failed, Stopped). NotFound fails the action; other errors are retried at the next tick.
  virtual absl::StatusOr<std::string> Status(const std::string& deployment_id) = 0;
};

// Replaces every #{namespace.variable} in `text` with lookup(namespace, variable). Text without a
// closing '}' is kept as written. Errors: INVALID_ARGUMENT "unknown variable #{ns.var}" when lookup
// returns nullopt, "malformed variable reference #{x}" without a '.'.
absl::StatusOr<std::string> SubstituteVariables(
    std::string_view text,
    const std::function<std::optional<std::string>(const std::string& ns, const std::string& var)>&
        lookup);

class PipelineController {
 public:
  struct Options {
    Store* store = nullptr;                   // not owned; must outlive the controller
    PipelineBuildBackend* builds = nullptr;   // not owned
    // Not owned; may be null (Deploy actions then fail: "no deployment service is configured").
    DeploymentStarter* deployments = nullptr;
    const common::Clock* clock = common::RealClock::Default();
    // A manual approval not answered within this time fails (§3.4).
    absl::Duration approval_timeout = absl::Hours(7 * 24);
  };

  // Loads pipelines and the executions in progress from the store. Errors: InvalidArgument (store
  // or builds missing), the store's errors, DataLoss (a corrupt record).
  static absl::StatusOr<std::unique_ptr<PipelineController>> Create(const Options& options);
  PipelineController(const PipelineController&) = delete;
  PipelineController& operator=(const PipelineController&) = delete;
  ~PipelineController();

  // Creates (version 1) or replaces (version + 1) a pipeline; running executions keep the version
  // they started with. Returns the stored pipeline (defaults filled in). Errors: InvalidArgument
  // (ValidatePipeline: names the §3.1 rule), store errors.
  absl::StatusOr<kiln::v1::Pipeline> PutPipeline(kiln::v1::Pipeline pipeline);

  // The pipeline and its newest `max_executions` executions (0 = 20, at most 1000), newest first.
  // NotFound, InvalidArgument (negative max), store errors.
  absl::StatusOr<kiln::v1::GetPipelineResponse> GetPipeline(const std::string& name,
                                                            int max_executions);

  // Starts an execution with trigger "manual". `commit` is the revision of the first source action
  // (the others use their project's branch); empty = the first source project's branch name, which
  // the builds resolve. Returns the execution after it advanced as far as it can now. NotFound
  // (pipeline), store errors.
  absl::StatusOr<kiln::v1::PipelineExecution> StartPipelineExecution(const std::string& name,
                                                                     const std::string& commit);

  // A webhook delivery or poll found `commit` on `branch` of `project` (trigger "webhook" or
  // "poll"). Starts an execution of every pipeline with a source action on `project` whose branch
  // is `branch`, unless that pipeline's newest execution already carries `commit` (a redelivery, or
  // a poll after a webhook). Those source actions get `commit`; other source actions their branch.
  // Returns the new execution ids (empty when no pipeline matched). Errors: store errors.
  absl::StatusOr<std::vector<std::string>> OnSourceChange(const std::string& project,
                                                          const std::string& branch,
                                                          const std::string& commit,
                                                          const std::string& trigger);

  // Answers a waiting approval (approve -> Succeeded, else Failed, with `summary`) and advances the
  // execution. NotFound (pipeline, execution, stage or action), FailedPrecondition (not an approval,
  // or not waiting), store errors.
  absl::StatusOr<kiln::v1::PipelineExecution> PutApprovalResult(
      const kiln::v1::PutApprovalResultRequest& request);

  // Re-runs the failed actions of a failed stage (§3.4). NotFound (pipeline, execution, stage),
  // FailedPrecondition (the stage is not Failed; the pipeline changed since the execution started;
  // a newer execution entered the stage), store errors.
  absl::StatusOr<kiln::v1::PipelineExecution> RetryStageExecution(
      const kiln::v1::RetryStageExecutionRequest& request);

  // Polls running builds, deployments and approval timeouts and advances every execution in
  // progress. Called about every 250 ms by the coordinator's ticker; tests call it directly.
  void Tick();

  // False once a store write failed (the coordinator must be restarted).
  bool Healthy();

 private:
  struct Exec {
    int64_t seq = 0;
    kiln::v1::PipelineExecution pe;
    std::shared_ptr<const kiln::v1::Pipeline> def;  // the version it runs
    // Set at creation, not persisted: source action name -> revision ("" = its branch). Absent
    // (after a restart or on retry): the first source action gets pe.source_commit.
    std::map<std::string, std::string> source_revisions;
  };

  explicit PipelineController(const Options& options);
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<const kiln::v1::Pipeline>> VersionLocked(const std::string& name,
                                                                          int version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finds an execution: the live one, else loaded from the store (not made live). NotFound.
  absl::StatusOr<Exec> FindExecLocked(const std::string& pipeline, const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates and persists an execution (not advanced yet); returns its seq.
  absl::StatusOr<int64_t> CreateExecLocked(const kiln::v1::Pipeline& pipeline,
                                           const std::string& trigger, const std::string& commit,
                                           const std::string& source_project)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The execution `seq` of `pipeline` as it is now (live or stored).
  absl::StatusOr<kiln::v1::PipelineExecution> CurrentLocked(const std::string& pipeline, int64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteLocked(const WriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistLocked(const Exec& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Advances every live execution until nothing changes, persisting each change.
  void AdvanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SUPERSEDED mode: of the executions waiting at the same stage, all but the newest end
  // Superseded. Adds the changed ones to `dirty`.
  void SupersedeLocked(std::set<int64_t>& dirty) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool StepLocked(Exec& e, bool poll) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PollActionsLocked(Exec& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CanEnterLocked(const Exec& e, int stage) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts what can start in stage `stage` (InProgress) and settles its status. True if changed.
  bool EvaluateStageLocked(Exec& e, int stage) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartActionLocked(Exec& e, const kiln::v1::PipelineAction& def, kiln::v1::ActionExecution& ae)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::string> SubstituteLocked(const Exec& e, std::string_view text)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The revision for a Build action: CommitId of the source action its first input comes from.
  std::string RevisionForLocked(const Exec& e, const kiln::v1::PipelineAction& def)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // InProgress, or an action still running (a failed stage's actions carry on).
  static bool IsLive(const Exec& e);
  std::string ModeLocked(const Exec& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  absl::Mutex mu_;
  absl::Status store_error_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, kiln::v1::Pipeline> pipelines_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int>, std::shared_ptr<const kiln::v1::Pipeline>> versions_
      ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Exec> live_ ABSL_GUARDED_BY(mu_);  // by seq: oldest first
  int64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_PIPELINES_PIPELINE_CONTROLLER_H_
