#include "tests/e2e/farm.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"

namespace kiln::e2e {
namespace {

namespace fs = std::filesystem;

std::string DirWith(const char* compiled, const char* env_name, const std::string& probe) {
  if (fs::exists(fs::path(compiled) / probe)) return compiled;
  const char* env = getenv(env_name);
  if (env != nullptr && *env != '\0') return env;
  return compiled;
}

// A port that was free a moment ago (bound to 127.0.0.1:0, then closed).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

bool Healthy(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1, 0);
  c.set_read_timeout(2, 0);
  auto r = c.Get("/healthz");
  return r && r->status == 200;
}

absl::Status CommandFailed(const std::vector<std::string>& argv, const RunResult& r) {
  return absl::InternalError(absl::StrCat("`", absl::StrJoin(argv, " "), "` exited ", r.exit_code,
                                          "\nstdout: ", r.out, "\nstderr: ", r.err));
}

// Environment of every git command: a fixed identity, no user or system configuration.
const std::map<std::string, std::string>& GitEnv() {
  static const auto* env = new std::map<std::string, std::string>{
      {"GIT_AUTHOR_NAME", "Kiln E2E"},         {"GIT_AUTHOR_EMAIL", "e2e@kiln.invalid"},
      {"GIT_COMMITTER_NAME", "Kiln E2E"},      {"GIT_COMMITTER_EMAIL", "e2e@kiln.invalid"},
      {"GIT_CONFIG_NOSYSTEM", "1"},            {"GIT_CONFIG_GLOBAL", "/dev/null"},
      {"GIT_TERMINAL_PROMPT", "0"},
  };
  return *env;
}

}  // namespace

std::string BinDir() { return DirWith(KILN_E2E_BIN_DIR, "KILN_BIN_DIR", "coordinator/kiln-coordinator"); }
std::string SourceDir() { return DirWith(KILN_E2E_SOURCE_DIR, "KILN_SOURCE_DIR", "tools/dev/git-webhook-hook"); }

absl::Status PollUntil(absl::Duration timeout, const std::string& what, const std::function<bool()>& done,
                       absl::Duration interval) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("timed out after ", absl::FormatDuration(timeout), " waiting for ", what));
    }
    absl::SleepFor(interval);  // polling interval of a bounded wait, not a synchronisation delay
  }
  return absl::OkStatus();
}

Farm::Farm(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {
  fs::create_directories(dir_ + "/logs");
  fs::create_directories(dir_ + "/scratch");
}

Farm::~Farm() {
  for (auto& a : agents_) {
    if (a && a->IsAlive() && a->Kill(SIGTERM).ok()) (void)a->WaitExit(absl::Seconds(20));
  }
  agents_.clear();
  if (coordinator_ && coordinator_->IsAlive() && coordinator_->Kill(SIGTERM).ok()) {
    (void)coordinator_->WaitExit(absl::Seconds(20));
  }
  coordinator_.reset();
}

std::string Farm::grpc_address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }
std::string Farm::webhook_url() const { return absl::StrCat("http://127.0.0.1:", http_port_, "/webhooks/github"); }

absl::Status Farm::StartCoordinator() {
  if (coordinator_ && coordinator_->IsAlive()) return absl::FailedPreconditionError("coordinator is running");
  const bool first = grpc_port_ == 0;
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (first) {
      grpc_port_ = FreePort();
      do {
        http_port_ = FreePort();
      } while (http_port_ == grpc_port_);
    }
    last = StartCoordinatorOnce();
    if (last.ok() || !absl::IsUnavailable(last) || !absl::StrContains(last.message(), "cannot listen")) {
      return last;
    }
    // Address in use: new ports on a first start; on a restart the old process's sockets may linger.
    if (!first) absl::SleepFor(absl::Milliseconds(200));
  }
  return last;
}

absl::Status Farm::StartCoordinatorOnce() {
  SpawnOptions o;
  o.argv = {BinDir() + "/coordinator/kiln-coordinator",
            "--data-dir", dir_ + "/coordinator",
            "--grpc-listen", grpc_address(),
            "--http-listen", absl::StrCat("127.0.0.1:", http_port_),
            "--heartbeat-ms", absl::StrCat(options_.heartbeat_millis),
            "--lease-ms", absl::StrCat(options_.lease_millis),
            "--minute-ms", absl::StrCat(options_.minute_millis)};
  o.log_file = absl::StrCat(dir_, "/logs/coordinator-", ++coordinator_starts_, ".log");
  auto p = Process::Spawn(o);
  if (!p.ok()) return p.status();
  coordinator_ = *std::move(p);
  Process* c = coordinator_.get();
  bool exited = false;
  absl::Status s = PollUntil(absl::Seconds(30), "the coordinator's /healthz", [&] {
    if (!c->IsAlive()) return exited = true;
    return Healthy(http_port_);
  });
  if (exited) {
    return absl::UnavailableError(absl::StrCat("kiln-coordinator exited ", *c->WaitExit(absl::ZeroDuration()),
                                               ": ", ReadFile(c->log_file())));
  }
  return s;
}

