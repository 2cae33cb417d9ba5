#include "coordinator/deployments/deployment_controller.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"

namespace kiln::coordinator {

using kiln::v1::Application;
using kiln::v1::CoordinatorMessage;
using kiln::v1::Deployment;
using kiln::v1::DeploymentGroup;
using kiln::v1::DeploymentTarget;
using kiln::v1::LifecycleEvent;
using kiln::v1::MinimumHealthyHosts;
using kiln::v1::Revision;

namespace {

// Deployment statuses (§4.9 "Statuses").
constexpr char kInProgress[] = "InProgress";
constexpr char kSucceeded[] = "Succeeded";
constexpr char kFailed[] = "Failed";
constexpr char kStopped[] = "Stopped";
// Target and lifecycle event statuses.
constexpr char kPending[] = "Pending";
constexpr char kSkipped[] = "Skipped";

constexpr char kOneAtATime[] = "CodeDeployDefault.OneAtATime";
constexpr char kCustom[] = "Custom";
constexpr char kRollbackCreator[] = "codeDeployRollback";

std::string AppKey(const std::string& app) { return "deploy-app/" + app; }
std::string GroupKey(const std::string& app, const std::string& group) {
  return absl::StrCat("deploy-group/", app, "/", group);
}
std::string DeploymentKey(const std::string& id) { return "deployment/" + id; }
std::string ActiveKey(const std::string& id) { return "deployment-active/" + id; }
std::string ByTimeKey(int64_t seq) { return absl::StrFormat("deployment-by-time/%020d", seq); }
std::string InstanceKey(const std::string& group_id, const std::string& agent) {
  return absl::StrCat("deployment-instance/", group_id, "/", agent);
}
constexpr char kSeqKey[] = "counter/deployment_seq";
std::string LogId(const std::string& id, const std::string& agent) {
  return absl::StrCat(id, "/", agent);
}

google::protobuf::Timestamp ToTimestamp(int64_t unix_millis) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(unix_millis);
}
int64_t ToMillis(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
}

absl::Status Corrupt(const std::string& key, const std::string& why = "unparseable") {
  return absl::DataLossError(absl::StrCat("corrupt store record ", key, ": ", why));
}

bool IsTerminal(const std::string& status) {
  return status == kSucceeded || status == kFailed || status == kStopped;
}
bool IsFinalEvent(const std::string& status) {
  return status == kSucceeded || status == kFailed || status == kSkipped;
}

// "" if `name` is 1..100 characters of [A-Za-z0-9_.-] (CodeDeploy's application and group names).
std::string CheckName(const std::string& what, const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 100 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
                  });
  if (ok) return "";
  return absl::StrCat(what, " '", name, "' must be 1..100 characters of [A-Za-z0-9_.-]");
}

// The rollout configuration of a configuration name ("Custom" uses `mhh`).
absl::StatusOr<deploy::DeploymentConfig> ConfigFor(const std::string& name,
                                                   const MinimumHealthyHosts& mhh) {
  if (name == kCustom) {
    if (mhh.type() == MinimumHealthyHosts::HOST_COUNT) {
      if (mhh.value() < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "minimum_healthy_hosts: HOST_COUNT must be at least 0, got ", mhh.value()));
      }
      return deploy::DeploymentConfig::HostCount(mhh.value());
    }
    if (mhh.type() == MinimumHealthyHosts::FLEET_PERCENT) {
      if (mhh.value() < 0 || mhh.value() > 99) {
        return absl::InvalidArgumentError(absl::StrCat(
            "minimum_healthy_hosts: FLEET_PERCENT must be within 0..99, got ", mhh.value()));
      }
      return deploy::DeploymentConfig::FleetPercent(mhh.value());
    }
    return absl::InvalidArgumentError("minimum_healthy_hosts: type must be HOST_COUNT or FLEET_PERCENT");
  }
  auto config = deploy::DeploymentConfig::FromName(name);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("deployment_config_name: ", config.status().message(), ", or Custom"));
  }
  return config;
}

// The minimum healthy hosts a predefined configuration stands for (§4.9), for display.
MinimumHealthyHosts PredefinedMinimum(const std::string& name) {
  MinimumHealthyHosts m;
  m.set_type(MinimumHealthyHosts::FLEET_PERCENT);
  if (name == "CodeDeployDefault.HalfAtATime") {
    m.set_value(50);
  } else if (name == "CodeDeployDefault.AllAtOnce") {
    m.set_value(0);
  } else {
    m.set_value(99);  // OneAtATime
  }
  return m;
}

// Identity of a revision for revision health (§4.9 rule 1).
std::string RevisionKey(const Revision& r) {
  if (r.has_build_artifact()) return "artifact:" + r.build_artifact().sha256();
  if (r.has_git()) return absl::StrCat("git:", r.git().project(), "@", r.git().commit());
  return "";
}

std::string RevisionHealthName(deploy::RevisionHealth h) {
  switch (h) {
    case deploy::RevisionHealth::kOld:
      return "old";
    case deploy::RevisionHealth::kCurrent:
      return "current";
    case deploy::RevisionHealth::kUnknown:
      break;
  }
  return "unknown";
}
deploy::RevisionHealth RevisionHealthFromName(const std::string& s) {
  if (s == "old") return deploy::RevisionHealth::kOld;
  if (s == "current") return deploy::RevisionHealth::kCurrent;
  return deploy::RevisionHealth::kUnknown;
}

