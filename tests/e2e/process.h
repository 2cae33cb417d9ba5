// Child processes for the end-to-end suite: spawns a real binary with its own argv and environment,
// stdout+stderr appended to a log file, and lets the test signal it, wait for it with a deadline and
// see whether it still runs. Test-only, Linux only (pidfd_open for deadline waits).
//
// Only the processes a Process object spawned are ever signalled; the destructor SIGKILLs and reaps its
// child if it is still running, so a failed test leaves no daemon behind.
//
// Thread-safety: a Process is used from one thread; Run() shares nothing and may be called anywhere.
#ifndef KILN_TESTS_E2E_PROCESS_H_
#define KILN_TESTS_E2E_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::e2e {

struct SpawnOptions {
  // argv[0] is the executable: an absolute path, or a name looked up in PATH.
  std::vector<std::string> argv;
  // Added to (or replacing entries of) this process's environment.
  std::map<std::string, std::string> env;
  // stdout and stderr are appended to this file (created 0644); empty: /dev/null.
  std::string log_file;
  // If set, stderr goes here instead of log_file.
  std::string stderr_file;
  // stdin is read from this file; empty: /dev/null.
  std::string stdin_file;
  // Working directory; empty: this process's.
  std::string cwd;
};

class Process {
 public:
  // Starts the child; it gets SIGKILL if this test process dies first (PR_SET_PDEATHSIG). Errors:
  // InvalidArgument (empty argv), NotFound (no such executable), Internal (open/fork/exec failed).
  static absl::StatusOr<std::unique_ptr<Process>> Spawn(const SpawnOptions& options);
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();  // SIGKILL + reap if still running

  pid_t pid() const { return pid_; }
  const std::string& log_file() const { return log_file_; }

  // Sends `signal` to the child (never to anything else). Errors: FailedPrecondition once it was
  // reaped (its pid may belong to someone else by then), Internal if kill() fails.
  absl::Status Kill(int signal);

  // Waits at most `timeout` for the child to exit and reaps it. Returns its exit code (0..255), or
  // 128 + signal number if a signal ended it (shell convention). Errors: DeadlineExceeded if it is
  // still running at the deadline. Once reaped, returns the same value again at once.
  absl::StatusOr<int> WaitExit(absl::Duration timeout);

  // True while the child has not exited (reaps it if it has).
  bool IsAlive();

 private:
  Process(pid_t pid, int pidfd, std::string log_file);
  void Reaped(int wait_status);

  pid_t pid_;
  int pidfd_;
  std::string log_file_;
  std::optional<int> exit_code_;
};

struct RunResult {
  int exit_code = -1;  // as Process::WaitExit
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs `argv` to completion with `stdin_data` on stdin; stdout and stderr are captured through files
// under `scratch_dir`. Errors: DeadlineExceeded (the child is killed) after `timeout`, and Spawn's.
absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv, const std::string& scratch_dir,
                              absl::Duration timeout, const std::string& stdin_data = "",
                              const std::map<std::string, std::string>& env = {},
                              const std::string& cwd = "");

// The whole content of `path` ("" if unreadable).
std::string ReadFile(const std::string& path);

// Pids of the live processes (zombies excluded: their cmdline and environ are empty) whose
// /proc/<pid>/cmdline or /proc/<pid>/environ contains `needle`. This process is never included.
std::vector<pid_t> FindProcesses(const std::string& needle);

}  // namespace kiln::e2e

#endif  // KILN_TESTS_E2E_PROCESS_H_
