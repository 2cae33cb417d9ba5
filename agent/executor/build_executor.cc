#include "agent/executor/build_executor.h"

#include <pwd.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/artifacts/artifact_files.h"
#include "agent/artifacts/zip_writer.h"
#include "agent/executor/container.h"
#include "agent/executor/git_checkout.h"
#include "agent/executor/on_failure.h"
#include "agent/executor/process_tree.h"
#include "agent/reports/junit_report.h"
#include "common/ids.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace kiln::agent {

namespace fs = std::filesystem;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;
using kiln::v1::PhaseContext;
using kiln::v1::PhaseResult;

namespace {

constexpr size_t kMaxChunk = 64 * 1024;
constexpr size_t kMaxBuildspecBytes = 1 << 20;
constexpr char kTimedOutMessage[] = "Build has timed out. ";
constexpr char kAgentError[] = "AGENT_ERROR";
constexpr char kYamlError[] = "YAML_FILE_ERROR";
constexpr char kParamError[] = "Decrypted Variables Error";

PhaseContext MakeContext(std::string_view code, std::string_view message) {
  PhaseContext c;
  c.set_status_code(std::string(code));
  c.set_message(std::string(message));
  return c;
}

std::string SanitizeId(std::string_view id) {
  std::string out(id);
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      c = '_';
  }
  return out;
}

bool IsIdentifier(std::string_view s) {
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::optional<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string data(max_bytes + 1, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

std::string PhaseName(BuildPhaseType::Value phase) {
  const std::string& name = BuildPhaseType::Value_Name(phase);
  return name.empty() ? absl::StrCat("phase ", static_cast<int>(phase)) : name;
}

// One env.secrets-manager entry: NAME -> secret-id[:json-key[:version-stage[:version-id]]] (an
// ARN secret-id "arn:aws:secretsmanager:<region>:<account>:secret:<name>" names <name>).
struct SecretRef {
  std::string variable, secret_id, parameter, json_key, stage, version_id;

  // The value, or FailedPrecondition with a message for the phase context.
  absl::StatusOr<std::string> Resolve(const std::map<std::string, std::string>& params) const {
    if ((!stage.empty() && stage != "AWSCURRENT") || !version_id.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "secret ", secret_id, ": Kiln's parameter store keeps the current version only; use no "
          "version-stage (or AWSCURRENT) and no version-id"));
    }
    auto it = params.find(parameter);
    if (it == params.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("ResourceNotFoundException: secret does not exist: ", secret_id,
                       " (parameter ", parameter, ")"));
    }
    if (json_key.empty()) return it->second;
    const nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_object()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "secret ", secret_id, " is not a JSON object, so json-key ", json_key, " cannot be read"));
    }
    auto k = j.find(json_key);
    if (k == j.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("secret ", secret_id, " has no JSON key ", json_key));
    }
    return k->is_string() ? k->get<std::string>() : k->dump();
  }
};

SecretRef ParseSecretRef(const std::string& variable, const std::string& ref) {
  std::vector<std::string> parts = absl::StrSplit(ref, ':');
  SecretRef r;
  r.variable = variable;
  size_t i = 0;
  if (absl::StartsWith(ref, "arn:") && parts.size() >= 7) {
    r.secret_id = absl::StrJoin(parts.begin(), parts.begin() + 7, ":");
    r.parameter = parts[6];
    i = 7;
  } else {
    r.secret_id = r.parameter = parts[0];
    i = 1;
  }
  // Secrets Manager names such as "prod/db" map to the parameter "/prod/db".
  if (r.parameter.find('/') != std::string::npos && r.parameter[0] != '/') {
    r.parameter = "/" + r.parameter;
  }
  if (parts.size() > i) r.json_key = parts[i];
  if (parts.size() > i + 1) r.stage = parts[i + 1];
  if (parts.size() > i + 2) r.version_id = parts[i + 2];
  return r;
}

}  // namespace

struct BuildExecutor::Outcome {
  BuildStatus::Value status = BuildStatus::SUCCEEDED;
  std::vector<PhaseContext> contexts;
  bool skip_to_finalizing = false;
  bool continue_on_failure = false;

  static Outcome Of(BuildStatus::Value status, std::string_view code, std::string_view message) {
    return Outcome{status, {MakeContext(code, message)}, false, false};
  }
};

struct BuildExecutor::CommandRun {
  enum Kind { kDone, kInterrupted, kFault };
  Kind kind = kDone;
  int exit_status = 0;
  std::string error;  // kFault
};

absl::StatusOr<std::unique_ptr<BuildExecutor>> BuildExecutor::Create(const kiln::v1::BuildJob& job,
                                                                     Options options) {
  const std::string id = SanitizeId(job.build_id());
  if (id.find_first_not_of('.') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid build id '", job.build_id(), "'"));
  }
  if (job.source().location().empty()) {
    return absl::InvalidArgumentError("build job has no source location");
  }
  if (job.timeout_millis() < 0) return absl::InvalidArgumentError("negative build timeout");
  if (options.work_dir.empty()) return absl::InvalidArgumentError("empty work_dir");
  if (options.clock == nullptr) return absl::InvalidArgumentError("null clock");
  std::error_code ec;
  const fs::path root =
      fs::absolute(fs::path(options.work_dir) / "builds" / id, ec).lexically_normal();
  if (!ec) fs::remove_all(root, ec);  // a leftover of the same build (agent restart)
  if (!ec) fs::create_directories(root / "src", ec);
  if (!ec) fs::create_directories(root / "tmp", ec);
  // The workspace holds decrypted parameter values (tmp/env, the shell's exported state): owner only.
  // builds/ is traversable (not listable) so that a run-as user can reach its own workspace.
  if (!ec) {
    fs::permissions(root.parent_path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec,
                    fs::perm_options::replace, ec);
  }
  if (!ec) fs::permissions(root, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("creating workspace ", root.string(), ": ", ec.message()));
  }
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  return std::unique_ptr<BuildExecutor>(
      new BuildExecutor(job, std::move(options), root.string(), wake_fd));
}

