#include "coordinator/poller/source_poller.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace kiln::coordinator {
namespace {

using nlohmann::json;

constexpr size_t kMaxStderrBytes = 4096;
constexpr int kSliceMillis = 100;  // how often a running command checks for Stop()

// Credentials from the child's environment, so that they never appear in argv (visible to every user
// in ps) or in git's config files. git runs the helper with its shell.
constexpr char kCredentialHelper[] =
    "credential.helper=!f() { test \"$1\" = get || exit 0; "
    "printf 'username=%s\\npassword=%s\\n' \"$KILN_GIT_USERNAME\" \"$KILN_GIT_PASSWORD\"; }; f";

std::string PollKey(const std::string& project) { return absl::StrCat("poll/", project); }

// `location` without the user-info of a URL ("https://user:token@host/r" -> "https://host/r"), for
// logs and records.
std::string Redact(const std::string& location) {
  const size_t scheme = location.find("://");
  if (scheme == std::string::npos) return location;
  const size_t host = scheme + 3;
  const size_t at = location.find('@', host);
  if (at == std::string::npos || at > location.find('/', host)) return location;
  return absl::StrCat(location.substr(0, host), location.substr(at + 1));
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;  // the first kMaxStderrBytes
};

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Runs argv (PATH lookup) with the coordinator's environment plus `env` ("NAME=value", replacing same
// names), stdin from /dev/null, in its own process group. Errors: Unavailable (cannot start),
// DeadlineExceeded (ran longer than `timeout`), ResourceExhausted (stdout over `max_out` bytes),
// Cancelled (`stop` notified); in each of those cases the process group was killed.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env,
                                         absl::Duration timeout, size_t max_out,
                                         const absl::Notification& stop) {
  std::vector<std::string> environment;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& ours : env) replaced |= std::string_view(ours).substr(0, ours.find('=')) == name;
    if (!replaced) environment.emplace_back(entry);
  }
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> envp, args;
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (std::string& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    const int e = errno;
    for (int* fd : {&out_pipe[0], &out_pipe[1], &err_pipe[0], &err_pipe[1]}) CloseFd(*fd);
    return absl::UnavailableError(absl::StrCat("pipe: ", std::strerror(e)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);  // own group: a timeout kills git and its helpers
  sigset_t signals;
  sigemptyset(&signals);
  posix_spawnattr_setsigmask(&attr, &signals);
  sigaddset(&signals, SIGPIPE);  // the coordinator ignores SIGPIPE; git should not inherit that
  posix_spawnattr_setsigdefault(&attr, &signals);
  pid_t pid = -1;
  const int spawn_error =
      posix_spawnp(&pid, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  CloseFd(out_pipe[1]);
  CloseFd(err_pipe[1]);
  if (spawn_error != 0) {
    CloseFd(out_pipe[0]);
    CloseFd(err_pipe[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(spawn_error)));
  }

  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout));
  CommandResult result;
  absl::Status failure;
  int fds[2] = {out_pipe[0], err_pipe[0]};
  char buf[8192];
  while ((fds[0] >= 0 || fds[1] >= 0) && failure.ok()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      failure = absl::DeadlineExceededError(
          absl::StrCat(argv[0], " did not finish within ", absl::FormatDuration(timeout)));
      break;
    }
    if (stop.HasBeenNotified()) {
      failure = absl::CancelledError("the poller is stopping");
      break;
    }
    pollfd pfds[2];
    nfds_t n = 0;
    for (int fd : fds) {
      if (fd >= 0) pfds[n++] = {fd, POLLIN, 0};
    }
    const int ready = ::poll(pfds, n, static_cast<int>(std::min<int64_t>(left, kSliceMillis)));
    if (ready < 0 && errno != EINTR) {
      failure = absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
      break;
    }
    for (nfds_t i = 0; i < n && ready > 0; ++i) {
      if (pfds[i].revents == 0) continue;
      const bool is_out = pfds[i].fd == fds[0];
      const ssize_t got = ::read(pfds[i].fd, buf, sizeof(buf));
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        CloseFd(is_out ? fds[0] : fds[1]);
        continue;
      }
      if (is_out) {
        if (result.out.size() + got > max_out) {
          failure = absl::ResourceExhaustedError(
              absl::StrCat(argv[0], " printed more than ", max_out, " bytes"));
          break;
        }
        result.out.append(buf, got);
      } else if (result.err.size() < kMaxStderrBytes) {
        result.err.append(buf, std::min<size_t>(got, kMaxStderrBytes - result.err.size()));
      }
    }
  }
  CloseFd(fds[0]);
  CloseFd(fds[1]);
  if (!failure.ok()) ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!failure.ok()) return failure;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SourcePoller>> SourcePoller::Create(const Options& options) {
  if (options.backend == nullptr || options.store == nullptr || options.deliveries == nullptr ||
      options.clock == nullptr) {
    return absl::InvalidArgumentError("SourcePoller needs a backend, a store, deliveries and a clock");
  }
  return std::unique_ptr<SourcePoller>(new SourcePoller(options));
}

