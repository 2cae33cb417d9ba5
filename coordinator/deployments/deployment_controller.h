// The deployment controller: the coordinator's state machine for CodeDeploy-style in-place
// deployments (reference/aws-semantics.md §4.9, §4.10): applications, deployment groups and
// deployments, rolled across a group's agents by deploy::Rollout.
//
// Flow: CreateDeployment resolves the revision, takes the group's hosts (connected agents carrying
// every agent_label), persists the deployment and sends DeployHost to the first batch. The agents
// report DeployEventResult (one per lifecycle event, the last with host_done) and DeployLog over
// their Connect streams; the controller receives them as an AgentExtension of the BuildController.
// Each host_done feeds Rollout::HostFinished, which yields the next batch or the outcome. A Failed
// deployment of a group with auto_rollback_on_failure and a last successful revision starts a
// rollback deployment (creator "codeDeployRollback", §4.10); a Succeeded one becomes the group's
// last successful deployment.
//
// Durability: every change is one Store batch written before it is acted on (a DeployHost or
// StopDeployment sent, an answer returned). Key space (coordinator/store/store.h):
//   deploy-app/<application>                     kiln.v1.Application
//   deploy-group/<application>/<group>           kiln.v1.DeploymentGroup
//   deployment/<id>                              kiln.v1.Deployment
//   deployment-by-time/<seq:020>                 deployment id (creation order)
//   deployment-active/<id>                       JSON rollout record {hosts, finished} while the
//                                                deployment or one of its hosts is still running
//   deployment-instance/<group id>/<agent id>    JSON {healthy, revision}: the host's instance and
//                                                revision health in that group (§4.9 rule 1)
//   counter/deployment_seq                       decimal int64
//   log/<deployment id>/<agent id>               the host's log index (LogStore)
// A restart (Create) rebuilds each running deployment's Rollout by replaying its record (hosts in
// their original order, then the host results in the order they arrived). Targets that were
// InProgress keep running: their agent reconnects and re-reports; one that stays away past the
// lease fails. Whenever an agent (re)connects, it gets DeployHost again for each of its hosts still
// InProgress (StopDeployment for a stopped deployment): agents ignore a DeployHost they run or ran
// and resend its results (agent/client/deploy_runner.h), so a DeployHost lost to a disconnect, an
// agent restart or a coordinator crash between persisting and sending is not waited on forever.
//
// Instance health (§4.9): a host is unhealthy when its last deployment in the group failed; a
// host never deployed to in the group counts as healthy with revision Unknown (so that a first
// deployment honours the configuration's batches). Revision health: Current if its last successful
// revision in the group is the one being deployed, else Old.
//
// Leases: an agent that disconnects while one of its targets is InProgress has `lease_millis` to
// reconnect; Tick() fails its targets afterwards (the host counts as failed).
//
// Log following: Watch() registers a callback per deployment (as BuildController::Watch), called
// after every change (status, targets, events, log bytes).
//
// Thread-safety: every public method is thread-safe. Lock order: this controller's mutex, then the
// BuildController's (SendToAgent, ListAgents, ...), then the LogStore's; the BuildController calls
// the AgentExtension methods outside its own lock. Watch callbacks run outside the controller's
// lock and must not block.
#ifndef KILN_COORDINATOR_DEPLOYMENTS_DEPLOYMENT_CONTROLLER_H_
#define KILN_COORDINATOR_DEPLOYMENTS_DEPLOYMENT_CONTROLLER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/builds/build_controller.h"
#include "coordinator/logs/log_store.h"
#include "coordinator/store/store.h"
#include "deploy/rollout.h"
#include "kiln/v1/agent.pb.h"
#include "kiln/v1/deploy.pb.h"

namespace kiln::coordinator {

// A live subscription to one deployment's changes. Destroying it unsubscribes; after the destructor
// returns the callback is never called again.
class DeploymentWatch {
 public:
  virtual ~DeploymentWatch() = default;
};

class DeploymentController final : public AgentExtension {
 public:
  struct Options {
    Store* store = nullptr;            // not owned; must outlive the controller
    LogStore* logs = nullptr;          // not owned; host logs are "<deployment id>/<agent id>"
    BuildController* builds = nullptr; // not owned; agents, builds, artifacts, projects
    const common::Clock* clock = common::RealClock::Default();
    // How long an agent may stay disconnected while it deploys (milliseconds); use the
    // BuildController's lease.
    int64_t lease_millis = 10000;
  };