// "d-" + 9 characters of [A-Z0-9], as CodeDeploy's deployment ids.
std::string NewDeploymentId() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const std::string hex = common::RandomHex(9);
  std::string id = "d-";
  for (int i = 0; i < 9; ++i) {
    uint32_t byte = 0;
    if (!absl::SimpleHexAtoi(hex.substr(2 * i, 2), &byte)) byte = 0;  // cannot happen: hex
    id += kAlphabet[byte % 36];
  }
  return id;
}

// The ScriptError names of §4.7's codes.
std::string ScriptErrorName(int code) {
  static const char* const kNames[] = {"Success",       "ScriptMissing",   "ScriptNotExecutable",
                                       "ScriptTimedOut", "ScriptFailed",    "UnknownError",
                                       "OutputsLeftOpen", "FailedAfterRestart"};
  if (code >= 0 && code < 8) return kNames[code];
  return absl::StrCat("error ", code);
}

DeploymentTarget* FindTarget(Deployment& d, const std::string& agent_id) {
  for (auto& t : *d.mutable_targets()) {
    if (t.agent_id() == agent_id) return &t;
  }
  return nullptr;
}

std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrCat("{", absl::StrJoin(sorted, ", ", absl::PairFormatter("=")), "}");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Watchers

struct DeploymentController::Watcher {
  absl::Mutex mu;
  bool alive ABSL_GUARDED_BY(mu) = true;
  std::function<void()> fn;
};

class DeploymentController::WatchImpl final : public DeploymentWatch {
 public:
  WatchImpl(DeploymentController* c, std::string id, std::shared_ptr<Watcher> w)
      : c_(c), id_(std::move(id)), w_(std::move(w)) {}
  ~WatchImpl() override {
    {
      absl::MutexLock l(&c_->watch_mu_);
      auto range = c_->watchers_.equal_range(id_);
      for (auto it = range.first; it != range.second; ++it) {
        if (it->second == w_) {
          c_->watchers_.erase(it);
          break;
        }
      }
    }
    absl::MutexLock l(&w_->mu);  // waits for a running callback
    w_->alive = false;
  }

 private:
  DeploymentController* const c_;
  const std::string id_;
  std::shared_ptr<Watcher> w_;
};

void DeploymentController::NotifyLocked(const std::string& id) {
  absl::MutexLock l(&watch_mu_);
  pending_notify_.insert(id);
}

void DeploymentController::FlushNotifications() {
  std::vector<std::shared_ptr<Watcher>> to_call;
  {
    absl::MutexLock l(&watch_mu_);
    for (const std::string& id : pending_notify_) {
      auto range = watchers_.equal_range(id);
      for (auto it = range.first; it != range.second; ++it) to_call.push_back(it->second);
    }
    pending_notify_.clear();
  }
  for (const auto& w : to_call) {
    absl::MutexLock l(&w->mu);
    if (w->alive) w->fn();
  }
}

absl::StatusOr<std::unique_ptr<DeploymentWatch>> DeploymentController::Watch(
    const std::string& id, std::function<void()> on_change) {
  {
    absl::MutexLock l(&mu_);
    KILN_RETURN_IF_ERROR(LoadDeploymentLocked(id).status());
  }
  auto w = std::make_shared<Watcher>();
  w->fn = std::move(on_change);
  absl::MutexLock l(&watch_mu_);
  watchers_.emplace(id, w);
  return std::unique_ptr<DeploymentWatch>(new WatchImpl(this, id, w));
}

// ---------------------------------------------------------------------------------------------
// Construction and loading

DeploymentController::DeploymentController(const Options& options) : options_(options) {}

DeploymentController::~DeploymentController() = default;

absl::StatusOr<std::unique_ptr<DeploymentController>> DeploymentController::Create(
    const Options& options) {
  if (options.store == nullptr || options.logs == nullptr || options.builds == nullptr ||
      options.clock == nullptr) {
    return absl::InvalidArgumentError("DeploymentController needs a store, logs, builds and clock");
  }
  std::unique_ptr<DeploymentController> c(new DeploymentController(options));
  {
    absl::MutexLock l(&c->mu_);
    KILN_RETURN_IF_ERROR(c->Load());
  }
  options.builds->AddAgentExtension(c.get());
  return c;
}