SourcePoller::~SourcePoller() { Stop(); }

void SourcePoller::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable() || stop_.HasBeenNotified()) return;
  thread_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(options_.tick_interval)) Tick();
  });
}

void SourcePoller::Stop() {
  absl::MutexLock lock(&thread_mu_);
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

int SourcePoller::Tick() {
  absl::MutexLock lock(&tick_mu_);
  absl::StatusOr<std::vector<kiln::v1::Project>> projects = options_.backend->ListProjects();
  if (!projects.ok()) {
    KILN_LOG(ERROR) << "poller: cannot list projects: " << projects.status();
    return 0;
  }
  const absl::Time now = options_.clock->Now();
  std::map<std::string, absl::Time> still_polled;
  int polled = 0;
  for (const kiln::v1::Project& p : *projects) {
    const int interval = p.source().poll_interval_seconds();
    if (interval <= 0) continue;
    auto last = last_poll_.find(p.name());
    if (last != last_poll_.end() && now < last->second + absl::Seconds(interval)) {
      still_polled.insert(*last);
      continue;
    }
    still_polled[p.name()] = now;
    ++polled;
    if (absl::Status s = Poll(p, now); !s.ok()) {
      KILN_LOG(WARNING) << "poller: project " << p.name() << ": " << s;
    }
    if (stop_.HasBeenNotified()) break;
  }
  last_poll_ = std::move(still_polled);  // forgets projects that were removed or stopped polling
  return polled;
}

absl::StatusOr<std::string> SourcePoller::LsRemote(const kiln::v1::Project& project,
                                                   const std::string& ref) {
  const std::string& location = project.source().location();
  if (location.empty() || location[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat("cannot poll location \"", Redact(location), "\""));
  }
  std::vector<std::string> env = {"GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=",
                                  "GIT_ALLOW_PROTOCOL=file:git:http:https:ssh", "LC_ALL=C"};
  std::vector<std::string> argv = {options_.git};
  if (!project.source().credentials_parameter().empty()) {
    KILN_ASSIGN_OR_RETURN(std::string credentials,
                          options_.backend->GetSecret(project.source().credentials_parameter()));
    const size_t colon = credentials.find(':');
    if (colon == std::string::npos) {
      return absl::FailedPreconditionError(absl::StrCat(
          "parameter ", project.source().credentials_parameter(), " must hold username:password"));
    }
    env.push_back(absl::StrCat("KILN_GIT_USERNAME=", credentials.substr(0, colon)));
    env.push_back(absl::StrCat("KILN_GIT_PASSWORD=", credentials.substr(colon + 1)));
    argv.insert(argv.end(), {"-c", "credential.helper=", "-c", kCredentialHelper});
  }
  argv.insert(argv.end(), {"ls-remote", "--", location, ref});
  KILN_ASSIGN_OR_RETURN(CommandResult r, RunCommand(argv, env, options_.command_timeout,
                                                    options_.max_output_bytes, stop_));
  if (r.exit_code != 0) {
    // The first two lines of git's message, on one line, without credentials of the URL.
    std::vector<absl::string_view> lines =
        absl::StrSplit(r.err, absl::ByAnyChar("\r\n"), absl::SkipWhitespace());
    if (lines.size() > 2) lines.resize(2);
    const std::string err =
        absl::StrReplaceAll(absl::StrJoin(lines, "; "), {{location, Redact(location)}});
    return absl::UnavailableError(
        absl::StrCat("git ls-remote exited with ", r.exit_code, ": ", err.substr(0, 500)));
  }
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
    if (fields.size() == 2 && absl::StripAsciiWhitespace(fields[1]) == ref && fields[0].size() >= 40) {
      return std::string(fields[0]);
    }
  }
  return absl::NotFoundError(absl::StrCat(Redact(location), " has no ", ref));
}

