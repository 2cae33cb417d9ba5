// One long-lived shell process that runs a build's commands (reference/aws-semantics.md §1.7).
//
// The shell (bash started with --noprofile --norc, or /bin/sh) runs in its own session and process
// group (setsid), reads its commands from a socket on stdin, and writes stdout and stderr to one
// pipe that Run() reads. Run() writes each command to a file and feeds the shell
//
//     . '<file>' </dev/null
//
// so `cd`, `export` and plain assignments persist into later commands and stdin-reading commands
// cannot eat the feed. After the command the shell resets its options (set +e +u +x +v, and
// +o pipefail for bash: options do not carry, as in CodeBuild), points stdout/stderr back at the
// pipe (fd 9 keeps a copy), saves `export -p` to <state_dir>/env and `pwd` to <state_dir>/cwd, and
// prints the completion marker "\036KILN<nonce>:<status>\n" to the pipe, so output and completion
// arrive in order. Run() removes the marker from the output.
//
// If the shell dies during a command (`exit 3`, or `set -e` and a failing line), Run() reports the
// shell's exit status, kills what is left of its session and returns kShellExited; the owner starts
// a new session with `restore_env_file` = <state_dir>/env to carry on from the last saved state
// (exported variables and cwd; plain assignments are lost then).
//
// Thread-safety: Run() and Drain() are called by one thread at a time; Kill() may be called from
// any thread at any time (it interrupts a running Run() through the shell's death).
#ifndef KILN_AGENT_EXECUTOR_SHELL_SESSION_H_
#define KILN_AGENT_EXECUTOR_SHELL_SESSION_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace kiln::agent {

class ShellSession {
 public:
  struct Options {
    // "/bin/bash" (any path ending in "bash" gets --noprofile --norc) or "/bin/sh".
    std::string shell_path = "/bin/bash";
    // The shell's whole environment, "NAME=value" entries.
    std::vector<std::string> env;
    // Initial working directory; must exist.
    std::string cwd;
    // Existing directory for the state files (env, cwd).
    std::string state_dir;
    // Marker nonce: [0-9a-f]+, random per build so output cannot fake a completion.
    std::string nonce;
    // If set, the shell first sources this `export -p` file (errors ignored). Start such a shell
    // with an empty `env` so variables unset since then stay unset.
    std::string restore_env_file;
    // If set, the shell is started through this argv prefix, searched in PATH, with `env` as the
    // launcher's environment and `shell_path` as the shell to run; e.g. {"setpriv", "--reuid=1000",
    // "--regid=1000", "--init-groups", "--"} (run-as) or {"docker", "exec", "-i", "<container>"}
    // (environment image). A launcher that does not pass fd 9 through (docker exec) must set
    // `feed_from_stdout`.
    std::vector<std::string> launcher;
    // The shell makes fd 9 (the marker's channel) a copy of its stdout first.
    bool feed_from_stdout = false;
  };

  struct Result {
    enum Kind {
      kCompleted,    // the command finished; exit_status is its $?
      kShellExited,  // the shell died; exit_status is its status (128+signal if killed)
      kInterrupted,  // wake_fd became readable or the deadline passed; the shell still runs
    };
    Kind kind = kCompleted;
    int exit_status = 0;
  };

  using OutputFn = std::function<void(std::string_view bytes)>;

  // Starts the shell. Errors: Internal (pipe or spawn failure, e.g. missing shell or cwd).
  static absl::StatusOr<std::unique_ptr<ShellSession>> Start(const Options& options);
  ~ShellSession();  // Kill(), then reaps the shell.
  ShellSession(const ShellSession&) = delete;
  ShellSession& operator=(const ShellSession&) = delete;

  // Writes `script` to `script_path` and runs it as described above, blocking until a Result.
  // `output` gets the raw output (markers removed) in order, as it arrives, in chunks of at most
  // 64 KiB. `wake_fd` (-1: none) is polled for readability; `deadline` is read from `clock`
  // (checked at least once a second). Errors: Internal if the file cannot be written.
  absl::StatusOr<Result> Run(const std::string& script_path, std::string_view script,
                             const OutputFn& output, int wake_fd, absl::Time deadline,
                             const common::Clock& clock);

  // SIGKILLs the shell and its whole process tree (KillSession). Thread-safe; idempotent.
  void Kill();

  // Reaps zombies of the session adopted by this (subreaper) process. Thread-safe.
  void ReapOrphans();

  // After Kill(): passes the output still in the pipe to `output` until end of file or for at most
  // `max_wait` (processes that escaped the kill may hold the pipe open).
  void Drain(const OutputFn& output, absl::Duration max_wait);

  // True once the shell process has exited (it may not be reaped yet).
  bool Exited() const;

  pid_t pid() const { return pid_; }

 private:
  ShellSession(const Options& options, pid_t pid, int in_fd, int out_fd, int pid_fd);
  // Appends newly read bytes to buf_ and passes on everything before a (possibly partial) marker.
  // Returns true and sets *status when a complete marker was found.
  bool Consume(std::string_view bytes, const OutputFn& output, int* status);
  // Reads what is available now; returns false at end of file.
  bool ReadAvailable(const OutputFn& output, bool* marker, int* status);
  int Reap();  // blocking; returns the shell's exit status

  const Options options_;
  const pid_t pid_;
  const int in_fd_, out_fd_, pid_fd_;
  const std::string marker_;
  std::string buf_;  // bytes that may be the start of a marker
  bool out_eof_ = false;

  mutable absl::Mutex mu_;
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  int exit_status_ ABSL_GUARDED_BY(mu_) = 0;
};

// Quotes `s` for POSIX shells: 'it'\''s'.
std::string ShellQuote(std::string_view s);

}  // namespace kiln::agent

#endif  // KILN_AGENT_EXECUTOR_SHELL_SESSION_H_