absl::Status DeploymentController::Load() {
  Store* store = options_.store;
  KILN_ASSIGN_OR_RETURN(auto apps, store->Scan("deploy-app/"));
  for (const auto& [key, value] : apps) {
    Application a;
    if (!a.ParseFromString(value)) return Corrupt(key);
    apps_[a.name()] = std::move(a);
  }
  KILN_ASSIGN_OR_RETURN(auto groups, store->Scan("deploy-group/"));
  for (const auto& [key, value] : groups) {
    DeploymentGroup g;
    if (!g.ParseFromString(value)) return Corrupt(key);
    groups_[{g.application(), g.name()}] = std::move(g);
  }
  KILN_ASSIGN_OR_RETURN(auto seq, store->Get(kSeqKey));
  if (seq.has_value()) {
    int64_t last = 0;
    if (!absl::SimpleAtoi(*seq, &last)) return Corrupt(kSeqKey);
    next_seq_ = last + 1;
  }

  std::set<std::string> connected;
  for (const auto& info : options_.builds->ListAgents()) {
    if (info.connected()) connected.insert(info.agent_id());
  }
  const int64_t now = options_.clock->NowUnixMillis();
  KILN_ASSIGN_OR_RETURN(auto records, store->Scan("deployment-active/"));
  for (const auto& [key, value] : records) {
    const std::string id = key.substr(std::string("deployment-active/").size());
    KILN_ASSIGN_OR_RETURN(auto stored, store->Get(DeploymentKey(id)));
    if (!stored.has_value()) return Corrupt(DeploymentKey(id), "missing");
    Active a;
    if (!a.d.ParseFromString(*stored)) return Corrupt(DeploymentKey(id));
    nlohmann::json j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Corrupt(key);
    try {
      for (const auto& h : j.at("hosts")) {
        a.hosts.push_back({h.at("id").get<std::string>(), h.at("healthy").get<bool>(),
                           RevisionHealthFromName(h.at("revision").get<std::string>())});
      }
      for (const auto& f : j.at("finished")) {
        a.finished.push_back({f.at("id").get<std::string>(), f.at("ok").get<bool>(),
                              f.at("reason").get<std::string>()});
      }
    } catch (const nlohmann::json::exception& e) {
      return Corrupt(key, e.what());
    }
    if (!IsTerminal(a.d.status())) {
      // Replay: the same hosts, then each result followed by NextBatch, as they happened.
      KILN_ASSIGN_OR_RETURN(deploy::DeploymentConfig config,
                            ConfigFor(a.d.deployment_config_name(), a.d.minimum_healthy_hosts()));
      a.rollout = std::make_unique<deploy::Rollout>(a.hosts, config);
      a.rollout->NextBatch();
      for (const Finished& f : a.finished) {
        a.rollout->HostFinished(f.agent_id, f.succeeded);
        a.rollout->NextBatch();
      }
    }
    for (const DeploymentTarget& t : a.d.targets()) {
      if (t.status() == kInProgress && !connected.count(t.agent_id())) {
        lease_deadlines_.emplace(t.agent_id(), now + options_.lease_millis);
      }
    }
    active_[id] = std::move(a);
  }
  KILN_LOG(INFO) << "loaded " << apps_.size() << " applications, " << groups_.size()
                 << " deployment groups and " << active_.size() << " running deployments";
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Persistence helpers

absl::Status DeploymentController::WriteLocked(const WriteBatch& batch) {
  if (!store_error_.ok()) return store_error_;
  absl::Status s = options_.store->Write(batch);
  if (!s.ok()) {
    KILN_LOG(ERROR) << "store write failed; deployments are now unhealthy: " << s;
    store_error_ = s;
  }
  return s;
}

absl::Status DeploymentController::PersistLocked(Active& a, WriteBatch& batch) {
  const std::string id = a.d.id();
  bool running = false;
  for (const auto& t : a.d.targets()) running |= t.status() == kInProgress;
  const bool keep = !IsTerminal(a.d.status()) || running;
  batch.Put(DeploymentKey(id), a.d.SerializeAsString());
  if (keep) {
    nlohmann::json j = {{"hosts", nlohmann::json::array()}, {"finished", nlohmann::json::array()}};
    for (const auto& h : a.hosts) {
      j["hosts"].push_back(
          {{"id", h.id}, {"healthy", h.healthy}, {"revision", RevisionHealthName(h.revision)}});
    }
    for (const auto& f : a.finished) {
      j["finished"].push_back({{"id", f.agent_id}, {"ok", f.succeeded}, {"reason", f.reason}});
    }
    batch.Put(ActiveKey(id), j.dump());
  } else {
    batch.Delete(ActiveKey(id));
  }
  KILN_RETURN_IF_ERROR(WriteLocked(batch));
  NotifyLocked(id);
  if (!keep) {
    for (const auto& t : a.d.targets()) options_.logs->Close(LogId(id, t.agent_id()));
    active_.erase(id);  // `a` is dangling from here on
  }
  return absl::OkStatus();
}

absl::StatusOr<Deployment> DeploymentController::LoadDeploymentLocked(const std::string& id) {
  if (auto it = active_.find(id); it != active_.end()) return it->second.d;
  KILN_ASSIGN_OR_RETURN(auto value, options_.store->Get(DeploymentKey(id)));
  if (!value.has_value()) return absl::NotFoundError(absl::StrCat("deployment ", id, " not found"));
  Deployment d;
  if (!d.ParseFromString(*value)) return Corrupt(DeploymentKey(id));
  return d;
}

bool DeploymentController::Healthy() {
  absl::MutexLock l(&mu_);
  return store_error_.ok();
}

// ---------------------------------------------------------------------------------------------
// Applications and groups

absl::StatusOr<Application> DeploymentController::CreateApplication(const std::string& name) {
  if (std::string p = CheckName("application name", name); !p.empty()) {
    return absl::InvalidArgumentError(p);
  }
  absl::MutexLock l(&mu_);
  if (apps_.count(name)) {
    return absl::AlreadyExistsError(absl::StrCat("application ", name, " already exists"));
  }
  Application a;
  a.set_name(name);
  *a.mutable_create_time() = ToTimestamp(options_.clock->NowUnixMillis());
  WriteBatch batch;
  batch.Put(AppKey(name), a.SerializeAsString());
  KILN_RETURN_IF_ERROR(WriteLocked(batch));
  apps_[name] = a;
  return a;
}

absl::StatusOr<std::vector<Application>> DeploymentController::ListApplications() {
  absl::MutexLock l(&mu_);
  std::vector<Application> out;
  for (const auto& [name, a] : apps_) out.push_back(a);
  return out;
}

absl::StatusOr<DeploymentGroup> DeploymentController::PutDeploymentGroup(DeploymentGroup g) {
  auto invalid = [](const std::string& p) { return absl::InvalidArgumentError(p); };
  if (std::string p = CheckName("application name", g.application()); !p.empty()) return invalid(p);
  if (std::string p = CheckName("deployment group name", g.name()); !p.empty()) return invalid(p);
  if (g.deployment_config_name().empty()) g.set_deployment_config_name(kOneAtATime);
  KILN_RETURN_IF_ERROR(ConfigFor(g.deployment_config_name(), g.minimum_healthy_hosts()).status());
  if (g.deployment_config_name() != kCustom) g.clear_minimum_healthy_hosts();
  if (g.file_exists_behavior().empty()) g.set_file_exists_behavior("DISALLOW");
  const std::string& feb = g.file_exists_behavior();
  if (feb != "DISALLOW" && feb != "OVERWRITE" && feb != "RETAIN") {
    return invalid(absl::StrCat("file_exists_behavior must be DISALLOW, OVERWRITE or RETAIN, got '",
                                feb, "'"));
  }
  for (const auto& [k, v] : g.agent_labels()) {
    if (k.empty() || k.size() > 128 || v.size() > 128) {
      return invalid("agent_labels: keys must be 1..128 bytes and values at most 128 bytes");
    }
  }
  absl::MutexLock l(&mu_);
  if (!apps_.count(g.application())) {
    return absl::NotFoundError(absl::StrCat("application ", g.application(), " not found"));
  }
  auto existing = groups_.find({g.application(), g.name()});
  g.clear_last_successful_deployment_id();
  g.clear_last_successful_revision();
  if (existing != groups_.end()) {
    g.set_id(existing->second.id());
    g.set_last_successful_deployment_id(existing->second.last_successful_deployment_id());
    if (existing->second.has_last_successful_revision()) {
      *g.mutable_last_successful_revision() = existing->second.last_successful_revision();
    }
  } else {
    g.set_id("dg-" + common::NewUuid());
  }
  WriteBatch batch;
  batch.Put(GroupKey(g.application(), g.name()), g.SerializeAsString());
  KILN_RETURN_IF_ERROR(WriteLocked(batch));
  groups_[{g.application(), g.name()}] = g;
  return g;
}

absl::StatusOr<std::vector<DeploymentGroup>> DeploymentController::ListDeploymentGroups(
    const std::string& application) {
  absl::MutexLock l(&mu_);
  if (!application.empty() && !apps_.count(application)) {
    return absl::NotFoundError(absl::StrCat("application ", application, " not found"));
  }
  std::vector<DeploymentGroup> out;
  for (const auto& [key, g] : groups_) {
    if (application.empty() || key.first == application) out.push_back(g);
  }
  return out;
}

absl::StatusOr<DeploymentGroup> DeploymentController::GetDeploymentGroup(
    const std::string& application, const std::string& name) {
  absl::MutexLock l(&mu_);
  if (!apps_.count(application)) {
    return absl::NotFoundError(absl::StrCat("application ", application, " not found"));
  }
  auto it = groups_.find({application, name});
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("deployment group ", name, " of application ", application, " not found"));
  }
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Creating deployments

