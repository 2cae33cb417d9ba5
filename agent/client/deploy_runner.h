// DeployRunner: the agent's side of a deployment (agent.proto "deployments";
// reference/aws-semantics.md §4.5-§4.8). Given a DeployHost it runs the host's lifecycle events
// (ApplicationStop → DownloadBundle → BeforeInstall → Install → AfterInstall → ApplicationStart →
// ValidateService) one at a time with deploy::DeploymentEngine on its own worker thread, and
// reports through an injected sink:
//  * hook output (the engine's lines, "[stdout]..." / "[stderr]...", and a few of the agent's own
//    lines) as DeployLog messages, in order, batched into chunks of at most 64 KiB and flushed
//    within `log_flush_interval`, always before the result of the event that produced them;
//  * one DeployEventResult per event (Succeeded, Failed or Skipped), the last with host_done.
//    After a failed event the rest are Skipped; a failure of ApplicationStop / BeforeBlockTraffic
//    / AfterBlockTraffic under ignore_application_stop_failures is reported Succeeded with the
//    ignored error in `message` (§4.5; as the CodeDeploy agent, the event does not fail).
// Revisions, fetched at the start of DownloadBundle into <root>/<DGID>/<DID>/ (so they go with
// the deployment dir when the engine removes old revisions):
//  * build_artifact: streamed by `download` into revision.zip (bundle.tar links to it);
//  * git: cloned with CloneAndCheckout(git_location, commit) into revision-git/, .git removed,
//    handed to the engine as a directory (copied to deployment-archive), then deleted.
//    A fetch failure fails DownloadBundle (code 5) with the reason.
// Deployments run one at a time (one engine per root); a DeployHost arriving while another runs
// is queued. StopDeployment kills the running hook (engine Stop(): that event Failed, code 5) or
// aborts the revision fetch; the remaining events are Skipped. A queued deployment that is
// stopped is reported all Skipped at once.
// Delivery: the sink may drop messages (no stream). Results are kept (those of the deployment
// running now and of the last `retained_deployments` finished ones) and ResendableResults()
// returns them for resending after each reconnect; the coordinator applies them idempotently by
// (deployment_id, event). Logs are not kept. A DeployHost for a deployment this runner already
// finished is not run again: its results are sent again.
// Restart (§4.7): Create() runs the engine's RecoverAfterRestart(); every event an earlier agent
// process left in progress becomes a retained DeployEventResult Failed, error_code 7, the
// engine's message, host_done, which goes out with ResendableResults() at the first connect.
//
// Thread-safety: all public methods are thread-safe. The sink is called without any lock of this
// class held except an internal send lock (so messages stay in order); it must not call back into
// this runner.
#ifndef KILN_AGENT_CLIENT_DEPLOY_RUNNER_H_
#define KILN_AGENT_CLIENT_DEPLOY_RUNNER_H_

#include <cstddef>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "deploy/engine.h"
#include "kiln/v1/agent.pb.h"

namespace kiln::agent {

// Largest DeployLog.data the runner sends, bytes.
inline constexpr size_t kMaxDeployLogChunkBytes = 64 * 1024;

class DeployRunner {
 public:
  // Streams the revision zip of `deployment_id` (AgentService.DownloadRevision) into the file
  // `dest_path` (created or truncated), without holding it in memory. `cancelled` is polled
  // between received chunks; when it returns true the download stops with CANCELLED.
  // Errors: UNAVAILABLE (no coordinator; retried by the runner), the RPC's status otherwise,
  // INTERNAL writing the file.
  using DownloadFn =
      std::function<absl::Status(const std::string& deployment_id, const std::string& dest_path,
                                 const std::function<bool()>& cancelled)>;
  // Delivers one AgentMessage (deploy_event_result or deploy_log) to the coordinator, or drops it
  // when no stream is open. Must not block for long.
  using SendFn = std::function<void(kiln::v1::AgentMessage)>;

