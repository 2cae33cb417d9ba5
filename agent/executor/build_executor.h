// Runs one build's phases on the agent, CodeBuild buildspec style (reference/aws-semantics.md §1.4,
// §1.6-§1.8, §1.12, §1.14). Plain C++: the agent's client feeds it RunPhase orders and ships the
// output and PhaseResults.
//
// Per build: a workspace <work_dir>/builds/<build id with [^A-Za-z0-9._-] replaced by '_'>/ holding
// src/ (the checkout, CODEBUILD_SRC_DIR) and tmp/ (command files and shell state). Phases:
//   PROVISIONING      logs only (the workspace exists since Create()).
//   DOWNLOAD_SOURCE   clones job.source().location() into src/ (libgit2) at job.source_version()
//                     (empty: source.branch), sets resolved_source_version; reads and parses the
//                     buildspec (missing or invalid: FAILED, YAML_FILE_ERROR); resolves
//                     parameter-store names with ONE resolve_parameters call (missing: FAILED
//                     "Decrypted Variables Error"; resolver error: FAULT); builds the environment
//                     in §1.14 item 2 order: agent environment < env.variables <
//                     env.parameter-store < job variables < CODEBUILD_* (and a KILN_* twin of
//                     each).
//   INSTALL..POST_BUILD  the phase's commands, then its finally commands (§1.6), honouring
//   on-failure
//                     (see on_failure.h; ABORT sets PhaseResult.skip_to_finalizing). Buildspec 0.2
//                     runs every command in one persistent shell (shell_session.h): cd, export and
//                     plain assignments carry across commands and phases, shell options do not; a
//                     shell that dies (`exit 3`) fails its command and is replaced by one restored
//                     from the last saved exported environment and cwd. 0.1 runs each command in a
//                     fresh shell from the initial environment in CODEBUILD_SRC_DIR.
//                     At the end of POST_BUILD the env.exported-variables are frozen (§1.4):
//                     read from the shell (exported or plain; unset ones omitted) into
//                     PhaseResult.exported_variables. INSTALL first restores the buildspec cache
//                     (Options::cache, keys evaluated by the shell).
//   UPLOAD_ARTIFACTS  parses `reports` (JUnit XML) into PhaseResult.reports, then zips each
//                     artifact set selected from CODEBUILD_SRC_DIR (artifact_files.h; no match:
//                     FAILED, CLIENT_ERROR) and uploads it with Options::upload_artifact (failure:
//                     FAILED with the reason) into PhaseResult.artifacts.
//   FINALIZING        freezes exported variables if POST_BUILD never ran, saves the cache after a
//                     successful build (PhaseResult.cache_saved), stops the shell and removes a
//                     build container; SUCCEEDED. Runs even after Stop() or a timeout.
// run-as (build or phase level): the phase's shell runs as that user (setpriv; docker exec -u in a
// build container), which is given the workspace. environment.image: the shells run in a container
// of the image (container.h) with the workspace bind-mounted at the same path.
// The shell is bash (--noprofile --norc) unless env.shell is /bin/sh.
//
// Output: every byte (command output and Kiln's own "[Container] YYYY/MM/DD HH:MM:SS.ffffff <text>"
// lines, UTC) goes through an OutputMasker that hides parameter values marked `mask`, then to
// Options::output in order, in chunks of at most 64 KiB, as it arrives. Command output is passed on
// byte for byte; a Kiln line that follows output without a trailing newline starts on a new line.
//
// Timeout: job.timeout_millis() (0 = none) from Create(), measured with Options::clock; when it
// passes the build's processes are killed and the running (and any later) phase returns TIMED_OUT
// with context {BUILD_TIMED_OUT, "Build has timed out. "}.
//
// Thread-safety: RunPhase is called by one thread at a time; Stop() from any thread at any time.
#ifndef KILN_AGENT_EXECUTOR_BUILD_EXECUTOR_H_
#define KILN_AGENT_EXECUTOR_BUILD_EXECUTOR_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/artifacts/local_cache.h"
#include "agent/executor/output_masker.h"
#include "agent/executor/shell_session.h"
#include "common/buildspec.h"
#include "common/clock.h"
#include "kiln/v1/agent.pb.h"

namespace kiln::agent {

// Receives masked build output, in order.
using OutputFn = std::function<void(std::string_view bytes)>;
// Resolves parameter-store names (the agent calls AgentService.GetBuildParameters). Called at most
// once per build, in DOWNLOAD_SOURCE, with every distinct name. A non-OK status makes the phase
// FAULT.
using ParameterResolver = std::function<absl::StatusOr<kiln::v1::GetBuildParametersResponse>(
    const std::vector<std::string>& names)>;

class BuildExecutor {
 public:
  struct Options {
    // Directory for workspaces; created if absent.
    std::string work_dir;
    // Needed only when the build uses parameter-store variables.
    ParameterResolver resolve_parameters;
    // May be empty (output dropped). Called on the RunPhase thread only.
    OutputFn output;
    // Log timestamps and the build timeout. Not owned; must outlive the executor.
    const common::Clock* clock = common::RealClock::Default();
    // Uploads one artifact zip to the coordinator (AgentService.UploadArtifact). Needed only when
    // the buildspec has artifacts; a missing uploader or an error fails UPLOAD_ARTIFACTS.
    std::function<absl::StatusOr<kiln::v1::BuildArtifact>(kiln::v1::UploadArtifactHeader header,
                                                          const std::string& zip_path)>
        upload_artifact;
    // The agent's buildspec cache (§1.11). Null: `cache` sections are ignored with a warning. Not
    // owned; shared by the agent's builds; must outlive the executor.
    LocalCache* cache = nullptr;
  };