BuildExecutor::BuildExecutor(const kiln::v1::BuildJob& job, Options options, std::string root,
                             int wake_fd)
    : job_(job),
      options_(std::move(options)),
      root_(std::move(root)),
      src_dir_(root_ + "/src"),
      tmp_dir_(root_ + "/tmp"),
      nonce_(common::RandomHex(16)),
      deadline_(job.timeout_millis() > 0
                    ? options_.clock->Now() + absl::Milliseconds(job.timeout_millis())
                    : absl::InfiniteFuture()),
      wake_fd_(wake_fd),
      container_(job.environment().image().empty()
                     ? ""
                     : absl::StrCat("kiln-", SanitizeId(job.build_id()), "-", nonce_.substr(0, 8))) {}

BuildExecutor::~BuildExecutor() {
  DiscardShell();
  RemoveBuildContainer();
  close(wake_fd_);
  std::error_code ec;
  fs::remove_all(root_, ec);
}

void BuildExecutor::Stop(BuildStatus::Value status, std::string reason) {
  absl::MutexLock lock(&mu_);
  StopLocked(status, std::move(reason));
}

void BuildExecutor::StopLocked(BuildStatus::Value status, std::string reason) {
  if (stop_status_ != BuildStatus::UNKNOWN) return;
  if (status != BuildStatus::STOPPED && status != BuildStatus::TIMED_OUT)
    status = BuildStatus::FAULT;
  stop_status_ = status;
  stop_reason_ = std::move(reason);
  if (shell_ != nullptr) shell_->Kill();
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));  // wakes a running Run(); stays readable
}

bool BuildExecutor::CheckStopped() {
  absl::MutexLock lock(&mu_);
  if (stop_status_ == BuildStatus::UNKNOWN && options_.clock->Now() >= deadline_) {
    StopLocked(BuildStatus::TIMED_OUT, kTimedOutMessage);
  }
  return stop_status_ != BuildStatus::UNKNOWN;
}

BuildExecutor::Outcome BuildExecutor::StopOutcome() {
  absl::MutexLock lock(&mu_);
  switch (stop_status_) {
    case BuildStatus::TIMED_OUT:
      return Outcome::Of(stop_status_, "BUILD_TIMED_OUT",
                         stop_reason_.empty() ? kTimedOutMessage : stop_reason_);
    case BuildStatus::STOPPED:
      return Outcome::Of(stop_status_, "BUILD_STOPPED",
                         stop_reason_.empty() ? "Build stopped" : stop_reason_);
    default:
      return Outcome::Of(BuildStatus::FAULT, kAgentError,
                         stop_reason_.empty() ? "Build aborted" : stop_reason_);
  }
}

