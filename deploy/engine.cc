// DeploymentEngine (reference/aws-semantics.md §4.5-§4.8; agent command_executor.rb,
// hook_executor.rb).
#include "deploy/engine.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "deploy/appspec.h"
#include "deploy/instructions.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace kiln::deploy {
namespace {

namespace fs = std::filesystem;
using ::absl::StrCat;
using SteadyClock = std::chrono::steady_clock;

constexpr size_t kLogTailChars = 2048;
constexpr size_t kMaxLineBytes = 64 * 1024;

bool SafeComponent(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\0') == std::string::npos;
}

bool IsOldRevisionEvent(std::string_view event) {  // §4.6
  return event == "ApplicationStop" || event == "BeforeBlockTraffic" ||
         event == "AfterBlockTraffic";
}

absl::Status Internal(std::string_view what, const fs::path& path, int err) {
  return absl::InternalError(StrCat(std::string(what), " ", path.string(), ": ", std::strerror(err)));
}

absl::Status WriteFileAtomic(const fs::path& path, const std::string& content) {
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << content;
    out.flush();
    if (!out) return Internal("cannot write", tmp, errno);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Internal("cannot rename to", path, ec.value());
  return absl::OkStatus();
}

std::optional<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string Chomp(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// appspec lookup (§4.1): the given name, else appspec.yml then appspec.yaml.
std::optional<fs::path> FindAppSpec(const fs::path& archive, const std::string& name) {
  std::vector<std::string> names =
      name.empty() ? std::vector<std::string>{"appspec.yml", "appspec.yaml"}
                   : std::vector<std::string>{name};
  for (const std::string& n : names) {
    std::error_code ec;
    if (fs::is_regular_file(archive / n, ec)) return archive / n;
  }
  return std::nullopt;
}

// Unpacks `file` (any format and filter libarchive reads) into `dest`, keeping permissions and
// times; refuses absolute paths, ".." and writing through symlinks.
absl::Status Extract(const fs::path& file, const fs::path& dest) {
  struct archive* in = archive_read_new();
  struct archive* out = archive_write_disk_new();
  absl::Cleanup free_archives = [&] {
    archive_read_free(in);
    archive_write_free(out);
  };
  archive_read_support_format_all(in);
  archive_read_support_filter_all(in);
  archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                          ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                          ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  archive_write_disk_set_standard_lookup(out);
  auto error = [&](struct archive* a) {
    const char* msg = archive_error_string(a);
    return absl::FailedPreconditionError(
        StrCat("cannot unpack the revision ", file.string(), ": ", msg ? msg : "unknown error"));
  };
  if (archive_read_open_filename(in, file.c_str(), 64 * 1024) != ARCHIVE_OK) return error(in);
  struct archive_entry* entry;
  int r;
  while ((r = archive_read_next_header(in, &entry)) == ARCHIVE_OK) {
    const char* name = archive_entry_pathname(entry);
    if (name == nullptr || name[0] == '/') {
      return absl::FailedPreconditionError(
          StrCat("cannot unpack the revision ", file.string(), ": absolute or unnamed entry ",
                 name ? name : ""));
    }
    archive_entry_set_pathname(entry, (dest / name).c_str());
    if (const char* link = archive_entry_hardlink(entry)) {
      archive_entry_set_hardlink(entry, (dest / link).c_str());
    }
    if (archive_write_header(out, entry) < ARCHIVE_WARN) return error(out);
    const void* block;
    size_t size;
    la_int64_t offset;
    while ((r = archive_read_data_block(in, &block, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out, block, size, offset) < ARCHIVE_WARN) return error(out);
    }
    if (r != ARCHIVE_EOF) return error(in);
    if (archive_write_finish_entry(out) < ARCHIVE_WARN) return error(out);
  }
  if (r != ARCHIVE_EOF) return error(in);
  return absl::OkStatus();
}

// §4.8 DownloadBundle step 4: a single top-level directory holding a file named like "appspec"
// becomes the archive root.
absl::Status UnwrapSingleDirectory(const fs::path& deployment_dir) {
  fs::path archive = deployment_dir / "deployment-archive";
  std::error_code ec;
  std::vector<fs::path> top;
  for (const auto& e : fs::directory_iterator(archive, ec)) top.push_back(e.path());
  if (ec || top.size() != 1 || !fs::is_directory(fs::symlink_status(top[0]))) {
    return absl::OkStatus();
  }
  bool has_appspec = false;
  for (const auto& e : fs::directory_iterator(top[0], ec)) {
    has_appspec |= absl::StrContains(absl::AsciiStrToLower(e.path().filename().string()), "appspec");
  }
  if (!has_appspec) return absl::OkStatus();
  fs::path tmp = deployment_dir / "deployment-archive-temp";
  fs::remove_all(tmp, ec);
  fs::rename(archive, tmp, ec);
  if (!ec) fs::rename(tmp / top[0].filename(), archive, ec);
  if (!ec) fs::remove(tmp, ec);
  if (ec) return Internal("cannot unwrap the revision's top directory in", deployment_dir, ec.value());
  return absl::OkStatus();
}

// Splits a stream into lines; a line longer than kMaxLineBytes is emitted in pieces.
class LineSplitter {
 public:
  template <typename Emit>
  void Feed(std::string_view data, const Emit& emit) {
    partial_.append(data);
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      emit(partial_.substr(start, nl - start));
    }
    partial_.erase(0, start);
    if (partial_.size() > kMaxLineBytes) Flush(emit);
  }
  template <typename Emit>
  void Flush(const Emit& emit) {
    if (!partial_.empty()) emit(partial_);
    partial_.clear();
  }

 private:
  std::string partial_;
};

// The script log of one event: scripts.log (timestamped), the diagnostics tail, the callback.
class ScriptLog {
 public:
  ScriptLog(const fs::path& file, std::string event, const OutputCallback& output)
      : file_(file, std::ios::app), event_(std::move(event)), output_(output) {}