  struct Options {
    // The engine's deployment root (created if missing). Required.
    std::filesystem::path root_dir;
    deploy::EngineOptions engine;
    // Required for build_artifact revisions (without it their DownloadBundle fails).
    DownloadFn download;
    // Required.
    SendFn send;
    // Start/end times of events. Not owned; must outlive the runner.
    const common::Clock* clock = common::RealClock::Default();
    // Finished deployments whose results are kept for resending (the running one always is).
    int retained_deployments = 8;
    // Longest time a DeployLog line waits for more output before it is sent.
    absl::Duration log_flush_interval = absl::Milliseconds(200);
    // An UNAVAILABLE download is tried this many times in all, waiting download_backoff, then
    // twice that, ... between attempts (a stop ends the wait).
    int download_attempts = 3;
    absl::Duration download_backoff = absl::Seconds(1);
  };

  // Creates the engine on `root_dir` and recovers interrupted events (see above). The worker and
  // log-flush threads start with the first Deploy(). Errors: INVALID_ARGUMENT (no root_dir or send;
  // bad engine options), INTERNAL (the root cannot be created).
  static absl::StatusOr<std::unique_ptr<DeployRunner>> Create(Options options);
  DeployRunner(const DeployRunner&) = delete;
  DeployRunner& operator=(const DeployRunner&) = delete;
  ~DeployRunner();  // Shutdown()

  // Queues `host` to run after the deployments ahead of it. A DeployHost for a deployment that is
  // queued or running is ignored; for one already finished here (or recovered after a restart)
  // its kept results are sent again. Ignored after Shutdown().
  void Deploy(const kiln::v1::DeployHost& host);

  // Stops `deployment_id` (see above). Unknown or finished deployments: no effect.
  void Stop(const std::string& deployment_id);

  // Every kept DeployEventResult (as AgentMessages), oldest deployment first and in event order
  // within one; for the caller to send after a (re)connect.
  std::vector<kiln::v1::AgentMessage> ResendableResults() const;

  // Stops the running and queued deployments (their results are still sent), then joins the
  // threads. Blocks up to the engine's kill_grace. Idempotent.
  void Shutdown();

  const std::filesystem::path& root_dir() const { return engine_->root_dir(); }

 private:
  enum class State { kQueued, kRunning, kDone };
  struct Record {
    kiln::v1::DeployHost host;
    State state = State::kQueued;
    bool stop = false;
    std::vector<kiln::v1::AgentMessage> results;
  };

  DeployRunner(Options options, std::unique_ptr<deploy::DeploymentEngine> engine);
  void WorkerLoop();
  void FlushLoop();
  void RunDeployment(const kiln::v1::DeployHost& host);
  absl::StatusOr<std::filesystem::path> FetchRevision(const kiln::v1::DeployHost& host,
                                                      const std::filesystem::path& dir);
  absl::Status Download(const std::string& deployment_id, const std::filesystem::path& dest);
  // Reports every event of a deployment that never ran as Skipped.
  void ReportAllSkipped(const std::string& deployment_id);
  bool StopRequested(const std::string& deployment_id) const;
  void Log(const std::string& deployment_id, const std::string& line);
  void FlushLogs();
  void FlushLogsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(send_mu_);
  // Keeps `event` in the deployment's record, then sends the pending logs and the result.
  void Emit(const std::string& deployment_id, kiln::v1::LifecycleEvent event, bool host_done);
  void MarkDoneLocked(const std::string& deployment_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options opts_;
  const std::unique_ptr<deploy::DeploymentEngine> engine_;

  // Serialises calls to opts_.send so logs and results keep their order. Taken before mu_.
  absl::Mutex send_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);  // deployment ids waiting to run
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // ids in records_, oldest first
  std::string log_deployment_ ABSL_GUARDED_BY(mu_);
  std::string log_buf_ ABSL_GUARDED_BY(mu_);
  // Started under mu_ by the first Deploy() (never after shutdown_), joined by Shutdown().
  std::thread worker_;
  std::thread flusher_;
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_CLIENT_DEPLOY_RUNNER_H_