PhaseResult BuildExecutor::RunPhase(BuildPhaseType::Value phase, bool build_succeeding) {
  PhaseResult result;
  result.set_build_id(job_.build_id());
  result.set_phase(phase);
  const std::string name = PhaseName(phase);
  Log(absl::StrCat("Entering phase ", name));
  Outcome outcome;
  if (phase != BuildPhaseType::FINALIZING && CheckStopped()) {
    outcome = StopOutcome();
  } else {
    switch (phase) {
      case BuildPhaseType::PROVISIONING:
        break;  // the workspace was made by Create()
      case BuildPhaseType::DOWNLOAD_SOURCE:
        outcome = DownloadSource(&result);
        break;
      case BuildPhaseType::INSTALL:
        RestoreCache();
        outcome = RunCommandPhase(phase, build_succeeding);
        break;
      case BuildPhaseType::PRE_BUILD:
      case BuildPhaseType::BUILD:
      case BuildPhaseType::POST_BUILD:
        outcome = RunCommandPhase(phase, build_succeeding);
        if (phase == BuildPhaseType::POST_BUILD &&
            (outcome.status == BuildStatus::SUCCEEDED || outcome.status == BuildStatus::FAILED)) {
          CaptureExportedVariables(&result);
        }
        break;
      case BuildPhaseType::UPLOAD_ARTIFACTS:
        outcome = UploadArtifacts(&result);
        break;
      case BuildPhaseType::FINALIZING:
        outcome = Finalize(&result, build_succeeding);
        break;
      default:
        outcome = Outcome::Of(BuildStatus::FAULT, kAgentError,
                              absl::StrCat("phase ", name, " is not run by the agent"));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (shell_ != nullptr) shell_->ReapOrphans();
  }
  FlushMasker();
  result.set_status(outcome.status);
  result.set_skip_to_finalizing(outcome.skip_to_finalizing);
  result.set_continue_on_failure(outcome.continue_on_failure);
  for (PhaseContext& c : outcome.contexts) {
    c.set_message(masker_.MaskAll(c.message()));
    *result.add_contexts() = c;
  }
  Log(absl::StrCat("Phase complete: ", name, " State: ", BuildStatus::Value_Name(outcome.status)));
  if (outcome.contexts.empty()) outcome.contexts.emplace_back();
  for (const PhaseContext& c : outcome.contexts) {
    Log(absl::StrCat("Phase context status code: ", c.status_code(), " Message: ", c.message()));
  }
  return result;
}

BuildExecutor::Outcome BuildExecutor::DownloadSource(PhaseResult* result) {
  DiscardShell();
  spec_.reset();
  std::error_code ec;
  fs::remove_all(src_dir_, ec);
  for (const char* state : {"/env", "/cwd"}) fs::remove(tmp_dir_ + state, ec);
  if (!fs::create_directories(src_dir_, ec) || ec) {
    return Outcome::Of(BuildStatus::FAULT, kAgentError,
                       absl::StrCat("creating ", src_dir_, ": ", ec.message()));
  }

  // Source (§1.12 CODEBUILD_SOURCE_VERSION: the version that was asked for).
  const kiln::v1::ProjectSource& source = job_.source();
  const std::string requested =
      job_.source_version().empty() ? source.branch() : job_.source_version();
  // source.credentials_parameter: "username:password" for an HTTPS location (and for the build's
  // git commands with env.git-credential-helper).
  credentials_.clear();
  if (!source.credentials_parameter().empty()) {
    if (!options_.resolve_parameters) {
      return Outcome::Of(BuildStatus::FAULT, kParamError, "the agent has no parameter resolver");
    }
    absl::StatusOr<kiln::v1::GetBuildParametersResponse> resolved =
        options_.resolve_parameters({source.credentials_parameter()});
    if (!resolved.ok())
      return Outcome::Of(BuildStatus::FAULT, kParamError, resolved.status().ToString());
    if (resolved->parameters_size() != 1) {
      return Outcome::Of(BuildStatus::FAILED, kParamError,
                         absl::StrCat("parameter does not exist: ", source.credentials_parameter()));
    }
    credentials_ = resolved->parameters(0).value();
    masker_.AddSecret(credentials_);
    const size_t colon = credentials_.find(':');
    if (colon != std::string::npos && colon + 1 < credentials_.size()) {
      masker_.AddSecret(credentials_.substr(colon + 1));
    }
  }
  const int64_t pr = job_.webhook().pull_request_number();
  absl::StatusOr<std::string> commit = CloneAndCheckout(
      source.location(), requested, src_dir_, [this] { return CheckStopped(); }, credentials_,
      pr > 0 ? absl::StrCat("refs/pull/", pr, "/head") : "");
  if (CheckStopped()) return StopOutcome();
  if (!commit.ok())
    return Outcome::Of(BuildStatus::FAILED, "CLIENT_ERROR", std::string(commit.status().message()));
  result->set_resolved_source_version(*commit);
  Log(absl::StrCat("Checked out source version ", requested.empty() ? "HEAD" : requested,
                   " at commit ", *commit));

  // Buildspec.
  const std::string rel = source.buildspec().empty() ? "buildspec.yml" : source.buildspec();
  const fs::path rel_path(rel);
  if (rel_path.is_absolute() || std::any_of(rel_path.begin(), rel_path.end(),
                                            [](const fs::path& part) { return part == ".."; })) {
    return Outcome::Of(BuildStatus::FAILED, kYamlError,
                       absl::StrCat("buildspec path '", rel,
                                    "' must be relative to the source root and stay inside it"));
  }
  const std::string path = (fs::path(src_dir_) / rel_path).string();
  Log(absl::StrCat("YAML location is ", path));
  const std::optional<std::string> text =
      fs::is_regular_file(path, ec) ? ReadFile(path, kMaxBuildspecBytes) : std::nullopt;
  if (!text.has_value()) {
    return Outcome::Of(BuildStatus::FAILED, kYamlError,
                       absl::StrCat("stat ", path, ": no such file or directory"));
  }
  if (text->size() > kMaxBuildspecBytes) {
    return Outcome::Of(BuildStatus::FAILED, kYamlError,
                       absl::StrCat(rel, ": file is larger than 1 MiB"));
  }
  absl::StatusOr<common::Buildspec> spec = common::ParseBuildspec(*text, rel);
  if (!spec.ok())
    return Outcome::Of(BuildStatus::FAILED, kYamlError, std::string(spec.status().message()));
  for (const std::string& warning : spec->warnings) Log(warning);
  // run-as (§1.3): on the host the users must exist and the agent must be able to become them;
  // in a build container, docker exec -u checks the image's users when the phase starts.
  for (const auto* p : {&spec->install, &spec->pre_build, &spec->build, &spec->post_build}) {
    const std::string& user = p->has_value() && !(*p)->run_as.empty() ? (*p)->run_as : spec->run_as;
    if (user.empty() || !container_.empty()) continue;
    const passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) {
      return Outcome::Of(BuildStatus::FAILED, kYamlError,
                         absl::StrCat(rel, ": run-as: user '", user,
                                      "' does not exist on this agent"));
    }
    if (geteuid() != 0 && pw->pw_uid != geteuid()) {
      return Outcome::Of(BuildStatus::FAILED, kYamlError,
                         absl::StrCat(rel, ": run-as: user '", user,
                                      "' needs the agent to run as root"));
    }
  }

  Outcome env = BuildEnvironment(*spec, requested, *commit);
  if (env.status != BuildStatus::SUCCEEDED) return env;
  shell_path_ = spec->shell == "/bin/sh" ? "/bin/sh" : "/bin/bash";
  spec_ = std::move(*spec);
  Log(absl::StrCat("Moving to directory ", src_dir_));
  return {};
}