absl::StatusOr<int> Farm::StopCoordinator(int signal) {
  if (!coordinator_) return absl::FailedPreconditionError("no coordinator");
  if (absl::Status s = coordinator_->Kill(signal); !s.ok()) return s;
  return coordinator_->WaitExit(absl::Seconds(30));
}

absl::StatusOr<int> Farm::StartAgent(int slots, const std::string& labels, int restart_index,
                                     const std::map<std::string, std::string>& env) {
  const bool restart = restart_index >= 0;
  const int index = restart ? restart_index : static_cast<int>(agents_.size());
  SpawnOptions o;
  o.argv = {BinDir() + "/agent/kiln-agent", "--coordinator", grpc_address(),
            "--work-dir", absl::StrCat(dir_, "/agent-", index), "--slots", absl::StrCat(slots)};
  if (!labels.empty()) {
    o.argv.push_back("--labels");
    o.argv.push_back(labels);
  }
  o.log_file = absl::StrCat(dir_, "/logs/agent-", index, restart ? ".restarted.log" : ".log");
  o.env = env;
  auto p = Process::Spawn(o);
  if (!p.ok()) return p.status();
  if (restart) {
    agents_.at(index) = *std::move(p);
  } else {
    agents_.push_back(*std::move(p));
  }
  Process* a = agents_.at(index).get();
  absl::Status err;
  absl::Status s = PollUntil(absl::Seconds(30), absl::StrCat("agent ", index, " to connect"), [&] {
    if (!a->IsAlive()) {
      err = absl::UnavailableError(absl::StrCat("kiln-agent exited: ", ReadFile(a->log_file())));
      return true;
    }
    const std::string id = AgentId(index);
    if (id.empty()) return false;
    auto connected = AgentConnected(id);
    if (!connected.ok()) err = connected.status();
    return !connected.ok() || *connected;
  });
  if (!err.ok()) return err;
  if (!s.ok()) return s;
  return index;
}

absl::StatusOr<int> Farm::StopAgent(int index, int signal) {
  Process* a = agents_.at(index).get();
  if (absl::Status s = a->Kill(signal); !s.ok()) return s;
  return a->WaitExit(absl::Seconds(30));
}

std::string Farm::AgentId(int index) const {
  std::string id = ReadFile(absl::StrCat(dir_, "/agent-", index, "/agent-id"));
  return std::string(absl::StripAsciiWhitespace(id));
}

absl::StatusOr<bool> Farm::AgentConnected(const std::string& id) {
  auto r = Kiln({"agent", "list"});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed({"kiln", "agent", "list"}, *r);
  // Columns: ID, HOSTNAME, CONNECTED, SLOTS, RUNNING, LABELS, LAST SEEN.
  for (absl::string_view line : absl::StrSplit(r->out, '\n')) {
    std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (cols.size() >= 3 && cols[0] == id) return cols[2] == "yes";
  }
  return false;
}

absl::StatusOr<RunResult> Farm::Kiln(const std::vector<std::string>& args, absl::Duration timeout,
                                     const std::string& stdin_data) {
  std::vector<std::string> argv = {BinDir() + "/tools/cli/kiln", "--coordinator", grpc_address()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, dir_ + "/scratch", timeout, stdin_data);
}

absl::StatusOr<kiln::v1::Build> Farm::GetBuild(const std::string& id) {
  auto r = Kiln({"build", "get", id, "--json"});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed({"kiln", "build", "get", id, "--json"}, *r);
  kiln::v1::Build b;
  google::protobuf::util::JsonParseOptions jo;
  jo.ignore_unknown_fields = false;  // the CLI prints the Build message: every field must be known
  auto s = google::protobuf::util::JsonStringToMessage(r->out, &b, jo);
  if (!s.ok()) return absl::InternalError(absl::StrCat("bad `build get --json` output: ", s.ToString(), "\n", r->out));
  return b;
}

