// DeploymentEngine: one host's side of a CodeDeploy-style in-place deployment
// (reference/aws-semantics.md §4.5-§4.8). It runs lifecycle events one at a time, as the
// coordinator orders them, against a deployment root on local disk:
//
//   <root>/<DGID>/<DID>/bundle.tar             symlink to a revision file (zip, tar, tgz)
//   <root>/<DGID>/<DID>/deployment-archive/    the unpacked revision, appspec at its root
//   <root>/<DGID>/<DID>/logs/scripts.log       hook output, "<YYYY-MM-DD HH:MM:SS> [stdout]..."
//   <root>/deployment-instructions/<DGID>_last_successful_install   path of <root>/<DGID>/<DID>
//   <root>/deployment-instructions/<DGID>_most_recent_install       path, written by DownloadBundle
//   <root>/deployment-instructions/<DGID>-install.json               instructions.h
//   <root>/deployment-instructions/<DGID>-cleanup                    paths the last Install created
//   <root>/ongoing-deployment/<DID>            {"event","deployment_group_id"} of the event running
//
// Events (§4.5): ApplicationStop → DownloadBundle → BeforeInstall → Install → AfterInstall →
// ApplicationStart → ValidateService.
//  * DownloadBundle: removes old deployment dirs of the group beyond `max_revisions` (oldest by
//    mtime, never the last successful one), then takes the revision: a local file is linked as
//    bundle.tar and unpacked with libarchive (any format it reads: zip, tar, tgz, ...; permissions
//    and times kept, owners not, unsafe paths refused); a local directory is copied. A single
//    top-level directory holding an appspec* file is unwrapped (§4.8 step 4, archives only, as the
//    agent). Fails when no appspec is found. Writes `_most_recent_install`.
//  * Install: removes what the previous install created (`-cleanup`), generates and writes the
//    instructions, runs them, then writes `_last_successful_install`. Faithful agent quirk (§4.6):
//    "last successful" is written here, at the end of Install, not when the deployment succeeds,
//    so a revision whose AfterInstall/ValidateService failed still provides the next
//    deployment's ApplicationStop scripts.
//  * ApplicationStop, BeforeBlockTraffic, AfterBlockTraffic run the LAST SUCCESSFUL revision's
//    hooks (read from `_last_successful_install`, appspec looked up by this deployment's appspec
//    name), unless this deployment's archive already exists; with no last successful revision
//    they are no-ops that succeed. Every other event name runs this revision's hooks.
//    BlockTraffic/AllowTraffic (no load balancer) succeed without doing anything.
//  * Hooks (§4.7): each script runs directly (so it needs a shebang; a script that is not
//    executable is chmod +x'ed with a warning), through `su <runas> -c <path>` with runas,
//    `sudo` with sudo: true; in its own process group; stdin /dev/null; no other inherited file
//    descriptors; cwd inherited from this process (agent parity); env = this process's env + LIFECYCLE_EVENT, DEPLOYMENT_ID,
//    APPLICATION_NAME, DEPLOYMENT_GROUP_NAME, DEPLOYMENT_GROUP_ID. Output lines go to scripts.log
//    and to the OutputCallback. One deadline (now + timeout) covers the process and its output:
//    still running → SIGTERM to the group, SIGKILL after `kill_grace`, code 3; exited with
//    stdout/stderr held open by a background child → code 6 (the child is left running); exit
//    code n ≠ 0 → code 4 (a signal s is reported as exit code 128+s).
//  * Each RunEvent first creates <root>/<DGID>/<DID> (as the agent does for every command) and
//    records the event in ongoing-deployment/<DID> until it ends.
//
// Thread-safety: RunEvent/Run/RecoverAfterRestart must not overlap (one deployment at a time per
// root); Stop() may be called from any thread.
#ifndef KILN_DEPLOY_ENGINE_H_
#define KILN_DEPLOY_ENGINE_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln::deploy {

// ScriptError codes of the agent (§4.7), reported in EventResult::error_code.
enum ScriptErrorCode : int {
  kSucceededCode = 0,
  kScriptMissingCode = 1,
  kScriptExecutabilityCode = 2,
  kScriptTimedOutCode = 3,
  kScriptFailedCode = 4,
  kUnknownErrorCode = 5,  // also: any non-script failure (bad appspec, install conflict, ...)
  kOutputsLeftOpenCode = 6,
  kFailedAfterRestartCode = 7,
};

inline constexpr char kRestartFailureMessage[] =
    "Failed: Failing in-progress lifecycle event after an agent restart.";