// The environment, lowest precedence first (§1.14 item 2); resolves parameter-store names.
BuildExecutor::Outcome BuildExecutor::BuildEnvironment(const common::Buildspec& spec,
                                                       const std::string& requested,
                                                       const std::string& commit) {
  Log("Processing environment variables");
  std::map<std::string, std::string> env;
  // Host builds start from the agent's environment; container builds from the image's (docker
  // exec provides it).
  for (char** e = container_.empty() ? environ : nullptr; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string_view::npos && eq > 0)
      env[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  for (const auto& [name, value] : spec.variables) env[name] = value;
  std::vector<std::string> names;  // parameter names, distinct, in order
  auto add_name = [&names](const std::string& n) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  for (const auto& entry : spec.parameter_store) add_name(entry.second);
  std::vector<SecretRef> secrets;
  for (const auto& [name, ref] : spec.secrets_manager) {
    secrets.push_back(ParseSecretRef(name, ref));
    add_name(secrets.back().parameter);
  }
  for (const kiln::v1::EnvironmentVariable& v : job_.environment_variables()) {
    if (v.type() == kiln::v1::EnvironmentVariable::PARAMETER_STORE) add_name(v.value());
  }
  std::map<std::string, std::string> params;
  if (!names.empty()) {
    Log("Decrypting parameter store environment variables");
    if (!options_.resolve_parameters) {
      return Outcome::Of(BuildStatus::FAULT, kParamError, "the agent has no parameter resolver");
    }
    absl::StatusOr<kiln::v1::GetBuildParametersResponse> resolved =
        options_.resolve_parameters(names);
    if (!resolved.ok())
      return Outcome::Of(BuildStatus::FAULT, kParamError, resolved.status().ToString());
    for (const kiln::v1::ResolvedParameter& p : resolved->parameters()) {
      if (p.mask()) masker_.AddSecret(p.value());
      params[p.name()] = p.value();
    }
    for (const auto& [name, param] : spec.parameter_store) {
      if (!params.count(param)) {
        return Outcome::Of(BuildStatus::FAILED, kParamError,
                           absl::StrCat("parameter does not exist: ", param));
      }
    }
    for (const kiln::v1::EnvironmentVariable& v : job_.environment_variables()) {
      if (v.type() == kiln::v1::EnvironmentVariable::PARAMETER_STORE && !params.count(v.value())) {
        return Outcome::Of(BuildStatus::FAILED, kParamError,
                           absl::StrCat("parameter does not exist: ", v.value()));
      }
    }
  }
  for (const auto& [name, param] : spec.parameter_store) env[name] = params[param];
  // env.secrets-manager (§1.4) over the parameter store: secret-id names a parameter, json-key a
  // key of its JSON object value.
  for (const SecretRef& ref : secrets) {
    absl::StatusOr<std::string> value = ref.Resolve(params);
    if (!value.ok()) {
      return Outcome::Of(BuildStatus::FAILED, "Secrets Manager Error",
                         std::string(value.status().message()));
    }
    masker_.AddSecret(*value);
    env[ref.variable] = *std::move(value);
  }
  if (spec.git_credential_helper) {
    if (credentials_.empty()) {
      Log("Warning: env.git-credential-helper: the project has no source.credentials_parameter; "
          "git gets no credentials from Kiln");
    } else {
      // The build's git finds the project's credentials through this helper (git >= 2.31 reads
      // GIT_CONFIG_COUNT).
      const std::string helper = tmp_dir_ + "/git-credential-kiln";
      const size_t colon = credentials_.find(':');
      std::ofstream f(helper, std::ios::trunc);
      f << "#!/bin/sh\n[ \"$1\" = get ] || exit 0\ncat >/dev/null\nprintf 'username=%s\\npassword=%s\\n' "
        << ShellQuote(credentials_.substr(0, colon)) << " "
        << ShellQuote(colon == std::string::npos ? "" : credentials_.substr(colon + 1)) << "\n";
      f.close();
      fs::permissions(helper, fs::perms::owner_all, fs::perm_options::replace);
      env["GIT_CONFIG_COUNT"] = "1";
      env["GIT_CONFIG_KEY_0"] = "credential.helper";
      env["GIT_CONFIG_VALUE_0"] = helper;
      Log("Configured git to use the project's source credentials (env.git-credential-helper)");
    }
  }
  for (const kiln::v1::EnvironmentVariable& v : job_.environment_variables()) {
    env[v.name()] =
        v.type() == kiln::v1::EnvironmentVariable::PARAMETER_STORE ? params[v.value()] : v.value();
  }
  auto set = [&env](const std::string& suffix, const std::string& value) {
    env["CODEBUILD_" + suffix] = value;
    env["KILN_" + suffix] = value;
  };
  set("BUILD_ID", job_.build_id());
  set("BUILD_NUMBER", absl::StrCat(job_.build_number()));
  set("SRC_DIR", src_dir_);
  // A pull-request webhook build reports pr/<number> (§1.12); its commit is the PR head.
  set("SOURCE_VERSION", job_.webhook().pull_request_number() > 0
                            ? absl::StrCat("pr/", job_.webhook().pull_request_number())
                            : requested);
  set("RESOLVED_SOURCE_VERSION", commit);
  set("START_TIME", absl::StrCat(job_.start_time_unix_millis()));
  set("INITIATOR", job_.initiator());
  set("SOURCE_REPO_URL", job_.source().location());
  set("BUILD_SUCCEEDING", "1");
  // §1.12 variables that have a Kiln meaning: the ARN is Kiln's own namespace (no AWS account), the
  // image is the build container's (or "kiln/host" for builds on the agent host), and the log path
  // is the build id `kiln build logs` takes.
  set("BUILD_ARN", absl::StrCat("arn:kiln:codebuild:local:000000000000:build/", job_.build_id()));
  set("BUILD_IMAGE", job_.environment().image().empty() ? "kiln/host" : job_.environment().image());
  set("LOG_PATH", job_.build_id());
  if (job_.has_webhook()) {
    const kiln::v1::WebhookTrigger& w = job_.webhook();
    for (const auto& [suffix, value] : {std::pair{"EVENT", w.event()},
                                        {"HEAD_REF", w.head_ref()},
                                        {"BASE_REF", w.base_ref()},
                                        {"PREV_COMMIT", w.prev_commit()},
                                        {"ACTOR_ACCOUNT_ID", w.actor_account_id()},
                                        {"TRIGGER", w.trigger()}}) {
      if (!value.empty()) set(absl::StrCat("WEBHOOK_", suffix), value);
    }
    if (!w.delivery_id().empty()) env["KILN_WEBHOOK_DELIVERY_ID"] = w.delivery_id();
  }
  initial_env_.clear();
  for (const auto& [name, value] : env) {
    if (!name.empty() && name.find_first_of(std::string("=\0", 2)) == std::string::npos) {
      initial_env_.push_back(absl::StrCat(name, "=", value));
    }
  }
  return {};
}

BuildExecutor::Outcome BuildExecutor::RunCommandPhase(BuildPhaseType::Value phase,
                                                      bool build_succeeding) {
  if (!spec_.has_value()) {
    return Outcome::Of(
        BuildStatus::FAULT, kAgentError,
        absl::StrCat(PhaseName(phase), " asked for before DOWNLOAD_SOURCE succeeded"));
  }
  const std::optional<common::BuildspecPhase>& p =
      phase == BuildPhaseType::INSTALL     ? spec_->install
      : phase == BuildPhaseType::PRE_BUILD ? spec_->pre_build
      : phase == BuildPhaseType::BUILD     ? spec_->build
                                           : spec_->post_build;
  if (phase == BuildPhaseType::INSTALL) {  // §1.6 runtime-versions
    Log(p.has_value() && !p->runtime_versions.empty()
            ? "Skipping install of runtimes. Runtime version selection is not supported by this "
              "build image."
            : "No runtime version selected in buildspec.");
  }
  if (!p.has_value() || (p->commands.empty() && p->finally.empty())) return {};
  // run-as (§1.3): the phase's user, else the buildspec's. A different user than the running
  // shell's means a new shell, restored from the saved state (exported variables and cwd).
  const std::string user = !p->run_as.empty() ? p->run_as : spec_->run_as;
  if (user != phase_user_) {
    DiscardShell();
    phase_user_ = user;
  }
  absl::StatusOr<OnFailurePolicy> policy = ParseOnFailure(p->on_failure);
  if (!policy.ok()) {
    Log(absl::StrCat("Warning: ", policy.status().message(), "; using the default transitions"));
    policy = OnFailurePolicy();
  }
  succeeding_ = build_succeeding;
  if (spec_->version != "0.1") {  // 0.1 shells get it in their environment
    const std::string flag = build_succeeding ? "1" : "0";
    const CommandRun r = RunCommand(
        absl::StrCat("export CODEBUILD_BUILD_SUCCEEDING=", flag, " KILN_BUILD_SUCCEEDING=", flag),
        true);
    if (r.kind == CommandRun::kInterrupted) return StopOutcome();
    if (r.kind == CommandRun::kFault) return Outcome::Of(BuildStatus::FAULT, kAgentError, r.error);
  }
  for (int runs = 1;; ++runs) {
    std::vector<PhaseContext> failures;
    for (const std::vector<std::string>* list : {&p->commands, &p->finally}) {
      for (const std::string& command : *list) {
        const CommandRun r = RunCommand(command, false);
        if (r.kind == CommandRun::kInterrupted) return StopOutcome();
        if (r.kind == CommandRun::kFault)
          return Outcome::Of(BuildStatus::FAULT, kAgentError, r.error);
        if (r.exit_status != 0) {  // §1.6: skip the rest of this list; finally still runs
          failures.push_back(MakeContext("COMMAND_EXECUTION_ERROR",
                                         absl::StrCat("Error while executing command: ", command,
                                                      ". Reason: exit status ", r.exit_status)));
          break;
        }
      }
    }
    if (failures.empty()) return {};
    if (ShouldRetry(*policy, runs, failures[0].message())) {
      Log(absl::StrCat("Phase ", PhaseName(phase), " failed; retrying (run ", runs + 1, " of ",
                       policy->retries + 1, ")"));
      continue;
    }
    return Outcome{BuildStatus::FAILED, std::move(failures),
                   policy->action == OnFailurePolicy::Action::kAbort,
                   policy->action == OnFailurePolicy::Action::kContinue};
  }
}

std::string BuildExecutor::Evaluate(const std::string& text, const std::string& what) {
  const std::string file = absl::StrCat(tmp_dir_, "/evaluated");
  std::error_code ec;
  fs::remove(file, ec);
  // An unquoted here-document expands like a double-quoted string. codebuild-hash-files (§1.11)
  // is defined for bash: the SHA-256 of the named files' contents, in order.
  std::string command;
  if (shell_path_ == "/bin/bash") {
    command =
        "codebuild-hash-files() { cat -- \"$@\" 2>/dev/null | sha256sum | cut -d' ' -f1; }\n";
  }
  absl::StrAppend(&command, "__kiln_v=$(cat <<__KILN_EVAL_", nonce_, "\n", text, "\n__KILN_EVAL_",
                  nonce_, "\n) && printf '%s' \"$__kiln_v\" >", ShellQuote(file),
                  "; unset __kiln_v");
  const CommandRun r = RunCommand(command, true);
  std::optional<std::string> value =
      r.kind == CommandRun::kDone && r.exit_status == 0 ? ReadFile(file, 4096) : std::nullopt;
  if (!value.has_value()) {
    Log(absl::StrCat("Warning: could not evaluate ", what, " '", text, "'; using it as written"));
    return text;
  }
  return *value;
}

void BuildExecutor::RestoreCache() {
  if (!spec_.has_value() || !spec_->cache.has_value() || CheckStopped()) return;
  if (options_.cache == nullptr) {
    Log("Warning: this agent keeps no cache; cache.paths are not restored or saved");
    return;
  }
  common::BuildspecCache c = *spec_->cache;
  if (!container_.empty()) {
    const auto absolute = [](const std::string& p) { return !p.empty() && p[0] == '/'; };
    if (std::any_of(c.paths.begin(), c.paths.end(), absolute)) {
      Log("Warning: absolute cache paths of a build container are not cached (only paths under "
          "CODEBUILD_SRC_DIR)");
      std::erase_if(c.paths, absolute);
    }
    if (c.paths.empty()) return;
  }
  if (!c.key.empty()) c.key = Evaluate(c.key, "cache.key");
  for (std::string& k : c.fallback_keys) k = Evaluate(k, "cache.fallback-keys");
  cache_spec_ = c;
  absl::StatusOr<CacheRestoreResult> r = options_.cache->Restore(job_.project_name(), c, src_dir_);
  if (!r.ok()) {
    Log(absl::StrCat("Warning: cache restore failed: ", r.status().message()));
    return;
  }
  // Restored files belong to the agent's user; the next shell of a run-as user re-owns the workspace
  // (PrepareShellUser).
  for (const std::string& line : r->log_lines) Log(line);
  if (!workspace_user_.empty()) workspace_user_ = "(restored)";
}

void BuildExecutor::CollectReports(PhaseResult* result) {
  for (const common::BuildspecReportGroup& g : spec_->reports) {
    common::BuildspecArtifacts sel;
    sel.files = g.files;
    sel.base_directory = g.base_directory;
    sel.discard_paths = g.discard_paths;
    std::vector<ReportFileInput> inputs;
    absl::StatusOr<ArtifactSelection> files = SelectArtifactFiles(src_dir_, sel);
    if (files.ok()) {
      for (const ArtifactFile& f : files->files) {
        std::optional<std::string> text = ReadFile(f.source_path, 64 << 20);
        ReportFileInput in{f.zip_path, absl::NotFoundError("cannot read the file")};
        if (text.has_value() && text->size() <= (64u << 20)) in.contents = *std::move(text);
        if (text.has_value() && text->size() > (64u << 20)) {
          in.contents = absl::ResourceExhaustedError("file is larger than 64 MiB");
        }
        inputs.push_back(std::move(in));
      }
    }
    kiln::v1::TestReport report = BuildTestReport(job_.project_name(), g, inputs);
    Log(absl::StrCat("Report ", report.name(), ": ", report.status(), ", ", report.total(),
                     " test cases, ", report.passed(), " passed, ", report.failed(), " failed, ",
                     report.skipped(), " skipped",
                     report.message().empty() ? "" : absl::StrCat(" (", report.message(), ")")));
    *result->add_reports() = std::move(report);
  }
}

BuildExecutor::Outcome BuildExecutor::UploadArtifacts(PhaseResult* result) {
  if (!spec_.has_value()) return {};
  if (!spec_->reports.empty()) CollectReports(result);
  std::vector<const common::BuildspecArtifacts*> sets;
  if (spec_->artifacts.has_value()) sets.push_back(&*spec_->artifacts);
  for (const auto& a : spec_->secondary_artifacts) sets.push_back(&a);
  for (const common::BuildspecArtifacts* a : sets) {
    if (CheckStopped()) return StopOutcome();
    const std::string label = a->identifier.empty() ? "artifacts" : a->identifier;
    std::vector<std::string> error_log;
    absl::StatusOr<ArtifactSelection> files = SelectArtifactFiles(src_dir_, *a, &error_log);
    for (const std::string& line : files.ok() ? files->log_lines : error_log) Log(line);
    if (!files.ok()) {
      return Outcome::Of(BuildStatus::FAILED, "CLIENT_ERROR",
                         absl::StrCat(files.status().message(), " (", label, ")"));
    }
    std::string name = a->name.empty()
                           ? (a->identifier.empty() ? job_.project_name() : a->identifier)
                           : Evaluate(a->name, absl::StrCat(label, ".name"));
    const std::string zip = absl::StrCat(tmp_dir_, "/artifact-", a->identifier, ".zip");
    absl::StatusOr<ZipInfo> info = WriteZip(files->files, zip);
    if (!info.ok()) {
      return Outcome::Of(BuildStatus::FAILED, "CLIENT_ERROR",
                         absl::StrCat("packing ", label, ": ", info.status().message()));
    }
    if (!options_.upload_artifact) {
      return Outcome::Of(BuildStatus::FAILED, "CLIENT_ERROR",
                         "this agent cannot upload artifacts (no coordinator connection)");
    }
    kiln::v1::UploadArtifactHeader header;
    header.set_identifier(a->identifier);
    header.set_name(name);
    header.set_file_count(info->file_count);
    absl::StatusOr<kiln::v1::BuildArtifact> uploaded = options_.upload_artifact(header, zip);
    std::error_code ec;
    fs::remove(zip, ec);
    if (!uploaded.ok()) {
      return Outcome::Of(BuildStatus::FAILED, "CLIENT_ERROR",
                         absl::StrCat("uploading ", label, " failed: ", uploaded.status().ToString()));
    }
    Log(absl::StrCat("Uploaded ", label, " '", uploaded->name(), "': ", uploaded->file_count(),
                     " file(s), ", uploaded->size_bytes(), " bytes, sha256 ", uploaded->sha256()));
    *result->add_artifacts() = *std::move(uploaded);
  }
  return {};
}

void BuildExecutor::CaptureExportedVariables(PhaseResult* result) {
  exported_captured_ = true;
  if (spec_.has_value() && !spec_->exported_variables.empty() && !CheckStopped()) {
    // Parameter-store values are never exported (reference §1.4): the buildspec's own are refused by
    // the parser; the project's are skipped here.
    std::set<std::string> secret_names;
    for (const auto& [name, param] : spec_->parameter_store) secret_names.insert(name);
    for (const auto& [name, ref] : spec_->secrets_manager) secret_names.insert(name);
    for (const auto& v : job_.environment_variables()) {
      if (v.type() == kiln::v1::EnvironmentVariable::PARAMETER_STORE) secret_names.insert(v.name());
    }
    std::vector<std::string> lines;
    const std::vector<std::string>& names = spec_->exported_variables;
    std::error_code ec;
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string file = absl::StrCat(tmp_dir_, "/exported-", i);
      fs::remove(file, ec);
      if (!IsIdentifier(names[i])) continue;
      lines.push_back(absl::StrCat("if [ -n \"${", names[i],
                                   "+x}\" ]; then command printf '%s' \"$", names[i], "\" >",
                                   ShellQuote(file), "; fi"));
    }
    const CommandRun r = RunCommand(absl::StrJoin(lines, "\n"), true);
    if (r.kind == CommandRun::kDone) {
      for (size_t i = 0; i < names.size(); ++i) {
        const std::optional<std::string> value =
            ReadFile(absl::StrCat(tmp_dir_, "/exported-", i), 1 << 20);
        if (!value.has_value() || secret_names.count(names[i])) continue;
        // A value derived from a secret (URL=https://u:$TOKEN@host) leaves masked like the log.
        (*result->mutable_exported_variables())[names[i]] = masker_.MaskAll(*value);
      }
    }
  }
}