  // Loads durable state from `options.store` and registers with `options.builds`
  // (AddAgentExtension: call Create before serving; the controller must then outlive every call
  // the BuildController makes to it, i.e. destroy it after the gRPC server stopped). Errors:
  // InvalidArgument (missing option); the store's errors; DataLoss for a corrupt record.
  static absl::StatusOr<std::unique_ptr<DeploymentController>> Create(const Options& options);
  DeploymentController(const DeploymentController&) = delete;
  DeploymentController& operator=(const DeploymentController&) = delete;
  ~DeploymentController() override;

  // ---- applications and groups ----
  // InvalidArgument (name not 1..100 of [A-Za-z0-9_.-]), AlreadyExists, store errors.
  absl::StatusOr<kiln::v1::Application> CreateApplication(const std::string& name);
  absl::StatusOr<std::vector<kiln::v1::Application>> ListApplications();
  // Creates or replaces; keeps an existing group's id and last successful deployment (the caller's
  // values of these fields are ignored); fills defaults (config CodeDeployDefault.OneAtATime,
  // file_exists_behavior DISALLOW). NotFound (application), InvalidArgument (name, config,
  // minimum_healthy_hosts, file_exists_behavior, labels), store errors.
  absl::StatusOr<kiln::v1::DeploymentGroup> PutDeploymentGroup(kiln::v1::DeploymentGroup group);
  // Sorted by application, then name; `application` empty = all. NotFound (application).
  absl::StatusOr<std::vector<kiln::v1::DeploymentGroup>> ListDeploymentGroups(
      const std::string& application);
  // NotFound.
  absl::StatusOr<kiln::v1::DeploymentGroup> GetDeploymentGroup(const std::string& application,
                                                               const std::string& name);

  // ---- deployments ----
  // Starts a deployment (see the file comment); returns it InProgress with its first batch sent.
  // creator "" = "user"; "user" and "pipeline" are accepted. deployment_config_name "" = the
  // group's; "Custom" = the group's minimum_healthy_hosts.
  // Errors: NotFound (application, group, build, artifact, project); InvalidArgument (no revision,
  // bad config name or creator); FailedPrecondition (the build did not succeed; the group already
  // has a deployment in progress; no connected agent matches the group's labels; the minimum
  // healthy hosts cannot be met, §4.9 rule 4); store errors.
  absl::StatusOr<kiln::v1::Deployment> CreateDeployment(
      const kiln::v1::CreateDeploymentRequest& request);
  // CreateDeployment with creator "pipeline" and the group's configuration (the pipeline engine's
  // Deploy action). Same errors.
  absl::StatusOr<kiln::v1::Deployment> StartForPipeline(const std::string& application,
                                                        const std::string& deployment_group,
                                                        const kiln::v1::Revision& revision);
  // With each target's log_size_bytes. NotFound.
  absl::StatusOr<kiln::v1::Deployment> GetDeployment(const std::string& id);
  // Newest first, filtered by application and/or group ("" = any). `limit` 0 = 50, capped at
  // 1000. InvalidArgument (negative limit).
  absl::StatusOr<std::vector<kiln::v1::Deployment>> ListDeployments(const std::string& application,
                                                                    const std::string& group,
                                                                    int limit);
  // Stops a running deployment: StopDeployment goes to the hosts in progress (their results are
  // still recorded when they arrive), pending hosts become Skipped, the deployment ends Stopped.
  // No-op on a finished deployment. NotFound, store errors.
  absl::StatusOr<kiln::v1::Deployment> StopDeployment(const std::string& id);
  // Up to `max_bytes` of one host's log from `offset` (bytes); `host` is the agent id or hostname.
  // NotFound (deployment, or not one of its hosts), InvalidArgument (negative offset/max_bytes).
  absl::StatusOr<std::string> ReadLog(const std::string& id, const std::string& host,
                                      int64_t offset, int64_t max_bytes);
  // Calls `on_change` (from any thread, outside the controller's lock) after each change to the
  // deployment. NotFound if it does not exist.
  absl::StatusOr<std::unique_ptr<DeploymentWatch>> Watch(const std::string& id,
                                                         std::function<void()> on_change);
  // The revision `agent_id` may download for deployment `id` (DownloadRevision): its host must be
  // InProgress. NotFound (deployment), PermissionDenied (not a target in progress),
  // FailedPrecondition (a git revision: the agent clones it).
  absl::StatusOr<kiln::v1::BuildArtifactRevision> RevisionForAgent(const std::string& agent_id,
                                                                   const std::string& id);