absl::Status DeploymentController::ResolveRevisionLocked(Revision& revision) {
  BuildController* builds = options_.builds;
  if (revision.has_build_artifact()) {
    kiln::v1::BuildArtifactRevision& r = *revision.mutable_build_artifact();
    if (r.build_id().empty()) return absl::InvalidArgumentError("revision.build_artifact.build_id is empty");
    KILN_ASSIGN_OR_RETURN(kiln::v1::Build b, builds->GetBuild(r.build_id()));
    if (!b.build_complete() || b.build_status() != kiln::v1::BuildStatus::SUCCEEDED) {
      return absl::FailedPreconditionError(
          absl::StrCat("build ", r.build_id(), " has not succeeded (",
                       b.build_complete() ? kiln::v1::BuildStatus::Value_Name(b.build_status())
                                          : "still running",
                       "); only a succeeded build's artifact can be deployed"));
    }
    KILN_ASSIGN_OR_RETURN(kiln::v1::BuildArtifact a, builds->FindArtifact(r.build_id(), r.artifact()));
    r.set_sha256(a.sha256());
    return absl::OkStatus();
  }
  if (revision.has_git()) {
    kiln::v1::GitRevision& r = *revision.mutable_git();
    if (r.project().empty()) return absl::InvalidArgumentError("revision.git.project is empty");
    KILN_ASSIGN_OR_RETURN(kiln::v1::Project p, builds->GetProject(r.project()));
    if (r.commit().empty()) r.set_commit(p.source().branch());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("revision: set build_artifact or git");
}

absl::StatusOr<Deployment> DeploymentController::CreateDeployment(
    const kiln::v1::CreateDeploymentRequest& request) {
  absl::StatusOr<Deployment> d;
  {
    absl::MutexLock l(&mu_);
    d = CreateLocked(request, "");
  }
  FlushNotifications();
  return d;
}

absl::StatusOr<Deployment> DeploymentController::StartForPipeline(const std::string& application,
                                                                  const std::string& deployment_group,
                                                                  const Revision& revision) {
  kiln::v1::CreateDeploymentRequest req;
  req.set_application(application);
  req.set_deployment_group(deployment_group);
  *req.mutable_revision() = revision;
  req.set_creator("pipeline");
  return CreateDeployment(req);
}

absl::StatusOr<Deployment> DeploymentController::CreateLocked(
    const kiln::v1::CreateDeploymentRequest& req, const std::string& rollback_of) {
  if (!store_error_.ok()) return store_error_;
  std::string creator = req.creator().empty() ? "user" : req.creator();
  if (!rollback_of.empty()) {
    creator = kRollbackCreator;
  } else if (creator != "user" && creator != "pipeline") {
    return absl::InvalidArgumentError(
        absl::StrCat("creator must be user or pipeline, got '", creator, "'"));
  }
  if (!apps_.count(req.application())) {
    return absl::NotFoundError(absl::StrCat("application ", req.application(), " not found"));
  }
  auto git = groups_.find({req.application(), req.deployment_group()});
  if (git == groups_.end()) {
    return absl::NotFoundError(absl::StrCat("deployment group ", req.deployment_group(),
                                            " of application ", req.application(), " not found"));
  }
  const DeploymentGroup group = git->second;
  std::string config_name =
      req.deployment_config_name().empty() ? group.deployment_config_name() : req.deployment_config_name();
  if (config_name == kCustom && group.deployment_config_name() != kCustom) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deployment_config_name Custom uses the group's minimum_healthy_hosts, but group ",
        group.name(), " uses ", group.deployment_config_name()));
  }
  const MinimumHealthyHosts mhh =
      config_name == kCustom ? group.minimum_healthy_hosts() : PredefinedMinimum(config_name);
  KILN_ASSIGN_OR_RETURN(deploy::DeploymentConfig config, ConfigFor(config_name, mhh));
  for (const auto& [id, a] : active_) {
    if (a.d.deployment_group_id() == group.id() && !IsTerminal(a.d.status())) {
      return absl::FailedPreconditionError(absl::StrCat("deployment group ", group.name(),
                                                        " already has deployment ", id,
                                                        " in progress"));
    }
  }
  Revision revision = req.revision();
  KILN_RETURN_IF_ERROR(ResolveRevisionLocked(revision));

  // Hosts: connected agents carrying every label of the group, with their instance health.
  Active a;
  Deployment& d = a.d;
  const std::string revision_key = RevisionKey(revision);
  for (const auto& agent : options_.builds->ListAgents()) {
    if (!agent.connected()) continue;
    bool match = true;
    for (const auto& [k, v] : group.agent_labels()) {
      auto it = agent.labels().find(k);
      match &= it != agent.labels().end() && it->second == v;
    }
    if (!match) continue;
    deploy::HostState h{agent.agent_id(), true, deploy::RevisionHealth::kUnknown};
    KILN_ASSIGN_OR_RETURN(auto instance, options_.store->Get(InstanceKey(group.id(), h.id)));
    if (instance.has_value()) {
      nlohmann::json j = nlohmann::json::parse(*instance, nullptr, false);
      if (j.is_object() && j.value("healthy", true) == false) h.healthy = false;
      const std::string last = j.is_object() ? j.value("revision", std::string()) : "";
      if (!last.empty()) {
        h.revision = last == revision_key ? deploy::RevisionHealth::kCurrent : deploy::RevisionHealth::kOld;
      }
    }
    a.hosts.push_back(h);
    DeploymentTarget* t = d.add_targets();
    t->set_agent_id(agent.agent_id());
    t->set_hostname(agent.hostname());
    t->set_status(kPending);
  }
  if (a.hosts.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("deployment group ", group.name(), " has no hosts: no connected agent carries ",
                     group.agent_labels().empty() ? "any labels" : LabelsText(group.agent_labels())));
  }
  a.rollout = std::make_unique<deploy::Rollout>(a.hosts, config);
  if (deploy::Rollout probe = *a.rollout; probe.NextBatch().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "deployment group ", group.name(), " (", a.hosts.size(), " hosts, ", config_name,
        ") cannot be deployed: ", probe.Result().message));
  }

  std::string id;
  do {
    id = NewDeploymentId();
    KILN_ASSIGN_OR_RETURN(auto taken, options_.store->Get(DeploymentKey(id)));
    if (taken.has_value() || active_.count(id)) id.clear();
  } while (id.empty());
  d.set_id(id);
  d.set_application(group.application());
  d.set_deployment_group(group.name());
  d.set_deployment_group_id(group.id());
  *d.mutable_revision() = revision;
  d.set_status(kInProgress);
  d.set_creator(creator);
  d.set_deployment_config_name(config_name);
  *d.mutable_minimum_healthy_hosts() = mhh;
  d.set_rollback_of(rollback_of);
  *d.mutable_create_time() = ToTimestamp(options_.clock->NowUnixMillis());

  const int64_t seq = next_seq_;
  WriteBatch batch;
  batch.Put(kSeqKey, absl::StrCat(seq));
  batch.Put(ByTimeKey(seq), id);
  active_[id] = std::move(a);
  if (absl::Status s = AdvanceLocked(id, batch); !s.ok()) {
    active_.erase(id);
    return s;
  }
  next_seq_ = seq + 1;
  KILN_LOG(INFO) << "deployment " << id << " of " << group.application() << "/" << group.name()
                 << " started by " << creator << " (" << config_name << ")";
  return LoadDeploymentLocked(id);
}

