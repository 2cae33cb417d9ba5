// The build controller: the coordinator's state machine for projects, builds and agents.
//
// It owns the CodeBuild build lifecycle (reference/aws-semantics.md §1.8): it persists every transition
// to the Store as one atomic batch *before* acting on it (sending a phase to an agent, answering a
// client), asks the Scheduler where queued builds run, and dispatches one phase at a time to the agent
// that holds a build. The gRPC and HTTP layers are thin adapters that call it.
//
// Durable layout: the key space in coordinator/store/store.h (active/ marks builds not yet
// COMPLETED; build-by-time/ and build-by-project/ index them for ListBuilds).
// On Create() the controller rebuilds its in-memory state from the store alone: projects, queued builds
// (back into the scheduler in queue order), running builds (re-attached when their agent reconnects
// with an AgentHello listing them; FAULT when the agent comes back without them or stays away past the
// lease).
//
// Thread-safety: every public method is thread-safe. Methods never block on the network: messages to
// agents go through AgentConnection::Send, which only queues. Watch callbacks run outside the
// controller's lock and must not block.
#ifndef KILN_COORDINATOR_BUILDS_BUILD_CONTROLLER_H_
#define KILN_COORDINATOR_BUILDS_BUILD_CONTROLLER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/artifacts/artifact_store.h"
#include "coordinator/logs/log_store.h"
#include "coordinator/params/parameter_store.h"
#include "coordinator/scheduler/scheduler.h"
#include "coordinator/store/store.h"
#include "kiln/v1/agent.pb.h"
#include "kiln/v1/build.pb.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::coordinator {

// One agent's open stream, implemented by the gRPC layer.
class AgentConnection {
 public:
  virtual ~AgentConnection() = default;
  // Queues `msg` for the agent. Never blocks; silently dropped once the stream is closing.
  virtual void Send(const kiln::v1::CoordinatorMessage& msg) = 0;
};

// A live subscription to one build's changes (log bytes, phase/status). Destroying it unsubscribes;
// after the destructor returns the callback is never called again.
class BuildWatch {
 public:
  virtual ~BuildWatch() = default;
};

// Another coordinator component that talks to agents over their Connect streams (deployments).
// Callbacks run on gRPC threads, never under the controller's lock; they must not block.
class AgentExtension {
 public:
  virtual ~AgentExtension() = default;
  // After the agent's hello was accepted (also after a reconnect).
  virtual void OnAgentConnected(const kiln::v1::AgentHello& hello) = 0;
  virtual void OnAgentDisconnected(const std::string& agent_id) = 0;
  // Messages the build controller does not handle (deploy_event_result, deploy_log).
  virtual void OnAgentMessage(const std::string& agent_id, const kiln::v1::AgentMessage& message) = 0;
};

class BuildController {
 public:
  struct Options {
    Store* store = nullptr;              // not owned; must outlive the controller
    LogStore* logs = nullptr;            // not owned
    ParameterStore* params = nullptr;    // not owned
    // Where UploadArtifact puts blobs; results naming a blob it lacks are refused. Not owned; may be
    // null (then artifact results are refused).
    ArtifactStore* artifacts = nullptr;
    // Length of one "minute" of timeout_in_minutes / queued_timeout_in_minutes, in milliseconds.
    // 60000 except in tests (the e2e suites shorten it to exercise timeouts).
    int64_t minute_millis = 60000;
    const common::Clock* clock = common::RealClock::Default();
    // Agents send a heartbeat this often (milliseconds).
    int64_t heartbeat_interval_millis = 2000;
    // A build's lease lasts this long after its agent's last message (milliseconds).
    int64_t lease_millis = 10000;
  };

  // Loads durable state from `options.store`. Errors: the store's errors (a corrupt record → DataLoss).
  static absl::StatusOr<std::unique_ptr<BuildController>> Create(const Options& options);
  BuildController(const BuildController&) = delete;
  BuildController& operator=(const BuildController&) = delete;
  ~BuildController();

  // ---- projects (KilnService) ----
  // Creates or replaces. InvalidArgument (common::ValidateProject), store errors.
  absl::StatusOr<kiln::v1::Project> PutProject(kiln::v1::Project project);
  absl::StatusOr<std::vector<kiln::v1::Project>> ListProjects();
  // NotFound.
  absl::StatusOr<kiln::v1::Project> GetProject(const std::string& name);

  // ---- builds ----
  // Submits a build (SUBMITTED → QUEUED) and schedules. NotFound (project), InvalidArgument (bad
  // override), ResourceExhausted (on_limit REJECT and the project is at its limit), store errors.
  absl::StatusOr<kiln::v1::Build> StartBuild(const kiln::v1::StartBuildRequest& request,
                                             const kiln::v1::WebhookTrigger* trigger = nullptr);
  // NotFound.
  absl::StatusOr<kiln::v1::Build> GetBuild(const std::string& id);
  // Newest first; `project` empty = all projects. `limit` 1..1000.
  absl::StatusOr<std::vector<kiln::v1::Build>> ListBuilds(const std::string& project, int limit);
  // A queued build ends STOPPED at once; a running one is killed on its agent and ends STOPPED after
  // FINALIZING. No-op on a completed build. NotFound.
  absl::StatusOr<kiln::v1::Build> StopBuild(const std::string& id);
  // Calls `on_change` (from any thread, outside the controller's lock) after each change to the build:
  // log bytes appended, phase or status changed. NotFound if the build does not exist.
  absl::StatusOr<std::unique_ptr<BuildWatch>> Watch(const std::string& build_id,
                                                    std::function<void()> on_change);
  // Up to `max_bytes` of the build's log from `offset`. NotFound.
  absl::StatusOr<std::string> ReadLog(const std::string& build_id, int64_t offset, int64_t max_bytes);

