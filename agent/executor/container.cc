#include "agent/executor/container.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char **environ;

namespace kiln::agent {

absl::StatusOr<std::string> RunProcess(const std::vector<std::string> &argv,
                                       absl::Duration timeout) {
  if (argv.empty())
    return absl::InvalidArgumentError("empty command");
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0)
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  std::vector<std::string> args = argv;
  std::vector<char *> cargs;
  for (auto &a : args)
    cargs.push_back(a.data());
  cargs.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0].c_str(), &actions, &attr,
                              cargs.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot run ", args[0], ": ", strerror(rc)));
  }
  std::string output;
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  for (;;) {
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p = {out[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      continue;
    char buf[4096];
    const ssize_t r = read(out[0], buf, sizeof(buf));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (output.size() < (64u << 10))
      output.append(buf, static_cast<size_t>(r));
  }
  close(out[0]);
  if (timed_out)
    kill(-pid, SIGKILL);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        args[0], " did not finish within ", absl::FormatDuration(timeout)));
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return absl::UnavailableError(
        absl::StrCat(args[0], " exited with status ",
                     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), ": ",
                     absl::StripAsciiWhitespace(output)));
  }
  return output;
}

absl::Status StartContainer(const ContainerSpec &spec) {
  std::vector<std::string> argv = {
      "docker",
      "run",
      "-d",
      "--name",
      spec.name,
      "--label",
      absl::StrCat("kiln.build-id=", spec.build_id),
      "--label",
      absl::StrCat("kiln.workspace=", spec.workspace),
      "-v",
      absl::StrCat(spec.workspace, ":", spec.workspace),
      "-w",
      spec.workspace};
  if (spec.privileged) {
    argv.insert(argv.end(),
                {"-v", "/var/run/docker.sock:/var/run/docker.sock"});
  }
  argv.insert(argv.end(), {"--entrypoint", "sleep", spec.image, "infinity"});
  absl::StatusOr<std::string> out = RunProcess(argv, absl::Minutes(10));
  if (!out.ok())
    return out.status();
  return absl::OkStatus();
}

void RemoveContainer(const std::string &name) {
  (void)RunProcess({"docker", "rm", "-f", name}, absl::Seconds(30));
}

void RemoveLeftoverContainers(const std::string &work_dir) {
  absl::StatusOr<std::string> out =
      RunProcess({"docker", "ps", "-a", "--filter", "label=kiln.workspace",
                  "--format", "{{.ID}} {{.Label \"kiln.workspace\"}}"},
                 absl::Seconds(30));
  if (!out.ok())
    return;
  for (absl::string_view line : absl::StrSplit(*out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (f.size() == 2 && absl::StartsWith(f[1], absl::StrCat(work_dir, "/")))
      RemoveContainer(f[0]);
  }
}

std::vector<std::string> DockerExecLauncher(const std::string &name,
                                            const std::string &cwd,
                                            const std::string &user) {
  std::vector<std::string> argv = {"docker", "exec", "-i", "-w", cwd};
  if (!user.empty())
    argv.insert(argv.end(), {"-u", user});
  argv.push_back(name);
  return argv;
}

} // namespace kiln::agent
