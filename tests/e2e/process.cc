#include "tests/e2e/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace kiln::e2e {
namespace {

absl::Status Errno(const std::string& what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

// argv[0] if it has a slash, else its first executable match in PATH.
std::string ResolveExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

// This environment with `extra` added or replacing entries, as "K=V" strings.
std::vector<std::string> MergedEnvironment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    if (extra.count(kv.substr(0, kv.find('=')))) continue;
    out.push_back(std::move(kv));
  }
  for (const auto& [k, v] : extra) out.push_back(absl::StrCat(k, "=", v));
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

int OpenOrNull(const std::string& path, int flags) {
  return path.empty() ? open("/dev/null", O_RDWR | O_CLOEXEC) : open(path.c_str(), flags | O_CLOEXEC, 0644);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Process>> Process::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("empty argv");
  std::string exe = ResolveExecutable(options.argv[0]);
  if (access(exe.c_str(), X_OK) != 0) return absl::NotFoundError(absl::StrCat("not executable: ", exe));
  std::vector<std::string> args = options.argv;
  std::vector<std::string> env = MergedEnvironment(options.env);
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);

  const int out_flags = O_WRONLY | O_CREAT | O_APPEND;
  int in_fd = OpenOrNull(options.stdin_file, O_RDONLY);
  int out_fd = OpenOrNull(options.log_file, out_flags);
  int err_fd = options.stderr_file.empty() ? dup(out_fd) : OpenOrNull(options.stderr_file, out_flags);
  int exec_pipe[2] = {-1, -1};  // the child reports a failed exec's errno through it (CLOEXEC)
  auto close_all = [&] {
    for (int fd : {in_fd, out_fd, err_fd, exec_pipe[0], exec_pipe[1]}) {
      if (fd >= 0) close(fd);
    }
  };
  if (in_fd < 0 || out_fd < 0 || err_fd < 0 || pipe2(exec_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    close_all();
    return Errno(absl::StrCat("cannot set up the files of ", options.argv[0]), err);
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close_all();
    return Errno("fork", err);
  }
  if (pid == 0) {  // child: async-signal-safe calls only
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    int err = 0;
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) {
      err = errno;
    } else {
      execve(exe.c_str(), argv.data(), envp.data());
      err = errno;
    }
    ssize_t unused = write(exec_pipe[1], &err, sizeof(err));
    (void)unused;
    _exit(127);
  }
  close(exec_pipe[1]);
  exec_pipe[1] = -1;
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(exec_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  int pidfd_errno = errno;
  close_all();
  if (n > 0) {
    waitpid(pid, nullptr, 0);
    if (pidfd >= 0) close(pidfd);
    return Errno(absl::StrCat("cannot start ", exe), child_errno);
  }
  if (pidfd < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Errno("pidfd_open", pidfd_errno);
  }
  return std::unique_ptr<Process>(new Process(pid, pidfd, options.log_file));
}

Process::Process(pid_t pid, int pidfd, std::string log_file)
    : pid_(pid), pidfd_(pidfd), log_file_(std::move(log_file)) {}

Process::~Process() {
  if (!exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  close(pidfd_);
}

void Process::Reaped(int wait_status) {
  exit_code_ = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

absl::Status Process::Kill(int signal) {
  if (exit_code_.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("process ", pid_, " was already reaped"));
  }
  if (kill(pid_, signal) != 0) return Errno(absl::StrCat("kill ", pid_), errno);
  return absl::OkStatus();
}

absl::StatusOr<int> Process::WaitExit(absl::Duration timeout) {
  if (exit_code_.has_value()) return *exit_code_;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    pollfd p = {pidfd_, POLLIN, 0};
    const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Errno("poll pidfd", errno);
    if (r == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", pid_, " still running after ", absl::FormatDuration(timeout)));
    }
    break;
  }
  int st = 0;
  pid_t w;
  do {
    w = waitpid(pid_, &st, 0);
  } while (w < 0 && errno == EINTR);
  if (w < 0) return Errno(absl::StrCat("waitpid ", pid_), errno);
  Reaped(st);
  return *exit_code_;
}

bool Process::IsAlive() {
  if (exit_code_.has_value()) return false;
  int st = 0;
  pid_t w = waitpid(pid_, &st, WNOHANG);
  if (w == pid_) {
    Reaped(st);
    return false;
  }
  return true;
}

absl::StatusOr<RunResult> Run(const std::vector<std::string>& argv, const std::string& scratch_dir,
                              absl::Duration timeout, const std::string& stdin_data,
                              const std::map<std::string, std::string>& env, const std::string& cwd) {
  std::string base = absl::StrCat(scratch_dir, "/run-XXXXXX");
  int fd = mkstemp(base.data());  // reserves a unique name; the three files are derived from it
  if (fd < 0) return Errno(absl::StrCat("mkstemp in ", scratch_dir), errno);
  close(fd);
  SpawnOptions o;
  o.argv = argv;
  o.env = env;
  o.cwd = cwd;
  o.log_file = base + ".out";
  o.stderr_file = base + ".err";
  o.stdin_file = base + ".in";
  std::ofstream(o.stdin_file, std::ios::binary | std::ios::trunc) << stdin_data;
  auto p = Process::Spawn(o);
  if (!p.ok()) return p.status();
  absl::StatusOr<int> code = (*p)->WaitExit(timeout);
  if (!code.ok()) return code.status();  // the destructor kills it
  RunResult r;
  r.exit_code = *code;
  r.out = ReadFile(o.log_file);
  r.err = ReadFile(o.stderr_file);
  for (const std::string& f : {base, o.log_file, o.stderr_file, o.stdin_file}) unlink(f.c_str());
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<pid_t> FindProcesses(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  const pid_t self = getpid();
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0' || pid == self) continue;
    for (const char* file : {"cmdline", "environ"}) {
      if (ReadFile(absl::StrCat("/proc/", pid, "/", file)).find(needle) != std::string::npos) {
        out.push_back(static_cast<pid_t>(pid));
        break;
      }
    }
  }
  closedir(d);
  return out;
}

}  // namespace kiln::e2e
