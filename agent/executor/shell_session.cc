#include "agent/executor/shell_session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/executor/process_tree.h"

namespace kiln::agent {
namespace {

constexpr size_t kReadSize = 64 * 1024;
constexpr int kFeedFd = 9;  // the shell's copy of the output pipe, for the marker

absl::Status ErrnoError(std::string_view what, int err = errno) {
  return absl::InternalError(
      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", strerror(err)));
}

// Moves `fd` to a number >= 10 (close-on-exec) so the child's dup2/close actions on 0..9 cannot
// clobber it.
int MoveHigh(int fd) {
  const int moved = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return moved;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void EmitSplit(const ShellSession::OutputFn& output, std::string_view data) {
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kReadSize);
    output(data.substr(0, n));
    data.remove_prefix(n);
  }
}

int DecodeWaitStatus(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}

int PollTimeoutMillis(absl::Time deadline, const common::Clock& clock, int cap_ms) {
  const absl::Duration left = deadline - clock.Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), cap_ms));
}

}  // namespace

std::string ShellQuote(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out += "'";
  return out;
}

absl::StatusOr<std::unique_ptr<ShellSession>> ShellSession::Start(const Options& options) {
  int in[2], out[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) return ErrnoError("socketpair");
  if (pipe2(out, O_CLOEXEC) != 0) {
    const int err = errno;
    close(in[0]);
    close(in[1]);
    return ErrnoError("pipe2", err);
  }
  for (int* fd : {&in[0], &in[1], &out[0], &out[1]}) *fd = MoveHigh(*fd);

  const bool bash = absl::EndsWith(options.shell_path, "bash");
  std::vector<std::string> args = options.launcher;
  args.push_back(options.launcher.empty() ? (bash ? "bash" : "sh") : options.shell_path);
  if (bash) args.insert(args.end(), {"--noprofile", "--norc"});
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = options.env;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  posix_spawn_file_actions_adddup2(&actions, out[1], kFeedFd);
  for (int fd = 3; fd < kFeedFd; ++fd) posix_spawn_file_actions_addclose(&actions, fd);
  posix_spawn_file_actions_addclosefrom_np(&actions, kFeedFd + 1);
  posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t signals;
  sigemptyset(&signals);
  posix_spawnattr_setsigmask(&attr, &signals);
  sigfillset(&signals);
  posix_spawnattr_setsigdefault(&attr, &signals);
  pid_t pid = -1;
  const int rc = options.launcher.empty()
                     ? posix_spawn(&pid, options.shell_path.c_str(), &actions, &attr, argv.data(),
                                   envp.data())
                     : posix_spawnp(&pid, options.launcher[0].c_str(), &actions, &attr,
                                    argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    return ErrnoError(absl::StrCat("starting ", args[0], " in ", options.cwd), rc);
  }
  fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
  // -1 on kernels before 5.3: Run() then polls waitid. (glibc 2.36's pidfd_open lacks C linkage.)
  const int pid_fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  std::unique_ptr<ShellSession> session(new ShellSession(options, pid, in[1], out[0], pid_fd));
  if (options.feed_from_stdout) SendAll(session->in_fd_, "exec 9>&1\n");
  if (!options.restore_env_file.empty()) {
    SendAll(session->in_fd_,
            absl::StrCat(". ", ShellQuote(options.restore_env_file), " 2>/dev/null\n"));
  }
  // The shell's option settings at start, restored after every command: options do not carry from
  // one command to the next (reference §1.7).
  SendAll(session->in_fd_, "__kiln_opts=$(set +o)\n");
  return session;
}

ShellSession::ShellSession(const Options& options, pid_t pid, int in_fd, int out_fd, int pid_fd)
    : options_(options),
      pid_(pid),
      in_fd_(in_fd),
      out_fd_(out_fd),
      pid_fd_(pid_fd),
      marker_(absl::StrCat("\036KILN", options.nonce, ":")) {}

ShellSession::~ShellSession() {
  Kill();
  Reap();
  for (const int fd : {in_fd_, out_fd_, pid_fd_}) {
    if (fd >= 0) close(fd);
  }
}

void ShellSession::Kill() {
  absl::MutexLock lock(&mu_);
  if (!reaped_) KillSession(pid_);  // the unreaped leader keeps its pid from being reused
}

void ShellSession::ReapOrphans() {
  absl::MutexLock lock(&mu_);
  if (!reaped_) ReapSessionOrphans(pid_);
}

int ShellSession::Reap() {
  absl::MutexLock lock(&mu_);
  if (!reaped_) {
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    exit_status_ = DecodeWaitStatus(st);
    reaped_ = true;
  }
  return exit_status_;
}