// ---------------------------------------------------------------------------------------------
// Rolling

void DeploymentController::SendDeployHostLocked(Active& a, const std::string& agent_id) {
  const Deployment& d = a.d;
  CoordinatorMessage m;
  kiln::v1::DeployHost* h = m.mutable_deploy_host();
  h->set_deployment_id(d.id());
  h->set_application(d.application());
  h->set_deployment_group(d.deployment_group());
  h->set_deployment_group_id(d.deployment_group_id());
  *h->mutable_revision() = d.revision();
  if (d.revision().has_git()) {
    auto p = options_.builds->GetProject(d.revision().git().project());
    if (p.ok()) h->set_git_location(p->source().location());
  }
  if (auto g = groups_.find({d.application(), d.deployment_group()}); g != groups_.end()) {
    h->set_ignore_application_stop_failures(g->second.ignore_application_stop_failures());
    h->set_file_exists_behavior(g->second.file_exists_behavior());
  }
  if (options_.builds->SendToAgent(agent_id, m)) {
    a.unsent.erase(agent_id);
    return;
  }
  // Not connected: sent when it reconnects; it fails if it stays away past the lease.
  a.unsent.insert(agent_id);
  lease_deadlines_.emplace(agent_id, options_.clock->NowUnixMillis() + options_.lease_millis);
}

