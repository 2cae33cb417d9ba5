// A real Kiln farm for the end-to-end suite: kiln-coordinator and kiln-agent run as child processes
// (tests/e2e/process.h) in the test's temp dir, the `kiln` CLI is run per command, and git
// repositories are made with the git CLI. Logs of every daemon go to <dir>/logs/*.log.
//
// Synchronisation is by bounded polling of observable state (/healthz, `kiln agent list`,
// `kiln build get --json`) or by following a build's log to its end; nothing waits a fixed time.
//
// Binaries: KILN_E2E_BIN_DIR (compile definition: the CMake build dir) if it holds them, else
// $KILN_BIN_DIR. Sources: KILN_E2E_SOURCE_DIR, else $KILN_SOURCE_DIR.
//
// Thread-safety: none; use a Farm from the test's main thread (children get PR_SET_PDEATHSIG tied to
// the spawning thread).
#ifndef KILN_TESTS_E2E_FARM_H_
#define KILN_TESTS_E2E_FARM_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/v1/build.pb.h"
#include "tests/e2e/process.h"

namespace kiln::e2e {

// Directory holding coordinator/kiln-coordinator, agent/kiln-agent and tools/cli/kiln.
std::string BinDir();
// The repository root (examples/, tools/dev/).
std::string SourceDir();

// Calls `done` until it returns true or `timeout` passes (re-checking every `interval`).
// Errors: DeadlineExceeded naming `what`.
absl::Status PollUntil(absl::Duration timeout, const std::string& what, const std::function<bool()>& done,
                       absl::Duration interval = absl::Milliseconds(50));

class Farm {
 public:
  struct Options {
    // Passed as --heartbeat-ms / --lease-ms (milliseconds).
    int64_t heartbeat_millis = 200;
    int64_t lease_millis = 2000;
    // Passed as --minute-ms: the length of a timeout "minute" (build and queued timeouts).
    int64_t minute_millis = 60000;
  };

  // `dir` is the test's own temp dir; the farm's files go below it.
  Farm(std::string dir, Options options);
  Farm(const Farm&) = delete;
  Farm& operator=(const Farm&) = delete;
  // SIGTERMs the agents then the coordinator still running (SIGKILL after 20 s each).
  ~Farm();

  // Starts kiln-coordinator on <dir>/coordinator and waits (30 s) until /healthz answers 200. The
  // first start picks free ports and retries with new ones if the coordinator could not listen; a
  // restart reuses the same ports (retrying a few times while they are still held). Errors:
  // FailedPrecondition (already running), Unavailable (exited; its log is in the message),
  // DeadlineExceeded.
  absl::Status StartCoordinator();
  // Sends `signal` to the coordinator and waits (30 s) for it to exit; returns its exit code.
  absl::StatusOr<int> StopCoordinator(int signal);
  Process* coordinator() { return coordinator_.get(); }

  // Starts kiln-agent with work dir <dir>/agent-<index> and waits (30 s) until `kiln agent list` shows
  // it connected. `labels` is the --labels value ("k=v,..."; empty: none). Returns the index.
  // `restart_index` >= 0 starts that (stopped) agent again with the same work dir.
  // `env` is added to the agent's environment (deployment hooks inherit it).
  absl::StatusOr<int> StartAgent(int slots, const std::string& labels = "", int restart_index = -1,
                                 const std::map<std::string, std::string>& env = {});
  // Sends `signal` to agent `index` and waits (30 s) for it to exit; returns its exit code.
  absl::StatusOr<int> StopAgent(int index, int signal);
  Process* agent(int index) { return agents_.at(index).get(); }
  // The agent id kept in <dir>/agent-<index>/agent-id.
  std::string AgentId(int index) const;
  // Whether `kiln agent list` shows agent `id` connected.
  absl::StatusOr<bool> AgentConnected(const std::string& id);

  // Runs `kiln --coordinator <grpc address> args...`.
  absl::StatusOr<RunResult> Kiln(const std::vector<std::string>& args,
                                 absl::Duration timeout = absl::Seconds(60), const std::string& stdin_data = "");
  // `kiln build get ID --json`, parsed.
  absl::StatusOr<kiln::v1::Build> GetBuild(const std::string& id);
  // The ids of `kiln build list [project]`, newest first.
  absl::StatusOr<std::vector<std::string>> ListBuildIds(const std::string& project = "");
  // Polls GetBuild until `done` holds. Errors: DeadlineExceeded (with the last record), GetBuild's.
  absl::StatusOr<kiln::v1::Build> WaitForBuild(const std::string& id,
                                               const std::function<bool(const kiln::v1::Build&)>& done,
                                               absl::Duration timeout = absl::Seconds(60));

  struct Followed {
    int exit_code = -1;     // of `kiln build logs ID --follow`: 0 iff SUCCEEDED
    std::string log;        // its stdout: the build's log
    std::string progress;   // its stderr: phase progress lines
    kiln::v1::Build build;  // the record after completion
  };
  // Follows the build's log to its end with the CLI, then reads the final record.
  absl::StatusOr<Followed> FollowBuild(const std::string& id, absl::Duration timeout = absl::Seconds(120));

  // Writes `text` to <dir>/<name> and runs `kiln project apply -f` on it.
  absl::Status ApplyProject(const std::string& name, const std::string& yaml);
  // `kiln param put NAME - [--secure] --overwrite` with the value on stdin.
  absl::Status PutParameter(const std::string& name, const std::string& value, bool secure);

  const std::string& dir() const { return dir_; }
  std::string grpc_address() const;
  int http_port() const { return http_port_; }
  std::string webhook_url() const;
  // Everything the coordinator and agents wrote to their logs so far.
  std::string DaemonLogs() const;

 private:
  absl::Status StartCoordinatorOnce();

  std::string dir_;
  Options options_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  int coordinator_starts_ = 0;
  std::unique_ptr<Process> coordinator_;
  std::vector<std::unique_ptr<Process>> agents_;
};

// A bare repository <dir>/<name>.git and a working clone <dir>/<name>-work, made with the git CLI.
class Repo {
 public:
  static absl::StatusOr<Repo> Create(const std::string& dir, const std::string& name);

  // The bare repository's absolute path with symlinks resolved (what the webhook hook sends as
  // clone_url, so use it as the project's source location).
  const std::string& bare_path() const { return bare_; }
  const std::string& work_path() const { return work_; }

  // Installs tools/dev/git-webhook-hook as the bare repository's post-receive hook, configured with
  // `git config kiln.webhookUrl` / `kiln.webhookSecretFile`.
  absl::Status InstallWebhookHook(const std::string& url, const std::string& secret_file);
  // Copies the tree at `src` into the working clone.
  absl::Status CopyIn(const std::string& src);
  // Writes `files` (path -> content) into the clone and commits everything; returns the commit sha.
  absl::StatusOr<std::string> Commit(const std::map<std::string, std::string>& files, const std::string& message);
  // `git push origin main`; the result's err holds git's and the hook's output ("remote: kiln: ...").
  absl::StatusOr<RunResult> Push();
  // Runs git with `args` in the working clone. Errors: Internal with the output if it exits non-zero.
  absl::StatusOr<std::string> Git(const std::vector<std::string>& args);

 private:
  Repo(std::string dir, std::string bare, std::string work)
      : dir_(std::move(dir)), bare_(std::move(bare)), work_(std::move(work)) {}
  std::string dir_;
  std::string bare_;
  std::string work_;
};

}  // namespace kiln::e2e

#endif  // KILN_TESTS_E2E_FARM_H_