bool ShellSession::Exited() const {
  {
    absl::MutexLock lock(&mu_);
    if (reaped_) return true;
  }
  if (pid_fd_ >= 0) {
    pollfd p = {pid_fd_, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
  }
  siginfo_t info = {};
  return waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_;
}

bool ShellSession::Consume(std::string_view bytes, const OutputFn& output, int* status) {
  buf_.append(bytes);
  const size_t pos = buf_.find(marker_);
  if (pos != std::string::npos) {
    const size_t nl = buf_.find('\n', pos + marker_.size());
    EmitSplit(output, std::string_view(buf_).substr(0, pos));
    buf_.erase(0, pos);
    if (nl == std::string::npos) return false;  // the rest of the marker is on its way
    const size_t digits_at = marker_.size();
    const size_t end = nl - pos;
    if (!absl::SimpleAtoi(absl::string_view(buf_.data() + digits_at, end - digits_at), status)) {
      *status = 255;
    }
    const std::string rest = buf_.substr(end + 1);  // output of background processes
    buf_.clear();
    EmitSplit(output, rest);
    return true;
  }
  // Hold back the longest tail that could begin a marker.
  size_t keep = std::min(buf_.size(), marker_.size() - 1);
  while (keep > 0 && buf_.compare(buf_.size() - keep, keep, marker_, 0, keep) != 0) --keep;
  EmitSplit(output, std::string_view(buf_).substr(0, buf_.size() - keep));
  buf_.erase(0, buf_.size() - keep);
  return false;
}

bool ShellSession::ReadAvailable(const OutputFn& output, bool* marker, int* status) {
  char chunk[kReadSize];
  while (true) {
    const ssize_t n = read(out_fd_, chunk, sizeof(chunk));
    if (n > 0) {
      if (Consume(std::string_view(chunk, static_cast<size_t>(n)), output, status)) {
        *marker = true;
        return true;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);  // else end of file (or broken)
  }
}

absl::StatusOr<ShellSession::Result> ShellSession::Run(const std::string& script_path,
                                                       std::string_view script,
                                                       const OutputFn& output, int wake_fd,
                                                       absl::Time deadline,
                                                       const common::Clock& clock) {
  // 0644: a run-as shell must read it; the 0700 workspace keeps other users out.
  const int fd = open(script_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(absl::StrCat("writing ", script_path));
  const std::string text = absl::StrCat(absl::string_view(script.data(), script.size()), "\n");
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) return ErrnoError(absl::StrCat("writing ", script_path));

  // Three lines: the command, then
  //   { __kiln_rc=$?; set +v; eval "$__kiln_opts"; } 2>/dev/null
  //   exec 1>&9 2>&9; { command export -p >|'<state>/env'; command pwd >|'<state>/cwd'; } 2>/dev/null;
  //   command printf '\036KILN<nonce>:%d\n' "$__kiln_rc"; unset __kiln_rc
  // The reset is a line of its own so that a user's `set -v` (which echoes each line as it is read)
  // is off before the line holding the nonce is read. `command` skips user functions and keeps dash
  // alive if a redirection fails.
  const std::string state = options_.state_dir;
  const std::string feed =
      absl::StrCat(". ", ShellQuote(script_path), " </dev/null\n",
                   "{ __kiln_rc=$?; set +v; eval \"$__kiln_opts\"; } 2>/dev/null\n",
                   "exec 1>&9 2>&9; { command export -p >|", ShellQuote(state + "/env"),
                   "; command pwd >|", ShellQuote(state + "/cwd"),
                   "; } 2>/dev/null; command printf '\\036KILN", options_.nonce,
                   ":%d\\n' \"$__kiln_rc\"; unset __kiln_rc\n");
  SendAll(in_fd_, feed);  // a dead shell is noticed below

  int status = 0;
  bool marker = false;
  while (true) {
    pollfd fds[3] = {
        {out_eof_ ? -1 : out_fd_, POLLIN, 0}, {wake_fd, POLLIN, 0}, {pid_fd_, POLLIN, 0}};
    const int n = poll(fds, 3, PollTimeoutMillis(deadline, clock, pid_fd_ >= 0 ? 1000 : 100));
    if (n < 0 && errno != EINTR) return ErrnoError("poll");
    if (!out_eof_ && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (!ReadAvailable(output, &marker, &status)) {
        out_eof_ = true;  // every writer closed the pipe: the shell cannot report any more
        Kill();
      }
      if (marker) return Result{Result::kCompleted, status};
    }
    if ((fds[2].revents & POLLIN) || (pid_fd_ < 0 && Exited())) {
      if (!out_eof_ && !ReadAvailable(output, &marker, &status)) out_eof_ = true;
      if (marker) return Result{Result::kCompleted, status};
      Kill();  // what the dead shell left behind (background jobs) goes with it
      Drain(output, absl::Milliseconds(100));
      return Result{Result::kShellExited, Reap()};
    }
    if ((fds[1].revents & POLLIN) || clock.Now() >= deadline) {
      return Result{Result::kInterrupted, 0};
    }
  }
}

void ShellSession::Drain(const OutputFn& output, absl::Duration max_wait) {
  const absl::Time end = absl::Now() + max_wait;
  int status = 0;
  while (!out_eof_) {
    bool marker = false;
    if (!ReadAvailable(output, &marker, &status)) {
      out_eof_ = true;
      break;
    }
    if (marker) continue;
    pollfd p = {out_fd_, POLLIN, 0};
    const int left_ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(end - absl::Now())));
    if (left_ms == 0 || poll(&p, 1, left_ms) == 0) break;
  }
  EmitSplit(output, buf_);
  buf_.clear();
}

}  // namespace kiln::agent