absl::Status DeploymentController::AdvanceLocked(const std::string& id, WriteBatch& batch) {
  Active& a = active_.at(id);
  Deployment& d = a.d;
  std::vector<std::string> started;
  std::optional<DeploymentGroup> updated_group;
  bool failed_now = false;
  if (a.rollout != nullptr && !IsTerminal(d.status())) {
    started = a.rollout->NextBatch();
    for (const std::string& agent : started) FindTarget(d, agent)->set_status(kInProgress);
    if (a.rollout->Done()) {
      const deploy::Outcome o = a.rollout->Result();
      d.set_status(o.succeeded ? kSucceeded : kFailed);
      *d.mutable_complete_time() = ToTimestamp(options_.clock->NowUnixMillis());
      for (auto& t : *d.mutable_targets()) {
        if (t.status() == kPending) t.set_status(kSkipped);
      }
      if (o.succeeded) {
        auto g = groups_.find({d.application(), d.deployment_group()});
        if (g != groups_.end() && g->second.id() == d.deployment_group_id()) {
          updated_group = g->second;
          updated_group->set_last_successful_deployment_id(d.id());
          *updated_group->mutable_last_successful_revision() = d.revision();
          batch.Put(GroupKey(d.application(), d.deployment_group()),
                    updated_group->SerializeAsString());
        }
      } else {
        // Name the first host that failed and why, then the rollout's verdict (§4.9).
        std::vector<std::string> parts;
        for (const Finished& f : a.finished) {
          if (f.succeeded) continue;
          const DeploymentTarget* t = FindTarget(d, f.agent_id);
          parts.push_back(absl::StrCat("host ", f.agent_id,
                                       t && !t->hostname().empty() && t->hostname() != f.agent_id
                                           ? absl::StrCat(" (", t->hostname(), ")")
                                           : "",
                                       ": ", f.reason));
          break;
        }
        if (!o.message.empty()) parts.push_back(o.message);
        d.set_error_message(absl::StrJoin(parts, "; "));
        failed_now = true;
      }
      a.rollout.reset();
    }
  }
  const std::string status = d.status();
  KILN_RETURN_IF_ERROR(PersistLocked(a, batch));  // may drop `a`
  if (updated_group) groups_[{updated_group->application(), updated_group->name()}] = *updated_group;
  if (auto it = active_.find(id); it != active_.end()) {
    for (const std::string& agent : started) SendDeployHostLocked(it->second, agent);
  }
  if (IsTerminal(status)) {
    KILN_LOG(INFO) << "deployment " << id << " " << status;
  }
  if (failed_now) StartRollbackLocked(id);
  return absl::OkStatus();
}

void DeploymentController::StartRollbackLocked(const std::string& failed_id) {
  auto failed = LoadDeploymentLocked(failed_id);
  if (!failed.ok() || failed->creator() == kRollbackCreator) return;  // never roll back a rollback
  auto g = groups_.find({failed->application(), failed->deployment_group()});
  if (g == groups_.end() || !g->second.auto_rollback_on_failure() ||
      !g->second.has_last_successful_revision()) {
    return;
  }
  // §4.10: a new deployment of the last successful revision, marked as a rollback.
  kiln::v1::CreateDeploymentRequest req;
  req.set_application(failed->application());
  req.set_deployment_group(failed->deployment_group());
  *req.mutable_revision() = g->second.last_successful_revision();
  auto rollback = CreateLocked(req, failed_id);
  // The failed deployment's record was written above; reload it (the rollback's creation does not
  // touch it) and note the outcome.
  failed = LoadDeploymentLocked(failed_id);
  if (!failed.ok()) return;
  if (rollback.ok()) {
    failed->set_rolled_back_by(rollback->id());
  } else {
    failed->set_error_message(absl::StrCat(failed->error_message(),
                                           "; automatic rollback not started: ",
                                           rollback.status().message()));
  }
  if (auto it = active_.find(failed_id); it != active_.end()) {
    it->second.d = *failed;
    WriteBatch batch;
    PersistLocked(it->second, batch).IgnoreError();  // sticky store error; logged in WriteLocked
  } else {
    WriteBatch batch;
    batch.Put(DeploymentKey(failed_id), failed->SerializeAsString());
    if (WriteLocked(batch).ok()) NotifyLocked(failed_id);
  }
}

void DeploymentController::FinishHostLocked(Active& a, const std::string& agent_id, bool succeeded,
                                            const std::string& reason, WriteBatch& batch) {
  DeploymentTarget* t = FindTarget(a.d, agent_id);
  if (t == nullptr || t->status() != kInProgress) return;
  t->set_status(succeeded ? kSucceeded : kFailed);
  a.finished.push_back({agent_id, succeeded, reason});
  a.unsent.erase(agent_id);
  // Instance health for the next deployment's order (§4.9 rule 1): the revision stays the last
  // one that succeeded on the host.
  std::string revision = succeeded ? RevisionKey(a.d.revision()) : "";
  if (!succeeded) {
    auto old = options_.store->Get(InstanceKey(a.d.deployment_group_id(), agent_id));
    if (old.ok() && old->has_value()) {
      nlohmann::json j = nlohmann::json::parse(**old, nullptr, false);
      if (j.is_object()) revision = j.value("revision", std::string());
    }
  }
  nlohmann::json instance = {{"healthy", succeeded}, {"revision", revision}};
  batch.Put(InstanceKey(a.d.deployment_group_id(), agent_id), instance.dump());
  if (a.rollout != nullptr) a.rollout->HostFinished(agent_id, succeeded);
}