BuildExecutor::Outcome BuildExecutor::Finalize(PhaseResult* result, bool build_succeeding) {
  // Exported variables are frozen at the end of POST_BUILD (§1.4); a build that never reached
  // POST_BUILD exports what its shell holds now.
  if (!exported_captured_) CaptureExportedVariables(result);
  const bool stopped = CheckStopped();
  // The build's processes and container go first, so that nothing can swap files or symlinks while
  // the cache is saved.
  DiscardShell();
  RemoveBuildContainer();
  // §1.11: the cache is saved after a successful build.
  if (cache_spec_.has_value() && build_succeeding && !stopped) {
    absl::StatusOr<CacheSaveResult> r =
        options_.cache->Save(job_.project_name(), *cache_spec_, src_dir_);
    if (r.ok()) {
      for (const std::string& line : r->log_lines) Log(line);
      result->set_cache_saved(r->saved);
    } else {
      Log(absl::StrCat("Warning: cache save failed: ", r.status().message()));
    }
  }
  return {};
}

BuildExecutor::CommandRun BuildExecutor::RunCommand(const std::string& command, bool internal) {
  if (CheckStopped()) return {CommandRun::kInterrupted};
  if (!internal) Log(absl::StrCat("Running command ", command));
  absl::Status error;
  ShellSession* shell = EnsureShell(&error);
  if (shell == nullptr) {
    return error.ok() ? CommandRun{CommandRun::kInterrupted}
                      : CommandRun{CommandRun::kFault, 0, error.ToString()};
  }
  const auto emit = [this](std::string_view bytes) { EmitMasked(bytes); };
  absl::StatusOr<ShellSession::Result> r =
      shell->Run(absl::StrCat(tmp_dir_, "/cmd-", ++command_count_, ".sh"), command, emit, wake_fd_,
                 deadline_, *options_.clock);
  if (!r.ok()) {
    DiscardShell();
    return {CommandRun::kFault, 0, r.status().ToString()};
  }
  if (r->kind == ShellSession::Result::kInterrupted || CheckStopped()) {
    if (!CheckStopped()) Stop(BuildStatus::FAULT, "command interrupted");
    shell->Kill();
    shell->Drain(emit, absl::Milliseconds(200));
    FlushMasker();
    DiscardShell();
    RemoveBuildContainer();  // the processes inside a build container die with it
    return {CommandRun::kInterrupted};
  }
  FlushMasker();
  if (r->kind == ShellSession::Result::kShellExited || spec_->version == "0.1") DiscardShell();
  if (!internal && r->exit_status != 0) {
    Log(absl::StrCat("Command did not exit successfully ", command, " exit status ",
                     r->exit_status));
  }
  return {CommandRun::kDone, r->exit_status};
}