  // ---- time ----
  // Fails the InProgress targets of agents disconnected for longer than the lease. Called by the
  // coordinator's ticker (about every 250 ms) next to BuildController::Tick; tests call it with a
  // fake clock.
  void Tick();
  // False once a store write failed (the coordinator must be restarted).
  bool Healthy();

  // ---- AgentExtension (called by the BuildController, outside its lock) ----
  void OnAgentConnected(const kiln::v1::AgentHello& hello) override;
  void OnAgentDisconnected(const std::string& agent_id) override;
  void OnAgentMessage(const std::string& agent_id, const kiln::v1::AgentMessage& message) override;

 private:
  struct Finished {
    std::string agent_id;
    bool succeeded = false;
    std::string reason;  // why it failed: "<event> failed: <message>" or "agent lost ..."
  };
  // A deployment that runs, or whose stopped hosts still run.
  struct Active {
    kiln::v1::Deployment d;
    std::vector<deploy::HostState> hosts;  // the Rollout's input, in target order
    std::vector<Finished> finished;        // host results in arrival order (replayed at restart)
    std::unique_ptr<deploy::Rollout> rollout;  // null once the deployment is Stopped
    std::set<std::string> unsent;          // DeployHost not delivered (agent was disconnected)
  };
  struct Watcher;
  class WatchImpl;

  explicit DeploymentController(const Options& options);
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<kiln::v1::Deployment> CreateLocked(const kiln::v1::CreateDeploymentRequest& req,
                                                    const std::string& rollback_of)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Resolves the revision in place (artifact sha256; a git commit as given or the branch).
  absl::Status ResolveRevisionLocked(kiln::v1::Revision& revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the rollout's next batch (if any), completes the deployment when the rollout is done,
  // persists it with `batch`, then sends DeployHost and handles completion (rollback).
  absl::Status AdvanceLocked(const std::string& id, WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a host's end (target status, instance health, rollout) into `a` and `batch`.
  void FinishHostLocked(Active& a, const std::string& agent_id, bool succeeded,
                        const std::string& reason, WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the deployment and its rollout record (or drops the record and the in-memory entry once
  // nothing runs). On failure the store error is sticky.
  absl::Status PersistLocked(Active& a, WriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteLocked(const WriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendDeployHostLocked(Active& a, const std::string& agent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartRollbackLocked(const std::string& failed_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<kiln::v1::Deployment> LoadDeploymentLocked(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyEventLocked(const std::string& agent_id, const kiln::v1::DeployEventResult& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendLogLocked(const std::string& agent_id, const kiln::v1::DeployLog& log)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the callbacks collected by NotifyLocked. REQUIRES: mu_ not held.
  void FlushNotifications() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  absl::Mutex mu_;
  absl::Status store_error_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, kiln::v1::Application> apps_ ABSL_GUARDED_BY(mu_);
  // (application, name) -> group.
  std::map<std::pair<std::string, std::string>, kiln::v1::DeploymentGroup> groups_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, Active> active_ ABSL_GUARDED_BY(mu_);
  // Disconnected agents -> when their InProgress targets fail (Unix ms).
  std::map<std::string, int64_t> lease_deadlines_ ABSL_GUARDED_BY(mu_);
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;

  absl::Mutex watch_mu_;
  std::multimap<std::string, std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(watch_mu_);
  std::set<std::string> pending_notify_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_DEPLOYMENTS_DEPLOYMENT_CONTROLLER_H_