  // ---- parameters ----
  absl::StatusOr<int64_t> PutParameter(const kiln::v1::PutParameterRequest& request);
  absl::StatusOr<std::vector<kiln::v1::Parameter>> ListParameters();
  // The decrypted value of a parameter, for coordinator-internal use (webhook secrets). NotFound.
  absl::StatusOr<std::string> GetParameterValue(const std::string& name);

  // ---- agents (AgentService) ----
  // The agent's first message. Sends Welcome on `conn`, re-attaches or fails the builds the agent held,
  // and starts dispatching to it. FailedPrecondition (protocol version), InvalidArgument (bad hello).
  // `conn` must stay valid until AgentDisconnected(agent_id, conn) returns.
  absl::Status AgentConnected(const kiln::v1::AgentHello& hello, AgentConnection* conn);
  // Any later message from the agent. Duplicates are applied once (see agent.proto). Bad messages
  // are logged and ignored. Returns false when the stream should be ended so the agent reconnects
  // and resends (a log chunk could not be stored, so later ones would leave a gap).
  bool HandleAgentMessage(const std::string& agent_id, const kiln::v1::AgentMessage& message);
  // The stream ended. The agent's builds keep their lease; they fail when it expires unless the agent
  // reconnects first. A stale `conn` (the agent already reconnected) is ignored.
  void AgentDisconnected(const std::string& agent_id, AgentConnection* conn);
  // PermissionDenied if the build is not held by `agent_id`; NotFound if unknown.
  absl::StatusOr<kiln::v1::GetBuildParametersResponse> GetBuildParameters(
      const kiln::v1::GetBuildParametersRequest& request);
  std::vector<kiln::v1::AgentInfo> ListAgents();
  // Registers `extension` (not owned; must outlive the controller). Call before serving.
  void AddAgentExtension(AgentExtension* extension);
  // Queues `message` on the agent's stream. False if the agent is not connected.
  bool SendToAgent(const std::string& agent_id, const kiln::v1::CoordinatorMessage& message);
  // OK if `build_id` is running on `agent_id` (the check behind GetBuildParameters and
  // UploadArtifact). PermissionDenied if another agent holds it; NotFound if it is not running.
  absl::Status CheckBuildHeldBy(const std::string& agent_id, const std::string& build_id);

  // ---- artifacts ----
  // The artifact of a build whose identifier or name is `name` ("" = the primary artifact).
  // NotFound (no such build, or no such artifact: the message lists the build's artifacts).
  absl::StatusOr<kiln::v1::BuildArtifact> FindArtifact(const std::string& build_id,
                                                       const std::string& name);

  // ---- time ----
  // Expires leases, queued timeouts and overdue builds. Called periodically (about every 250 ms) by the
  // coordinator's ticker thread; tests call it with a fake clock.
  void Tick();

  // Prometheus text exposition of the controller's gauges and counters.
  std::string MetricsText();
  // False once a store write failed (the coordinator must be restarted).
  bool Healthy();

 private:
  struct ActiveBuild {
    kiln::v1::Build build;
    int64_t lease_deadline_millis = 0;   // running builds only
    int64_t queued_at_millis = 0;
  };
  struct AgentState {
    kiln::v1::AgentInfo info;
    AgentConnection* conn = nullptr;
    std::set<std::string> builds;  // held build ids
    bool resync_requested = false;  // a log chunk could not be stored: the stream must restart
  };
  struct Watcher;
  class WatchImpl;

  explicit BuildController(const Options& options);
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Runs the scheduler and dispatches PROVISIONING for every assignment (one store batch).
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Persists `build` (and extra ops in `batch`). On failure the store error is sticky.
  absl::Status PersistLocked(const kiln::v1::Build& build, WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyPhaseResultLocked(const std::string& agent_id, const kiln::v1::PhaseResult& result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current phase with `status`/context and moves to `next` (sending RunPhase) or completes.
  void AdvanceLocked(ActiveBuild& ab, kiln::v1::BuildPhaseType::Value next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the current phase `status` with a context and completes the build without FINALIZING on an
  // agent (agent lost, coordinator-side timeout, stop of a queued build).
  void FailWithoutAgentLocked(ActiveBuild& ab, kiln::v1::BuildStatus::Value status,
                              const std::string& code, const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteLocked(ActiveBuild& ab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequeueLocked(ActiveBuild& ab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(const std::string& agent_id, const kiln::v1::CoordinatorMessage& msg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendRunPhaseLocked(const ActiveBuild& ab) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  kiln::v1::BuildJob JobFor(const kiln::v1::Build& build) const;
  void NotifyLocked(const std::string& build_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the callbacks collected by NotifyLocked. REQUIRES: mu_ not held.
  void FlushNotifications() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<kiln::v1::Build> LoadBuildLocked(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  std::vector<AgentExtension*> extensions_;  // set before serving, then read-only
  absl::Mutex mu_;
  absl::Status store_error_ ABSL_GUARDED_BY(mu_);
  Scheduler scheduler_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, kiln::v1::Project> projects_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ActiveBuild> active_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, AgentState> agents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> build_numbers_ ABSL_GUARDED_BY(mu_);
  int64_t next_queue_seq_ ABSL_GUARDED_BY(mu_) = 1;

  // Watchers: build id -> subscribers. Guarded by watch_mu_ (never held while calling callbacks).
  absl::Mutex watch_mu_;
  std::multimap<std::string, std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(watch_mu_);
  std::set<std::string> pending_notify_ ABSL_GUARDED_BY(watch_mu_);

  // Counters for /metrics.
  int64_t builds_submitted_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> builds_completed_ ABSL_GUARDED_BY(mu_);
  int64_t log_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_BUILDS_BUILD_CONTROLLER_H_