// One deployment, as far as one host needs to know it.
struct Deployment {
  std::string deployment_id;        // path component: no '/', not "." or ".."
  std::string deployment_group_id;  // path component
  std::string deployment_group_name;
  std::string application_name;
  // The revision: a local archive file (zip, tar, tgz, ...) or a local directory.
  std::filesystem::path revision;
  // AppSpecFilename; empty = appspec.yml, else appspec.yaml.
  std::string appspec_filename;
  // The deployment's fileExistsBehavior (upper-cased here); used when the appspec has none;
  // empty = DISALLOW.
  std::string file_exists_behavior;
  // A failure in ApplicationStop/BeforeBlockTraffic/AfterBlockTraffic does not stop Run().
  bool ignore_application_stop_failures = false;
  // All possible lifecycle events; when non-empty, Install rejects appspec hooks for other names.
  std::vector<std::string> lifecycle_events;
};

enum class EventStatus { kSucceeded, kFailed, kSkipped };

struct EventResult {
  std::string event;
  EventStatus status = EventStatus::kSucceeded;
  int error_code = kSucceededCode;  // ScriptErrorCode
  std::string script_name;          // location of the failing script, if any
  std::string message;              // "" on success
  std::string log;                  // last ~2048 characters of script output
  int64_t duration_ms = 0;
  // Failed, but Run() went on (ignore_application_stop_failures).
  bool failure_ignored = false;
};

// Diagnostics JSON as the agent sends it: {"error_code","script_name","message","log"}.
std::string DiagnosticsJson(const EventResult& result);

// An event found in progress by RecoverAfterRestart().
struct RecoveredEvent {
  std::string deployment_id;
  std::string deployment_group_id;
  EventResult result;  // Failed, code 7, kRestartFailureMessage
};

// Receives each hook output line ("[stdout]text", "[stderr]text") and the "LifecycleEvent - X" /
// "Script - loc" headers, without timestamp, on the thread running the event.
using OutputCallback = std::function<void(const std::string& event, const std::string& line)>;

struct EngineOptions {
  // Deployment dirs kept per group (agent :max_revisions); must be >= 1.
  int max_revisions = 5;
  // Time between SIGTERM and SIGKILL of a timed-out or stopped hook's process group.
  absl::Duration kill_grace = absl::Seconds(10);
  // The only appspec `os` accepted.
  std::string platform_os = "linux";
};

class DeploymentEngine {
 public:
  // `root_dir` is created if missing and made absolute. Errors: INVALID_ARGUMENT for
  // max_revisions < 1; INTERNAL when the root cannot be created.
  static absl::StatusOr<std::unique_ptr<DeploymentEngine>> Create(std::filesystem::path root_dir,
                                                                  EngineOptions options = {});

  DeploymentEngine(const DeploymentEngine&) = delete;
  DeploymentEngine& operator=(const DeploymentEngine&) = delete;
  ~DeploymentEngine();

  // Runs one lifecycle event of `d`; never Skipped. `output` may be empty.
  EventResult RunEvent(const Deployment& d, std::string_view event,
                       const OutputCallback& output = nullptr);

  // Runs DefaultLifecycleEvents() in order; after a failed event (not ignored) or Stop(), the
  // remaining events are Skipped. Returns one result per event.
  std::vector<EventResult> Run(const Deployment& d, const OutputCallback& output = nullptr);

  // Call at startup: every ongoing-deployment/<DID> file younger than 24 h is reported as a
  // Failed event (code 7, kRestartFailureMessage) and removed; older ones are removed silently.
  // The events are never re-run.
  std::vector<RecoveredEvent> RecoverAfterRestart();

  // Stops the hook running now: SIGTERM to its process group, SIGKILL after kill_grace. That
  // event fails (code 5) and Run() skips the rest. No effect when nothing runs; later calls to
  // RunEvent/Run are not affected.
  void Stop();

  const std::filesystem::path& root_dir() const { return root_; }

 private:
  DeploymentEngine(std::filesystem::path root, EngineOptions options);
  struct Hook;
  EventResult RunOneEvent(const Deployment& d, const std::string& event,
                             const OutputCallback& output);
  absl::Status DownloadBundle(const Deployment& d);
  absl::Status CleanupOldArchives(const Deployment& d);
  absl::Status Install(const Deployment& d);
  std::filesystem::path DeploymentDir(const Deployment& d) const;
  std::filesystem::path InstructionsDir() const;
  void RunHooks(const Deployment& d, const std::string& event, const OutputCallback& output,
                EventResult& result);
  void RunScript(const Hook& hook, EventResult& result);
  bool StopRequested();

  std::filesystem::path root_;
  EngineOptions options_;
  absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  int wake_pipe_[2] = {-1, -1};  // Stop() writes a byte to wake the wait loop
};

}  // namespace kiln::deploy

#endif  // KILN_DEPLOY_ENGINE_H_