  void Line(const std::string& text) {
    std::string ts = absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::Now(), absl::LocalTimeZone());
    file_ << ts << " " << text << "\n" << std::flush;
    tail_ += text + "\n";
    if (tail_.size() > kLogTailChars) tail_.erase(0, tail_.size() - kLogTailChars);
    if (output_) output_(event_, text);
  }
  const std::string& tail() const { return tail_; }

 private:
  std::ofstream file_;
  std::string event_;
  const OutputCallback& output_;
  std::string tail_;
};

std::optional<std::string> FindInPath(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return prog;
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = StrCat(dir.empty() ? "." : dir, "/", prog);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::string ErrnoName(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    case EPERM: return "EPERM";
    case ENOTDIR: return "ENOTDIR";
    case E2BIG: return "E2BIG";
    case ENOMEM: return "ENOMEM";
    case ETXTBSY: return "ETXTBSY";
    default: return StrCat("E", err);
  }
}

}  // namespace

struct DeploymentEngine::Hook {
  const AppSpecScript* script;
  std::string path;  // absolute script path
  std::vector<std::string> env;
  ScriptLog* log;
};

std::string DiagnosticsJson(const EventResult& r) {
  return nlohmann::json{{"error_code", r.error_code},
                        {"script_name", r.script_name},
                        {"message", r.message},
                        {"log", r.log}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<DeploymentEngine>> DeploymentEngine::Create(fs::path root_dir,
                                                                           EngineOptions options) {
  if (options.max_revisions < 1) {
    return absl::InvalidArgumentError(
        StrCat("max_revisions must be at least 1, got ", options.max_revisions));
  }
  std::error_code ec;
  root_dir = fs::absolute(root_dir, ec).lexically_normal();
  if (!ec) fs::create_directories(root_dir, ec);
  if (ec) return Internal("cannot create deployment root", root_dir, ec.value());
  auto engine = std::unique_ptr<DeploymentEngine>(
      new DeploymentEngine(std::move(root_dir), std::move(options)));
  if (::pipe2(engine->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Internal("cannot create a pipe for", engine->root_, errno);
  }
  return engine;
}

DeploymentEngine::DeploymentEngine(fs::path root, EngineOptions options)
    : root_(std::move(root)), options_(std::move(options)) {}

DeploymentEngine::~DeploymentEngine() {
  for (int fd : wake_pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

fs::path DeploymentEngine::DeploymentDir(const Deployment& d) const {
  return root_ / d.deployment_group_id / d.deployment_id;
}
fs::path DeploymentEngine::InstructionsDir() const { return root_ / "deployment-instructions"; }

void DeploymentEngine::Stop() {
  absl::MutexLock lock(&mu_);
  stop_requested_ = true;
  char byte = 1;
  if (::write(wake_pipe_[1], &byte, 1) < 0) {
    // The pipe is full: a wake-up is already pending.
  }
}

bool DeploymentEngine::StopRequested() {
  absl::MutexLock lock(&mu_);
  return stop_requested_;
}

EventResult DeploymentEngine::RunEvent(const Deployment& d, std::string_view event,
                                       const OutputCallback& output) {
  {
    absl::MutexLock lock(&mu_);
    stop_requested_ = false;
  }
  return RunOneEvent(d, std::string(event), output);
}

std::vector<EventResult> DeploymentEngine::Run(const Deployment& d, const OutputCallback& output) {
  {
    absl::MutexLock lock(&mu_);
    stop_requested_ = false;
  }
  std::vector<EventResult> results;
  bool skip = false;
  for (const std::string& event : DefaultLifecycleEvents()) {
    if (skip || StopRequested()) {
      EventResult r;
      r.event = event;
      r.status = EventStatus::kSkipped;
      results.push_back(std::move(r));
      continue;
    }
    EventResult r = RunOneEvent(d, event, output);
    if (r.status == EventStatus::kFailed) {
      if (d.ignore_application_stop_failures && IsOldRevisionEvent(event) && !StopRequested()) {
        r.failure_ignored = true;  // §4.5 ignoreApplicationStopFailures
      } else {
        skip = true;
      }
    }
    results.push_back(std::move(r));
  }
  return results;
}

EventResult DeploymentEngine::RunOneEvent(const Deployment& d, const std::string& event,
                                             const OutputCallback& output) {
  const auto start = SteadyClock::now();
  EventResult r;
  r.event = event;
  auto fail = [&](const absl::Status& s) {
    r.status = EventStatus::kFailed;
    r.error_code = kUnknownErrorCode;
    r.message = std::string(s.message());
  };
  auto finish = [&]() {
    r.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start)
                        .count();
    return r;
  };
  if (!SafeComponent(d.deployment_id) || !SafeComponent(d.deployment_group_id)) {
    fail(absl::InvalidArgumentError(
        StrCat("invalid deployment id '", d.deployment_id, "' or deployment group id '",
               d.deployment_group_id, "': they must be non-empty file names without '/'")));
    return finish();
  }
  std::error_code ec;
  fs::create_directories(DeploymentDir(d), ec);
  fs::create_directories(root_ / "ongoing-deployment", ec);
  if (ec) {
    fail(Internal("cannot create", DeploymentDir(d), ec.value()));
    return finish();
  }
  fs::path ongoing = root_ / "ongoing-deployment" / d.deployment_id;
  if (absl::Status s = WriteFileAtomic(
          ongoing, nlohmann::json{{"event", event}, {"deployment_group_id", d.deployment_group_id}}
                       .dump());
      !s.ok()) {
    fail(s);
    return finish();
  }
  absl::Status s;
  if (event == "DownloadBundle") {
    s = DownloadBundle(d);
  } else if (event == "Install") {
    s = Install(d);
  } else if (event == "BlockTraffic" || event == "AllowTraffic" || event == "Start" ||
             event == "End") {
    // No load balancer: nothing to do.
  } else {
    RunHooks(d, event, output, r);
  }
  if (!s.ok()) fail(s);
  fs::remove(ongoing, ec);
  return finish();
}

// ---- DownloadBundle (§4.8) ----

absl::Status DeploymentEngine::CleanupOldArchives(const Deployment& d) {
  std::error_code ec;
  std::vector<fs::path> others;
  for (const auto& e : fs::directory_iterator(root_ / d.deployment_group_id, ec)) {
    if (e.path().filename() != d.deployment_id) others.push_back(e.path());
  }
  if (ec) return Internal("cannot list", root_ / d.deployment_group_id, ec.value());
  long extra = static_cast<long>(others.size()) - options_.max_revisions + 1;
  if (extra <= 0) return absl::OkStatus();
  std::optional<std::string> last = ReadFile(
      InstructionsDir() / StrCat(d.deployment_group_id, "_last_successful_install"));
  if (last) {
    fs::path keep = fs::path(Chomp(*last)).lexically_normal();
    others.erase(std::remove(others.begin(), others.end(), keep), others.end());
  }
  std::vector<std::pair<fs::file_time_type, fs::path>> by_age;
  for (const fs::path& p : others) by_age.emplace_back(fs::last_write_time(p, ec), p);
  std::sort(by_age.begin(), by_age.end());
  for (long i = 0; i < extra && i < static_cast<long>(by_age.size()); ++i) {
    fs::remove_all(by_age[i].second, ec);
    if (ec) return Internal("cannot remove old deployment", by_age[i].second, ec.value());
  }
  return absl::OkStatus();
}

absl::Status DeploymentEngine::DownloadBundle(const Deployment& d) {
  KILN_RETURN_IF_ERROR(CleanupOldArchives(d));
  const fs::path dir = DeploymentDir(d);
  const fs::path archive = dir / "deployment-archive";
  std::error_code ec;
  fs::file_status st = fs::status(d.revision, ec);
  if (!fs::exists(st)) {
    return absl::FailedPreconditionError(
        StrCat("the revision ", d.revision.string(), " does not exist on this host"));
  }
  fs::remove_all(archive, ec);
  if (fs::is_directory(st)) {
    fs::copy(d.revision, archive, fs::copy_options::recursive | fs::copy_options::copy_symlinks,
             ec);
    if (ec) return Internal(StrCat("cannot copy ", d.revision.string(), " to"), archive, ec.value());
  } else {
    fs::path bundle = dir / "bundle.tar";
    fs::remove(bundle, ec);
    fs::create_symlink(fs::absolute(d.revision), bundle, ec);
    if (ec) return Internal("cannot link the revision as", bundle, ec.value());
    fs::create_directories(archive, ec);
    if (ec) return Internal("cannot create", archive, ec.value());
    KILN_RETURN_IF_ERROR(Extract(bundle, archive));
    KILN_RETURN_IF_ERROR(UnwrapSingleDirectory(dir));
  }
  if (!FindAppSpec(archive, d.appspec_filename)) {
    return absl::FailedPreconditionError(
        StrCat("appspec file is not found: no ",
               d.appspec_filename.empty() ? "appspec.yml or appspec.yaml" : d.appspec_filename,
               " at the root of the revision ", d.revision.string()));
  }
  fs::create_directories(InstructionsDir(), ec);
  if (ec) return Internal("cannot create", InstructionsDir(), ec.value());
  return WriteFileAtomic(InstructionsDir() / StrCat(d.deployment_group_id, "_most_recent_install"),
                         dir.string());
}

// ---- Install (§4.8) ----

absl::Status DeploymentEngine::Install(const Deployment& d) {
  const fs::path dir = DeploymentDir(d);
  const fs::path archive = dir / "deployment-archive";
  const fs::path instructions = InstructionsDir();
  std::error_code ec;
  fs::create_directories(instructions, ec);
  if (ec) return Internal("cannot create", instructions, ec.value());
  std::optional<fs::path> appspec_path = FindAppSpec(archive, d.appspec_filename);
  std::optional<std::string> text = appspec_path ? ReadFile(*appspec_path) : std::nullopt;
  if (!text) {
    return absl::FailedPreconditionError(
        StrCat("no appspec in ", archive.string(), "; run DownloadBundle first"));
  }
  AppSpecParseOptions parse_options;
  parse_options.platform_os = options_.platform_os;
  parse_options.lifecycle_events = d.lifecycle_events;
  KILN_ASSIGN_OR_RETURN(AppSpec spec, ParseAppSpec(*text, appspec_path->filename().string(),
                                                   parse_options));
  for (const std::string& w : spec.warnings) KILN_LOG(WARNING) << d.deployment_id << ": " << w;
  const fs::path cleanup = instructions / StrCat(d.deployment_group_id, "-cleanup");
  KILN_RETURN_IF_ERROR(RemovePreviousInstall(cleanup));
  // §4.2: the appspec's value, then the deployment's (upper-cased), then DISALLOW.
  std::string behavior = spec.file_exists_behavior.value_or(
      d.file_exists_behavior.empty() ? "DISALLOW" : absl::AsciiStrToUpper(d.file_exists_behavior));
  KILN_ASSIGN_OR_RETURN(InstallInstructions plan, GenerateInstructions(spec, archive, behavior));
  KILN_RETURN_IF_ERROR(WriteFileAtomic(
      instructions / StrCat(d.deployment_group_id, "-install.json"), plan.ToJson().dump()));
  KILN_RETURN_IF_ERROR(ExecuteInstructions(plan, cleanup));
  // §4.6: written at the end of Install, not at the end of the deployment (agent parity).
  return WriteFileAtomic(instructions / StrCat(d.deployment_group_id, "_last_successful_install"),
                         dir.string());
}

// ---- Hooks (§4.6, §4.7) ----

void DeploymentEngine::RunHooks(const Deployment& d, const std::string& event,
                                const OutputCallback& output, EventResult& r) {
  auto fail = [&](int code, std::string message) {
    r.status = EventStatus::kFailed;
    r.error_code = code;
    r.message = std::move(message);
  };
  const fs::path dir = DeploymentDir(d);
  fs::path hook_root = dir;
  std::error_code ec;
  if (IsOldRevisionEvent(event) && !fs::exists(dir / "deployment-archive", ec)) {
    std::optional<std::string> last = ReadFile(
        InstructionsDir() / StrCat(d.deployment_group_id, "_last_successful_install"));
    if (!last) return;  // first deployment: no-op (§4.6)
    hook_root = Chomp(*last);
  }
  const fs::path archive = hook_root / "deployment-archive";
  std::optional<fs::path> appspec_path = FindAppSpec(archive, d.appspec_filename);
  std::optional<std::string> text = appspec_path ? ReadFile(*appspec_path) : std::nullopt;
  if (!text) {
    return fail(kUnknownErrorCode,
                StrCat("No such file or directory - ",
                       (archive / (d.appspec_filename.empty() ? "appspec.yml" : d.appspec_filename))
                           .string()));
  }
  AppSpecParseOptions parse_options;
  parse_options.platform_os = options_.platform_os;
  absl::StatusOr<AppSpec> spec =
      ParseAppSpec(*text, appspec_path->filename().string(), parse_options);
  if (!spec.ok()) return fail(kUnknownErrorCode, std::string(spec.status().message()));
  auto hooks = spec->hooks.find(event);
  if (hooks == spec->hooks.end() || hooks->second.empty()) return;

  fs::create_directories(dir / "logs", ec);
  ScriptLog log(dir / "logs" / "scripts.log", event, output);
  absl::Cleanup keep_tail = [&] { r.log = log.tail(); };
  log.Line(StrCat("LifecycleEvent - ", event));

  std::vector<std::pair<std::string, std::string>> vars = {
      {"LIFECYCLE_EVENT", event},
      {"DEPLOYMENT_ID", d.deployment_id},
      {"APPLICATION_NAME", d.application_name},
      {"DEPLOYMENT_GROUP_NAME", d.deployment_group_name},
      {"DEPLOYMENT_GROUP_ID", d.deployment_group_id}};
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    if (std::none_of(vars.begin(), vars.end(), [&](const auto& v) { return v.first == key; })) {
      env.emplace_back(kv);
    }
  }
  for (const auto& [k, v] : vars) env.push_back(StrCat(k, "=", v));

  for (const AppSpecScript& script : hooks->second) {
    std::string path = StrCat(archive.string(), "/", script.location);
    r.script_name = script.location;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return fail(kScriptMissingCode,
                  StrCat("Script does not exist at specified location: ",
                         fs::path(path).lexically_normal().string()));
    }
    if (::access(path.c_str(), X_OK) != 0) {
      KILN_LOG(WARNING) << "Script at specified location: " << script.location
                        << " is not executable.  Trying to make it executable.";
      if (::chmod(path.c_str(), (st.st_mode & 07777) | 0111) != 0) {
        return fail(kScriptExecutabilityCode,
                    StrCat("Unable to set script at specified location: ", script.location,
                           " as executable"));
      }
    }
    log.Line(StrCat("Script - ", script.location));
    RunScript(Hook{&script, path, env, &log}, r);
    if (r.status == EventStatus::kFailed) return;
  }
  r.script_name.clear();
}

void DeploymentEngine::RunScript(const Hook& hook, EventResult& r) {
  const std::string& loc = hook.script->location;
  auto fail = [&](int code, std::string message) {
    r.status = EventStatus::kFailed;
    r.error_code = code;
    r.message = std::move(message);
  };
  std::vector<std::string> argv;
  if (hook.script->sudo) argv.push_back("sudo");
  if (hook.script->runas) argv.insert(argv.end(), {"su", *hook.script->runas, "-c"});
  argv.push_back(hook.path);
  std::optional<std::string> prog = FindInPath(argv[0]);
  if (!prog) {
    return fail(kUnknownErrorCode,
                StrCat("Script at specified location: ", loc,
                       " failed with error Errno::ENOENT with message No such file or directory - ",
                       argv[0]));
  }
  std::vector<char*> cargv, cenv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<std::string> env = hook.env;
  for (std::string& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  int out[2], err[2], exec_err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail(kUnknownErrorCode, std::strerror(errno));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return fail(kUnknownErrorCode, std::strerror(errno));
  }
  if (::pipe2(exec_err, O_CLOEXEC) != 0) {
    for (int fd : {out[0], out[1], err[0], err[1]}) ::close(fd);
    return fail(kUnknownErrorCode, std::strerror(errno));
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::setpgid(0, 0);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    // Inherit nothing else from this process (the agent's sockets and files); errors ignored.
    ::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(prog->c_str(), cargv.data(), cenv.data());
    int e = errno;
    if (::write(exec_err[1], &e, sizeof(e)) < 0) _exit(127);
    _exit(127);
  }
  int fork_errno = errno;
  for (int fd : {out[1], err[1], exec_err[1], devnull}) ::close(fd);
  if (pid < 0) {
    for (int fd : {out[0], err[0], exec_err[0]}) ::close(fd);
    return fail(kUnknownErrorCode, StrCat("Script at specified location: ", loc,
                                          " failed with error Errno::", ErrnoName(fork_errno),
                                          " with message ", std::strerror(fork_errno)));
  }
  ::setpgid(pid, pid);  // also in the parent, so the group exists before any kill
  int exec_errno = 0;
  ssize_t n = ::read(exec_err[0], &exec_errno, sizeof(exec_errno));
  ::close(exec_err[0]);
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    ::waitpid(pid, nullptr, 0);
    ::close(out[0]);
    ::close(err[0]);
    return fail(kUnknownErrorCode,
                StrCat("Script at specified location: ", loc, " failed with error Errno::",
                       ErrnoName(exec_errno), " with message ", std::strerror(exec_errno), " - ",
                       argv[0]));
  }

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  int fds[2] = {out[0], err[0]};
  LineSplitter splitters[2];
  const char* prefixes[2] = {"[stdout]", "[stderr]"};
  bool exited = false;
  int wstatus = 0;
  auto reap = [&]() {
    if (!exited && ::waitpid(pid, &wstatus, WNOHANG) == pid) exited = true;
  };
  auto emit_for = [&](int i) {
    return [&, i](const std::string& line) { hook.log->Line(StrCat(prefixes[i], line)); };
  };
  auto close_stream = [&](int i) {
    splitters[i].Flush(emit_for(i));
    ::close(fds[i]);
    fds[i] = -1;
  };
  // Reads output and watches the child until `until`; returns early when the child has exited
  // and (unless `until_exit`) both streams are closed, or on Stop() when `watch_stop`.
  auto pump = [&](SteadyClock::time_point until, bool until_exit, bool watch_stop) {
    char buf[16 * 1024];
    while (true) {
      if (pidfd < 0) reap();
      if (exited && (until_exit || (fds[0] < 0 && fds[1] < 0))) return;
      if (watch_stop && StopRequested()) return;
      auto now = SteadyClock::now();
      if (now >= until) return;
      long long wait_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
      if (pidfd < 0 && !exited) wait_ms = std::min(wait_ms, 50LL);  // no pidfd: poll waitpid
      std::vector<pollfd> pfds;
      for (int i = 0; i < 2; ++i) {
        if (fds[i] >= 0) pfds.push_back({fds[i], POLLIN, 0});
      }
      if (pidfd >= 0 && !exited) pfds.push_back({pidfd, POLLIN, 0});
      pfds.push_back({wake_pipe_[0], POLLIN, 0});
      int ready = ::poll(pfds.data(), pfds.size(), static_cast<int>(std::min(wait_ms, 60000LL)));
      if (ready < 0 && errno != EINTR) return;
      for (const pollfd& p : pfds) {
        if (p.revents == 0) continue;
        if (p.fd == wake_pipe_[0]) {
          while (::read(wake_pipe_[0], buf, sizeof(buf)) > 0) {
          }
        } else if (p.fd == pidfd) {
          reap();
        } else {
          int i = p.fd == fds[0] ? 0 : 1;
          ssize_t got = ::read(fds[i], buf, sizeof(buf));
          if (got > 0) {
            splitters[i].Feed(std::string_view(buf, got), emit_for(i));
          } else if (got == 0 || errno != EINTR) {
            close_stream(i);
          }
        }
      }
    }
  };

  const auto deadline = SteadyClock::now() + std::chrono::seconds(hook.script->timeout_seconds);
  pump(deadline, /*until_exit=*/false, /*watch_stop=*/true);
  const bool stopped = StopRequested();
  bool killed = false;
  if (!exited || stopped) {
    killed = true;
    ::kill(-pid, SIGTERM);  // the whole process group (§4.7)
    pump(SteadyClock::now() + absl::ToChronoMilliseconds(options_.kill_grace), /*until_exit=*/true,
         /*watch_stop=*/false);
    if (!exited) {
      ::kill(-pid, SIGKILL);
      if (::waitpid(pid, &wstatus, 0) == pid) exited = true;
    }
  }
  const bool stdout_open = fds[0] >= 0, stderr_open = fds[1] >= 0;
  for (int i = 0; i < 2; ++i) {
    if (fds[i] >= 0) close_stream(i);
  }
  if (pidfd >= 0) ::close(pidfd);

  const std::string prefix = StrCat("Script at specified location: ", loc);
  if (stopped) return fail(kUnknownErrorCode, StrCat(prefix, " was stopped"));
  if (killed) {
    return fail(kScriptTimedOutCode, StrCat(prefix, " failed to complete in ",
                                            hook.script->timeout_seconds, " seconds"));
  }
  if (stdout_open || stderr_open) {
    return fail(kOutputsLeftOpenCode,
                StrCat(prefix, " failed to close ", stdout_open ? "STDOUT" : "STDERR"));
  }
  int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
                                : (WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : 1);
  if (code != 0) {
    return fail(kScriptFailedCode,
                hook.script->runas
                    ? StrCat(prefix, " run as user ", *hook.script->runas,
                             " failed with exit code ", code)
                    : StrCat(prefix, " failed with exit code ", code));
  }
}

// ---- Restart (§4.7) ----

std::vector<RecoveredEvent> DeploymentEngine::RecoverAfterRestart() {
  std::vector<RecoveredEvent> out;
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(root_ / "ongoing-deployment", ec)) {
    if (e.is_regular_file(ec)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    auto mtime = fs::last_write_time(file, ec);
    std::optional<std::string> text = ReadFile(file);
    fs::remove(file, ec);
    if (!text || now - mtime > std::chrono::hours(24)) continue;  // stale after 24 h
    nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    RecoveredEvent ev;
    ev.deployment_id = file.filename().string();
    if (j.is_object()) {
      ev.deployment_group_id = j.value("deployment_group_id", "");
      ev.result.event = j.value("event", "");
    }
    ev.result.status = EventStatus::kFailed;
    ev.result.error_code = kFailedAfterRestartCode;
    ev.result.message = kRestartFailureMessage;
    out.push_back(std::move(ev));
  }
  return out;
}

}  // namespace kiln::deploy
