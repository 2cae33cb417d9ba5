// The agent's side of the coordinator protocol (proto/kiln/v1/agent.proto): dials out (works behind
// NAT), holds one Connect stream, reconnects with exponential backoff, runs the phases it is sent on
// per-build worker threads, streams their output as numbered log chunks, and after a reconnect
// resends what the coordinator may not have stored (unacknowledged chunks, then the last phase
// result of each build, then the kept deployment results). DeployHost / StopDeployment go to a
// DeployRunner (deploy_runner.h) whose DeployEventResult / DeployLog messages share the outbound
// queue.
//
// Threads: the connection thread (dial, read loop), one writer thread per stream (outbound queue +
// heartbeats), one worker thread per build, the DeployRunner's threads. Public methods are
// thread-safe.
#ifndef KILN_AGENT_CLIENT_AGENT_CLIENT_H_
#define KILN_AGENT_CLIENT_AGENT_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/artifacts/local_cache.h"
#include "kiln/v1/agent.pb.h"

namespace kiln::agent {

// Runs the phases of one build. Implemented over BuildExecutor for real builds; benchmarks inject
// trivial ones.
class BuildRunner {
 public:
  virtual ~BuildRunner() = default;
  // Blocking; called on the build's worker thread, one phase at a time.
  virtual kiln::v1::PhaseResult RunPhase(kiln::v1::BuildPhaseType::Value phase, bool build_succeeding) = 0;
  // Thread-safe; makes a running RunPhase return promptly with `status`.
  virtual void Stop(kiln::v1::BuildStatus::Value status, std::string reason) = 0;
};

struct RunnerContext {
  // Build output (already masked), in order. Thread-safe.
  std::function<void(std::string_view)> output;
  // Resolves parameter-store names through the coordinator (GetBuildParameters).
  std::function<absl::StatusOr<kiln::v1::GetBuildParametersResponse>(const std::vector<std::string>&)>
      resolve_parameters;
  // Streams the file at `zip_path` to the coordinator's artifact store (AgentService.UploadArtifact)
  // with `header` (agent_id and build_id are filled in). Returns the stored artifact record.
  // Errors: the RPC's status (Unavailable when not connected), NotFound/Internal reading the file.
  std::function<absl::StatusOr<kiln::v1::BuildArtifact>(kiln::v1::UploadArtifactHeader header,
                                                        const std::string& zip_path)>
      upload_artifact;
};

using RunnerFactory = std::function<absl::StatusOr<std::unique_ptr<BuildRunner>>(
    const kiln::v1::BuildJob& job, RunnerContext context)>;

// The real runner factory: BuildExecutor with workspaces under `work_dir` and the buildspec cache
// in `cache` (null: no cache).
RunnerFactory ExecutorRunnerFactory(const std::string& work_dir,
                                    std::shared_ptr<LocalCache> cache = nullptr);

class AgentClient {
 public:
  struct Options {
    // Coordinator addresses (host:port), tried in turn after each failed attempt.
    std::vector<std::string> coordinators = {"127.0.0.1:7070"};
    // Holds the agent id file and build workspaces.
    std::string work_dir;
    // Empty: read <work_dir>/agent-id, creating it as <hostname>-<8 hex> on first start.
    std::string agent_id;
    // Empty: gethostname().
    std::string hostname;
    // Added to the defaults os=linux, arch=<machine>, docker=true|false (docker socket present).
    std::map<std::string, std::string> labels;
    int slots = 1;
    absl::Duration min_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(5);
    // Empty: ExecutorRunnerFactory(work_dir).
    RunnerFactory runner_factory;
    // Projects whose cache this agent holds (AgentHello.warm_cache_projects), asked at each
    // (re)connect. Empty function: none.
    std::function<std::vector<std::string>()> warm_cache_projects;
    // Root of the deployment engine (DeployHost, reference §4.8). Empty: <work_dir>/deployment-root.
    std::string deployment_root;
  };

  // Errors: InvalidArgument (no coordinator, slots out of 1..1024, bad labels), Internal (work dir
  // or deployment root cannot be created).
  static absl::StatusOr<std::unique_ptr<AgentClient>> Create(Options options);
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;
  ~AgentClient();  // Stop()

  // Starts the connection thread. Call once.
  void Start();
  // Closes the stream and stops reconnecting; kills running builds (their leases then expire on the
  // coordinator, which ends them FAULT). Idempotent.
  void Stop();

  const std::string& agent_id() const;
  // True while a stream is established (Welcome received).
  bool connected() const;

 private:
  struct Impl;
  explicit AgentClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_CLIENT_AGENT_CLIENT_H_