absl::Status BuildExecutor::PrepareShellUser(const std::string& user) {
  if (!container_.empty()) {
    if (container_started_) return absl::OkStatus();
    Log(absl::StrCat("Starting build container ", container_, " from image ",
                     job_.environment().image(),
                     job_.environment().privileged_mode() ? " (privileged: host Docker socket)" : ""));
    ContainerSpec c{container_, job_.environment().image(), root_, job_.build_id(),
                    job_.environment().privileged_mode()};
    absl::Status s = StartContainer(c);
    if (!s.ok()) {
      RemoveBuildContainer();  // a half-created one
      return absl::FailedPreconditionError(absl::StrCat("cannot start the build container: ",
                                                        s.message()));
    }
    container_started_ = true;
    return absl::OkStatus();
  }
  if (user == workspace_user_) return absl::OkStatus();
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (!user.empty()) {
    const passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) return absl::FailedPreconditionError(absl::StrCat("no user '", user, "'"));
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  // The user gets the workspace (CodeBuild: "read and execute permission on the build"), so that
  // files an earlier phase's user made stay usable.
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root_, fs::directory_options::none, ec), end;
       !ec && it != end; it.increment(ec)) {
    (void)!lchown(it->path().c_str(), uid, gid);
  }
  (void)!lchown(root_.c_str(), uid, gid);
  workspace_user_ = user;
  return absl::OkStatus();
}