  // Creates the workspace (replacing a leftover one of the same build) and starts the timeout.
  // Errors: InvalidArgument (empty build id, id of dots only, empty source location, negative
  // timeout, empty work_dir, null clock), Internal (workspace cannot be created).
  static absl::StatusOr<std::unique_ptr<BuildExecutor>> Create(const kiln::v1::BuildJob& job,
                                                               Options options);
  // Kills anything left and deletes the workspace. REQUIRES: no RunPhase is running.
  ~BuildExecutor();
  BuildExecutor(const BuildExecutor&) = delete;
  BuildExecutor& operator=(const BuildExecutor&) = delete;

  // Runs `phase` to completion (blocking) and returns its result: SUCCEEDED, FAILED, FAULT (Kiln's
  // own failure, or a phase that is unsupported or asked for out of order), TIMED_OUT or STOPPED.
  // `build_succeeding` is CODEBUILD_BUILD_SUCCEEDING ("1"/"0") for the phase's commands.
  // Never crashes on user input.
  kiln::v1::PhaseResult RunPhase(kiln::v1::BuildPhaseType::Value phase, bool build_succeeding);

  // Kills the build's whole process tree. A running RunPhase returns promptly with `status`
  // (STOPPED, TIMED_OUT or FAULT; anything else counts as FAULT) and a context {BUILD_STOPPED |
  // BUILD_TIMED_OUT | AGENT_ERROR, `reason`}; later phases except FINALIZING return the same. The
  // first call wins. Thread-safe; does not call Options::output.
  void Stop(kiln::v1::BuildStatus::Value status, std::string reason);

  // The workspace root and CODEBUILD_SRC_DIR (absolute paths).
  const std::string& workspace_dir() const { return root_; }
  const std::string& source_dir() const { return src_dir_; }

 private:
  struct Outcome;
  struct CommandRun;

  BuildExecutor(const kiln::v1::BuildJob& job, Options options, std::string root, int wake_fd);

  Outcome DownloadSource(kiln::v1::PhaseResult* result);
  Outcome BuildEnvironment(const common::Buildspec& spec, const std::string& requested,
                           const std::string& commit);
  Outcome RunCommandPhase(kiln::v1::BuildPhaseType::Value phase, bool build_succeeding);
  Outcome Finalize(kiln::v1::PhaseResult* result, bool build_succeeding);
  Outcome UploadArtifacts(kiln::v1::PhaseResult* result);
  // Evaluates `text` with the build's shell as the inside of a double-quoted string ($VAR and
  // $(command) expand). Empty on failure.
  std::string Evaluate(const std::string& text, const std::string& what);
  void RestoreCache();
  void CollectReports(kiln::v1::PhaseResult* result);
  // Reads env.exported-variables from the shell into result->exported_variables (once per build).
  void CaptureExportedVariables(kiln::v1::PhaseResult* result);
  Outcome StopOutcome();
  // Runs one command (0.2: in the persistent shell; 0.1: in a fresh one). `internal` commands are
  // Kiln's own (not logged).
  CommandRun RunCommand(const std::string& command, bool internal);
  // Returns the running shell or starts one; nullptr when stopped (`*error` stays OK) or on error.
  ShellSession* EnsureShell(absl::Status* error);
  void DiscardShell();
  // Host builds: gives the workspace to `user` (run-as) so its shell can use it. Container builds:
  // starts the build container on first use.
  absl::Status PrepareShellUser(const std::string& user);
  void RemoveBuildContainer();
  // Records a stop (first wins), kills the shell and wakes a running command.
  void StopLocked(kiln::v1::BuildStatus::Value status, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CheckStopped();  // also turns a passed deadline into TIMED_OUT

  void Log(std::string_view text);
  void EmitMasked(std::string_view bytes);  // command output
  void FlushMasker();
  void Emit(std::string_view bytes);  // already masked

  const kiln::v1::BuildJob job_;
  const Options options_;
  const std::string root_, src_dir_, tmp_dir_, nonce_;
  const absl::Time deadline_;
  const int wake_fd_;  // eventfd, readable once stopped

  OutputMasker masker_;
  bool at_line_start_ = true;
  std::optional<common::Buildspec> spec_;
  std::optional<common::BuildspecCache> cache_spec_;  // keys evaluated before INSTALL
  bool exported_captured_ = false;
  std::string credentials_;  // source.credentials_parameter's value, "user:password"
  std::vector<std::string> initial_env_;  // NAME=value
  std::string shell_path_;
  // environment.image builds: the container's name ("" for host builds) and whether it runs.
  std::string container_;
  bool container_started_ = false;
  // run-as of the running phase ("" = the agent's user), and the user the workspace belongs to.
  std::string phase_user_;
  std::string workspace_user_;
  bool succeeding_ = true;
  int command_count_ = 0;

  absl::Mutex mu_;
  kiln::v1::BuildStatus::Value stop_status_ ABSL_GUARDED_BY(mu_) = kiln::v1::BuildStatus::UNKNOWN;
  std::string stop_reason_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ShellSession> shell_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_BUILD_EXECUTOR_H_