absl::StatusOr<std::vector<std::string>> Farm::ListBuildIds(const std::string& project) {
  std::vector<std::string> args = {"build", "list"};
  if (!project.empty()) args.push_back(project);
  auto r = Kiln(args);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed(args, *r);
  std::vector<std::string> ids;
  bool header = true;
  for (absl::string_view line : absl::StrSplit(r->out, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (header) {  // "ID  NUMBER  STATUS ..."
      header = false;
      if (!cols.empty() && cols[0] == "ID") continue;
    }
    if (!cols.empty()) ids.emplace_back(cols[0]);
  }
  return ids;
}

absl::StatusOr<kiln::v1::Build> Farm::WaitForBuild(const std::string& id,
                                                   const std::function<bool(const kiln::v1::Build&)>& done,
                                                   absl::Duration timeout) {
  kiln::v1::Build last;
  absl::Status err;
  absl::Status s = PollUntil(timeout, absl::StrCat("build ", id), [&] {
    auto b = GetBuild(id);
    if (!b.ok()) {
      err = b.status();
      return true;
    }
    last = *b;
    return done(last);
  });
  if (!err.ok()) return err;
  if (!s.ok()) return absl::DeadlineExceededError(absl::StrCat(s.message(), "; last record: ", last.DebugString()));
  return last;
}

absl::StatusOr<Farm::Followed> Farm::FollowBuild(const std::string& id, absl::Duration timeout) {
  auto r = Kiln({"build", "logs", id, "--follow"}, timeout);
  if (!r.ok()) return r.status();
  Followed f;
  f.exit_code = r->exit_code;
  f.log = r->out;
  f.progress = r->err;
  auto b = GetBuild(id);
  if (!b.ok()) return b.status();
  f.build = *b;
  if (!f.build.build_complete()) {
    return absl::InternalError(absl::StrCat("`kiln build logs --follow` returned ", f.exit_code,
                                            " before build ", id, " completed: ", f.progress));
  }
  return f;
}

absl::Status Farm::ApplyProject(const std::string& name, const std::string& yaml) {
  const std::string path = absl::StrCat(dir_, "/", name, ".project.yaml");
  std::ofstream(path, std::ios::trunc) << yaml;
  auto r = Kiln({"project", "apply", "-f", path});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed({"kiln", "project", "apply", "-f", path}, *r);
  return absl::OkStatus();
}

absl::Status Farm::PutParameter(const std::string& name, const std::string& value, bool secure) {
  std::vector<std::string> args = {"param", "put", name, "-", "--overwrite"};
  if (secure) args.push_back("--secure");
  auto r = Kiln(args, absl::Seconds(60), value);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed(args, *r);  // never prints the value: it went to stdin
  return absl::OkStatus();
}

std::string Farm::DaemonLogs() const {
  std::string all;
  for (const auto& e : fs::directory_iterator(dir_ + "/logs")) all += ReadFile(e.path().string());
  return all;
}

absl::StatusOr<Repo> Repo::Create(const std::string& dir, const std::string& name) {
  std::error_code ec;
  const std::string bare = absl::StrCat(fs::canonical(dir, ec).string(), "/", name, ".git");
  if (ec) return absl::InternalError(absl::StrCat("canonical ", dir, ": ", ec.message()));
  Repo repo(dir, bare, absl::StrCat(dir, "/", name, "-work"));
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"git", "init", "-q", "--bare", "-b", "main", repo.bare_},
           {"git", "init", "-q", "-b", "main", repo.work_},
       }) {
    auto r = Run(argv, dir, absl::Seconds(30), "", GitEnv());
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) return CommandFailed(argv, *r);
  }
  auto r = repo.Git({"remote", "add", "origin", repo.bare_});
  if (!r.ok()) return r.status();
  return repo;
}

absl::StatusOr<std::string> Repo::Git(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"git"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = Run(argv, dir_, absl::Seconds(60), "", GitEnv(), work_);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed(argv, *r);
  return std::string(absl::StripTrailingAsciiWhitespace(r->out));
}

absl::Status Repo::InstallWebhookHook(const std::string& url, const std::string& secret_file) {
  const std::string hook = bare_ + "/hooks/post-receive";
  std::error_code ec;
  fs::copy_file(SourceDir() + "/tools/dev/git-webhook-hook", hook, fs::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat("copy the hook: ", ec.message()));
  fs::permissions(hook, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec, ec);
  if (ec) return absl::InternalError(absl::StrCat("chmod the hook: ", ec.message()));
  for (const auto& kv : std::vector<std::pair<std::string, std::string>>{{"kiln.webhookUrl", url},
                                                                         {"kiln.webhookSecretFile", secret_file}}) {
    auto r = Git({"--git-dir", bare_, "config", kv.first, kv.second});
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

absl::Status Repo::CopyIn(const std::string& src) {
  std::error_code ec;
  fs::copy(src, work_, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat("copy ", src, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Repo::Commit(const std::map<std::string, std::string>& files,
                                         const std::string& message) {
  for (const auto& [path, content] : files) {
    fs::path p = fs::path(work_) / path;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::trunc | std::ios::binary) << content;
  }
  for (const auto& args : std::vector<std::vector<std::string>>{{"add", "-A"}, {"commit", "-q", "-m", message}}) {
    auto r = Git(args);
    if (!r.ok()) return r.status();
  }
  return Git({"rev-parse", "HEAD"});
}

absl::StatusOr<RunResult> Repo::Push() {
  std::vector<std::string> argv = {"git", "push", "origin", "main"};
  auto r = Run(argv, dir_, absl::Seconds(60), "", GitEnv(), work_);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return CommandFailed(argv, *r);
  return r;
}

}  // namespace kiln::e2e