void BuildExecutor::RemoveBuildContainer() {
  if (container_.empty() || !container_started_) return;
  container_started_ = false;
  RemoveContainer(container_);
}

ShellSession* BuildExecutor::EnsureShell(absl::Status* error) {
  {
    absl::MutexLock lock(&mu_);
    if (stop_status_ != BuildStatus::UNKNOWN) return nullptr;
    if (shell_ != nullptr && !shell_->Exited()) return shell_.get();
  }
  if (absl::Status s = PrepareShellUser(phase_user_); !s.ok()) {
    *error = s;
    return nullptr;
  }
  absl::MutexLock lock(&mu_);
  if (stop_status_ != BuildStatus::UNKNOWN) return nullptr;
  shell_.reset();
  ShellSession::Options options;
  options.shell_path = shell_path_;
  options.state_dir = tmp_dir_;
  options.nonce = nonce_;
  options.cwd = src_dir_;
  const std::string env_file = tmp_dir_ + "/env";
  std::error_code ec;
  if (spec_->version != "0.1" && fs::exists(env_file, ec)) {
    // A replacement shell: carry on from the last saved state (exported variables and cwd). Its
    // initial environment carries the build id so a restarted agent recognises it (process_tree.h).
    options.restore_env_file = env_file;
    options.env = {absl::StrCat("CODEBUILD_BUILD_ID=", job_.build_id())};
    std::string cwd = ReadFile(tmp_dir_ + "/cwd", 1 << 16).value_or("");
    if (!cwd.empty() && cwd.back() == '\n') cwd.pop_back();
    if (!cwd.empty() && fs::is_directory(cwd, ec)) options.cwd = cwd;
  } else {
    options.env = initial_env_;
    for (std::string& e : options.env) {
      if (e.rfind("CODEBUILD_BUILD_SUCCEEDING=", 0) == 0 ||
          e.rfind("KILN_BUILD_SUCCEEDING=", 0) == 0) {
        e = absl::StrCat(e.substr(0, e.find('=') + 1), succeeding_ ? "1" : "0");
      }
    }
  }
  if (!container_.empty()) {
    // The shell runs in the container: docker exec gets the agent's environment (plus the build id
    // for crash cleanup) and the shell sources the build's environment from a file first.
    if (options.restore_env_file.empty() || spec_->version == "0.1") {
      options.restore_env_file = tmp_dir_ + "/initial-env";
      std::string text;
      for (const std::string& e : options.env) {
        const size_t eq = e.find('=');
        absl::StrAppend(&text, "export ", e.substr(0, eq), "=", ShellQuote(e.substr(eq + 1)), "\n");
      }
      std::ofstream f(options.restore_env_file, std::ios::trunc);
      f << text;
      if (!f.good()) {
        *error = absl::InternalError(absl::StrCat("writing ", options.restore_env_file));
        return nullptr;
      }
    }
    options.env.clear();
    for (char** e = environ; *e != nullptr; ++e) options.env.emplace_back(*e);
    options.env.push_back(absl::StrCat("CODEBUILD_BUILD_ID=", job_.build_id()));
    options.launcher = DockerExecLauncher(container_, options.cwd, phase_user_);
    options.feed_from_stdout = true;
  } else if (!phase_user_.empty()) {
    const passwd* pw = getpwnam(phase_user_.c_str());
    if (pw == nullptr) {
      *error = absl::FailedPreconditionError(absl::StrCat("no user '", phase_user_, "'"));
      return nullptr;
    }
    options.launcher = {"setpriv", absl::StrCat("--reuid=", pw->pw_uid),
                        absl::StrCat("--regid=", pw->pw_gid), "--init-groups", "--"};
    for (const auto& [k, v] : {std::pair<std::string, std::string>{"HOME", pw->pw_dir},
                               {"USER", pw->pw_name},
                               {"LOGNAME", pw->pw_name}}) {
      std::erase_if(options.env, [&k](const std::string& e) { return e.rfind(k + "=", 0) == 0; });
      options.env.push_back(absl::StrCat(k, "=", v));
    }
  }
  absl::StatusOr<std::unique_ptr<ShellSession>> shell = ShellSession::Start(options);
  if (!shell.ok()) {
    *error = shell.status();
    return nullptr;
  }
  shell_ = std::move(*shell);
  // Lets a restarted agent find and kill this build's processes if the agent dies (see
  // KillLeftoverSessions).
  WriteSessionFile(root_, shell_->pid(), job_.build_id());
  return shell_.get();
}

void BuildExecutor::DiscardShell() {
  std::unique_ptr<ShellSession> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::move(shell_);
  }
  old.reset();  // kills what is left of the session and reaps the shell, outside mu_
}

void BuildExecutor::Log(std::string_view text) {
  FlushMasker();
  const std::string line = absl::StrCat(
      at_line_start_ ? "" : "\n", "[Container] ",
      absl::FormatTime("%Y/%m/%d %H:%M:%E6S", options_.clock->Now(), absl::UTCTimeZone()), " ",
      absl::string_view(text.data(), text.size()), "\n");
  Emit(masker_.Write(line));
  FlushMasker();
}

void BuildExecutor::EmitMasked(std::string_view bytes) { Emit(masker_.Write(bytes)); }

void BuildExecutor::FlushMasker() { Emit(masker_.Flush()); }

void BuildExecutor::Emit(std::string_view bytes) {
  if (bytes.empty()) return;
  at_line_start_ = bytes.back() == '\n';
  if (!options_.output) return;
  while (!bytes.empty()) {
    const size_t n = std::min(bytes.size(), kMaxChunk);
    options_.output(bytes.substr(0, n));
    bytes.remove_prefix(n);
  }
}

}  // namespace kiln::agent