// ---------------------------------------------------------------------------------------------
// Agent messages

void DeploymentController::OnAgentMessage(const std::string& agent_id,
                                          const kiln::v1::AgentMessage& message) {
  {
    absl::MutexLock l(&mu_);
    if (message.has_deploy_event_result()) {
      ApplyEventLocked(agent_id, message.deploy_event_result());
    } else if (message.has_deploy_log()) {
      AppendLogLocked(agent_id, message.deploy_log());
    }
  }
  FlushNotifications();
}

void DeploymentController::ApplyEventLocked(const std::string& agent_id,
                                            const kiln::v1::DeployEventResult& r) {
  auto it = active_.find(r.deployment_id());
  if (it == active_.end()) return;  // finished, or unknown: a late duplicate
  Active& a = it->second;
  DeploymentTarget* t = FindTarget(a.d, agent_id);
  if (t == nullptr || t->status() != kInProgress) return;  // not a host, or already done
  bool changed = false;
  if (!r.event().name().empty()) {
    LifecycleEvent* existing = nullptr;
    for (auto& e : *t->mutable_lifecycle_events()) {
      if (e.name() == r.event().name()) existing = &e;
    }
    if (existing == nullptr || !IsFinalEvent(existing->status())) {  // idempotent by name
      LifecycleEvent e = r.event();
      if (e.duration_millis() == 0 && e.has_start_time() && e.has_end_time()) {
        e.set_duration_millis(std::max<int64_t>(0, ToMillis(e.end_time()) - ToMillis(e.start_time())));
      }
      if (existing != nullptr) {
        *existing = std::move(e);
      } else {
        *t->add_lifecycle_events() = std::move(e);
      }
      changed = true;
    }
  }
  WriteBatch batch;
  if (!r.host_done()) {
    if (changed) PersistLocked(a, batch).IgnoreError();  // sticky store error; logged
    return;
  }
  // The host is done: it succeeded unless an event failed (a failed ApplicationStop does not
  // count when the group ignores ApplicationStop failures).
  bool ignore_stop = false;
  if (auto g = groups_.find({a.d.application(), a.d.deployment_group()}); g != groups_.end()) {
    ignore_stop = g->second.ignore_application_stop_failures();
  }
  std::string reason;
  for (const LifecycleEvent& e : t->lifecycle_events()) {
    if (e.status() != kFailed || (ignore_stop && e.name() == "ApplicationStop")) continue;
    reason = absl::StrCat("lifecycle event ", e.name(), " failed (", ScriptErrorName(e.error_code()),
                          e.script_name().empty() ? "" : absl::StrCat(", script ", e.script_name()),
                          ")", e.message().empty() ? "" : absl::StrCat(": ", e.message()));
    break;
  }
  const std::string id = a.d.id();
  FinishHostLocked(a, agent_id, reason.empty(), reason, batch);
  AdvanceLocked(id, batch).IgnoreError();  // sticky store error; logged
}

void DeploymentController::AppendLogLocked(const std::string& agent_id,
                                           const kiln::v1::DeployLog& log) {
  auto it = active_.find(log.deployment_id());
  if (it == active_.end() || FindTarget(it->second.d, agent_id) == nullptr) return;
  const std::string log_id = LogId(log.deployment_id(), agent_id);
  absl::StatusOr<int64_t> seq = options_.logs->NextSeq(log_id);
  absl::Status s = seq.status();
  if (seq.ok()) s = options_.logs->Append(log_id, *seq, log.data()).status();
  if (!s.ok()) {
    KILN_LOG(WARNING) << "deployment log of " << log_id << " not stored: " << s;
    return;
  }
  NotifyLocked(log.deployment_id());
}

void DeploymentController::OnAgentConnected(const kiln::v1::AgentHello& hello) {
  {
    absl::MutexLock l(&mu_);
    const std::string& agent = hello.agent_id();
    lease_deadlines_.erase(agent);
    // The agent may have missed DeployHost (it was away, it restarted while the deployment was
    // queued on it, or the coordinator restarted between persisting and sending). Agents ignore a
    // DeployHost they run or ran (and resend those results), so send it again to every host still
    // in progress; a stopped deployment's hosts get StopDeployment again.
    for (auto& [id, a] : active_) {
      const DeploymentTarget* t = FindTarget(a.d, agent);
      if (t == nullptr || t->status() != kInProgress) continue;
      if (!IsTerminal(a.d.status())) {
        SendDeployHostLocked(a, agent);
      } else {
        CoordinatorMessage m;
        m.mutable_stop_deployment()->set_deployment_id(id);
        options_.builds->SendToAgent(agent, m);
      }
    }
  }
  FlushNotifications();
}

void DeploymentController::OnAgentDisconnected(const std::string& agent_id) {
  absl::MutexLock l(&mu_);
  for (const auto& [id, a] : active_) {
    for (const auto& t : a.d.targets()) {
      if (t.agent_id() == agent_id && t.status() == kInProgress) {
        lease_deadlines_.emplace(agent_id, options_.clock->NowUnixMillis() + options_.lease_millis);
        return;
      }
    }
  }
}