absl::Status SourcePoller::Poll(const kiln::v1::Project& project, absl::Time now) {
  const std::string branch = project.source().branch().empty() ? "main" : project.source().branch();
  const std::string ref = absl::StrCat("refs/heads/", branch);
  const std::string& location = project.source().location();
  KILN_ASSIGN_OR_RETURN(std::string commit, LsRemote(project, ref));

  KILN_ASSIGN_OR_RETURN(std::optional<std::string> stored, options_.store->Get(PollKey(project.name())));
  json state = json::object();
  if (stored.has_value()) {
    state = json::parse(*stored, nullptr, /*allow_exceptions=*/false);
    if (!state.is_object()) state = json::object();  // unreadable: treat as a first poll
  }
  const json seen = {{"location", location}, {"branch", branch}, {"commit", commit}};
  WriteBatch update;
  update.Put(PollKey(project.name()), seen.dump());
  const bool first = state.value("location", "") != location || state.value("branch", "") != branch;
  const std::string previous = state.value("commit", "");
  if (first) {
    KILN_LOG(INFO) << "poller: project " << project.name() << ": " << ref << " is at " << commit;
    return options_.store->Write(update);
  }
  if (previous == commit) return absl::OkStatus();

  const int64_t number = options_.deliveries->Allocate();
  kiln::v1::WebhookTrigger trigger;
  trigger.set_event("PUSH");
  trigger.set_head_ref(ref);
  trigger.set_prev_commit(previous);
  trigger.set_trigger(absl::StrCat("branch/", branch));
  trigger.set_delivery_id(absl::StrCat("poll-", number));
  absl::StatusOr<std::string> build = options_.backend->StartBuild(project, commit, trigger);

  kiln::v1::WebhookDelivery record;
  record.set_delivery_id(trigger.delivery_id());
  record.set_github_event("poll");
  record.set_event_type("PUSH");
  const int64_t seconds = absl::ToUnixSeconds(now);
  record.mutable_received()->set_seconds(seconds);
  record.mutable_received()->set_nanos(
      static_cast<int32_t>((now - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
  record.set_repository(Redact(location));
  record.set_head_ref(ref);
  record.set_commit(commit);
  record.add_matched_projects(project.name());
  WebhookDeliveryLog::RecordOptions options;
  options.evaluated_projects = {project.name()};
  options.number = number;
  if (build.ok()) {
    record.add_build_ids(*build);
    options.extra = &update;  // the new commit is "seen" only together with its build's record
    KILN_LOG(INFO) << "poller: project " << project.name() << ": " << ref << " moved to " << commit
                   << ", started build " << *build;
  } else {
    record.set_reason(absl::StrCat("no build could be started: ", project.name(), ": ",
                                   absl::StatusCodeToString(build.status().code()), ": ",
                                   build.status().message()));
  }
  KILN_RETURN_IF_ERROR(options_.deliveries->Record(record, options));
  return build.status();
}

}  // namespace kiln::coordinator