void DeploymentController::Tick() {
  {
    absl::MutexLock l(&mu_);
    const int64_t now = options_.clock->NowUnixMillis();
    std::vector<std::string> lost;
    for (auto it = lease_deadlines_.begin(); it != lease_deadlines_.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      lost.push_back(it->first);
      it = lease_deadlines_.erase(it);
    }
    for (const std::string& agent : lost) {
      std::vector<std::string> ids;
      for (const auto& [id, a] : active_) ids.push_back(id);
      for (const std::string& id : ids) {
        auto it = active_.find(id);
        if (it == active_.end()) continue;
        DeploymentTarget* t = FindTarget(it->second.d, agent);
        if (t == nullptr || t->status() != kInProgress) continue;
        KILN_LOG(WARNING) << "deployment " << id << ": agent " << agent
                          << " lost while deploying; its host fails";
        WriteBatch batch;
        FinishHostLocked(it->second, agent, false,
                         absl::StrCat("agent lost (disconnected for more than ",
                                      options_.lease_millis, " ms)"),
                         batch);
        AdvanceLocked(id, batch).IgnoreError();  // sticky store error; logged
      }
    }
  }
  FlushNotifications();
}

// ---------------------------------------------------------------------------------------------
// Reading and stopping

absl::StatusOr<Deployment> DeploymentController::GetDeployment(const std::string& id) {
  absl::MutexLock l(&mu_);
  KILN_ASSIGN_OR_RETURN(Deployment d, LoadDeploymentLocked(id));
  const bool running = active_.count(id) > 0;
  for (auto& t : *d.mutable_targets()) {
    const std::string log_id = LogId(id, t.agent_id());
    if (auto size = options_.logs->Size(log_id); size.ok()) t.set_log_size_bytes(*size);
    if (!running) options_.logs->Close(log_id);  // final: keep no index in memory
  }
  return d;
}

absl::StatusOr<std::vector<Deployment>> DeploymentController::ListDeployments(
    const std::string& application, const std::string& group, int limit) {
  if (limit < 0) return absl::InvalidArgumentError("page_size must not be negative");
  limit = limit == 0 ? 50 : std::min(limit, 1000);
  absl::MutexLock l(&mu_);
  KILN_ASSIGN_OR_RETURN(auto ids, options_.store->Scan("deployment-by-time/", 0, /*reverse=*/true));
  std::vector<Deployment> out;
  for (const auto& [key, id] : ids) {
    if (static_cast<int>(out.size()) >= limit) break;
    KILN_ASSIGN_OR_RETURN(Deployment d, LoadDeploymentLocked(id));
    if (!application.empty() && d.application() != application) continue;
    if (!group.empty() && d.deployment_group() != group) continue;
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<Deployment> DeploymentController::StopDeployment(const std::string& id) {
  {
    absl::MutexLock l(&mu_);
    auto it = active_.find(id);
    if (it == active_.end() || IsTerminal(it->second.d.status())) {
      return LoadDeploymentLocked(id);  // finished (or unknown: NotFound)
    }
    Active& a = it->second;
    Deployment& d = a.d;
    d.set_status(kStopped);
    d.set_error_message("the deployment was stopped on request");
    *d.mutable_complete_time() = ToTimestamp(options_.clock->NowUnixMillis());
    a.rollout.reset();
    std::vector<std::string> running;
    for (auto& t : *d.mutable_targets()) {
      // A host whose DeployHost never left the coordinator never started.
      if (t.status() == kPending || (t.status() == kInProgress && a.unsent.count(t.agent_id()))) {
        t.set_status(kSkipped);
      } else if (t.status() == kInProgress) {
        running.push_back(t.agent_id());
      }
    }
    a.unsent.clear();
    WriteBatch batch;
    KILN_RETURN_IF_ERROR(PersistLocked(a, batch));  // may drop `a`
    CoordinatorMessage m;
    m.mutable_stop_deployment()->set_deployment_id(id);
    for (const std::string& agent : running) options_.builds->SendToAgent(agent, m);
    KILN_LOG(INFO) << "deployment " << id << " stopped; " << running.size()
                   << " hosts asked to stop";
  }
  FlushNotifications();
  return GetDeployment(id);
}

absl::StatusOr<std::string> DeploymentController::ReadLog(const std::string& id,
                                                          const std::string& host, int64_t offset,
                                                          int64_t max_bytes) {
  std::string log_id;
  {
    absl::MutexLock l(&mu_);
    KILN_ASSIGN_OR_RETURN(Deployment d, LoadDeploymentLocked(id));
    std::vector<std::string> hosts;
    for (const auto& t : d.targets()) {
      if (t.agent_id() == host || t.hostname() == host) {
        log_id = LogId(id, t.agent_id());
        break;
      }
      hosts.push_back(t.agent_id());
    }
    if (log_id.empty()) {
      return absl::NotFoundError(absl::StrCat("deployment ", id, " has no host ", host,
                                              "; its hosts are ", absl::StrJoin(hosts, ", ")));
    }
  }
  return options_.logs->Read(log_id, offset, max_bytes);
}

absl::StatusOr<kiln::v1::BuildArtifactRevision> DeploymentController::RevisionForAgent(
    const std::string& agent_id, const std::string& id) {
  absl::MutexLock l(&mu_);
  KILN_ASSIGN_OR_RETURN(Deployment d, LoadDeploymentLocked(id));
  const DeploymentTarget* t = FindTarget(d, agent_id);
  if (t == nullptr || t->status() != kInProgress) {
    return absl::PermissionDeniedError(
        absl::StrCat("agent ", agent_id, " is not deploying deployment ", id));
  }
  if (!d.revision().has_build_artifact()) {
    return absl::FailedPreconditionError(
        absl::StrCat("deployment ", id, " deploys a git revision; clone it from DeployHost.git_location"));
  }
  return d.revision().build_artifact();
}

}  // namespace kiln::coordinator
