#include "coordinator/builds/build_controller.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/project_yaml.h"
#include "common/status_macros.h"
#include "coordinator/scheduler/phase_machine.h"
#include "google/protobuf/util/time_util.h"

namespace kiln::coordinator {

using kiln::v1::Build;
using kiln::v1::BuildPhase;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;
using kiln::v1::CoordinatorMessage;
using kiln::v1::Project;

namespace {

constexpr int kDefaultTimeoutMinutes = 60;
constexpr int kDefaultQueuedTimeoutMinutes = 480;

std::string Pad(int64_t n) { return absl::StrFormat("%020d", n); }
std::string BuildKey(const std::string& id) { return "build/" + id; }
std::string ActiveKey(const std::string& id) { return "active/" + id; }
std::string ProjectKey(const std::string& name) { return "project/" + name; }

google::protobuf::Timestamp ToTimestamp(int64_t unix_millis) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(unix_millis);
}
int64_t ToMillis(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
}

BuildPhase* CurrentPhase(Build& b) {
  if (b.phases_size() == 0) return nullptr;
  return b.mutable_phases(b.phases_size() - 1);
}

void EndPhase(BuildPhase* p, BuildStatus::Value status, int64_t now_millis) {
  p->set_phase_status(status);
  *p->mutable_end_time() = ToTimestamp(now_millis);
  int64_t d = std::max<int64_t>(0, now_millis - ToMillis(p->start_time()));
  p->set_duration_in_millis(d);
  p->set_duration_in_seconds(d / 1000);
}

void BeginPhase(Build& b, BuildPhaseType::Value type, int64_t now_millis) {
  BuildPhase* p = b.add_phases();
  p->set_phase_type(type);
  p->set_phase_status(BuildStatus::IN_PROGRESS);
  *p->mutable_start_time() = ToTimestamp(now_millis);
  b.set_current_phase(type);
}

absl::Status Corrupt(const std::string& key) {
  return absl::DataLossError(absl::StrCat("corrupt record at ", key));
}

bool ValidAgentId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Watchers

struct BuildController::Watcher {
  absl::Mutex mu;
  bool alive ABSL_GUARDED_BY(mu) = true;
  std::function<void()> fn;
};

class BuildController::WatchImpl : public BuildWatch {
 public:
  WatchImpl(BuildController* c, std::string id, std::shared_ptr<Watcher> w)
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
    // Waits for a callback running right now, then makes sure no later one runs.
    absl::MutexLock l(&w_->mu);
    w_->alive = false;
  }

 private:
  BuildController* c_;
  std::string id_;
  std::shared_ptr<Watcher> w_;
};

// ---------------------------------------------------------------------------------------------
// Construction and recovery

BuildController::BuildController(const Options& options) : options_(options) {}
BuildController::~BuildController() = default;

absl::StatusOr<std::unique_ptr<BuildController>> BuildController::Create(const Options& options) {
  if (options.store == nullptr || options.logs == nullptr || options.params == nullptr) {
    return absl::InvalidArgumentError("BuildController needs a store, a log store and a parameter store");
  }
  std::unique_ptr<BuildController> c(new BuildController(options));
  {
    absl::MutexLock l(&c->mu_);
    KILN_RETURN_IF_ERROR(c->Load());
    c->ScheduleLocked();
  }
  return c;
}

absl::Status BuildController::Load() {
  Store* store = options_.store;
  const int64_t now = options_.clock->NowUnixMillis();
  KILN_ASSIGN_OR_RETURN(auto projects, store->Scan("project/"));
  for (const auto& [key, value] : projects) {
    Project p;
    if (!p.ParseFromString(value)) return Corrupt(key);
    scheduler_.SetProjectLimit(p.name(), p.concurrent_build_limit());
    projects_[p.name()] = std::move(p);
  }
  KILN_ASSIGN_OR_RETURN(auto counters, store->Scan("counter/build_number/"));
  for (const auto& [key, value] : counters) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(value, &n)) return Corrupt(key);
    build_numbers_[key.substr(std::string("counter/build_number/").size())] = n;
  }
  KILN_ASSIGN_OR_RETURN(auto seq, store->Get("counter/queue_seq"));
  if (seq.has_value() && !absl::SimpleAtoi(*seq, &next_queue_seq_)) return Corrupt("counter/queue_seq");
  next_queue_seq_ = std::max<int64_t>(next_queue_seq_, 1);

  KILN_ASSIGN_OR_RETURN(auto active, store->Scan("active/"));
  int queued = 0, running = 0;
  for (const auto& [key, unused] : active) {
    std::string id = key.substr(7);
    KILN_ASSIGN_OR_RETURN(auto value, store->Get(BuildKey(id)));
    if (!value.has_value()) return Corrupt(BuildKey(id));
    ActiveBuild ab;
    if (!ab.build.ParseFromString(*value)) return Corrupt(BuildKey(id));
    const Build& b = ab.build;
    if (b.current_phase() == BuildPhaseType::QUEUED) {
      ab.queued_at_millis = b.phases_size() > 0 ? ToMillis(b.phases(b.phases_size() - 1).start_time()) : now;
      Labels labels(b.agent_labels().begin(), b.agent_labels().end());
      scheduler_.Enqueue({id, b.project_name(), b.queue_seq(), labels});
      ++queued;
    } else {
      // Running when the coordinator stopped: the agent gets one lease to reconnect and report it.
      ab.lease_deadline_millis = now + options_.lease_millis;
      scheduler_.MarkRunning(id, b.project_name(), b.agent_id());
      agents_[b.agent_id()].builds.insert(id);
      agents_[b.agent_id()].info.set_agent_id(b.agent_id());
      ++running;
    }
    active_[id] = std::move(ab);
  }
  KILN_ASSIGN_OR_RETURN(auto agents, store->Scan("agent/"));
  for (const auto& [key, value] : agents) {
    kiln::v1::AgentInfo info;
    if (!info.ParseFromString(value)) return Corrupt(key);
    info.set_connected(false);
    info.set_running_builds(0);
    AgentState& a = agents_[info.agent_id()];
    a.info = std::move(info);
  }
  KILN_LOG(INFO) << "loaded " << projects_.size() << " projects, " << queued << " queued and "
                 << running << " running builds";
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Persistence and notification helpers

absl::Status BuildController::PersistLocked(const Build& build, WriteBatch& batch) {
  if (!store_error_.ok()) return store_error_;
  batch.Put(BuildKey(build.id()), build.SerializeAsString());
  absl::Status s = options_.store->Write(batch);
  if (!s.ok()) {
    KILN_LOG(ERROR) << "store write failed; coordinator is now unhealthy: " << s;
    store_error_ = s;
  }
  return s;
}

void BuildController::NotifyLocked(const std::string& build_id) {
  absl::MutexLock l(&watch_mu_);
  if (watchers_.count(build_id)) pending_notify_.insert(build_id);
}

void BuildController::FlushNotifications() {
  std::vector<std::shared_ptr<Watcher>> to_call;
  {
    absl::MutexLock l(&watch_mu_);
    for (const std::string& id : pending_notify_) {
      auto range = watchers_.equal_range(id);
      for (auto it = range.first; it != range.second; ++it) to_call.push_back(it->second);
    }
    pending_notify_.clear();
  }
  for (auto& w : to_call) {
    absl::MutexLock l(&w->mu);
    if (w->alive) w->fn();
  }
}

void BuildController::SendLocked(const std::string& agent_id, const CoordinatorMessage& msg) {
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.conn == nullptr) return;
  it->second.conn->Send(msg);
}

kiln::v1::BuildJob BuildController::JobFor(const Build& b) const {
  kiln::v1::BuildJob job;
  job.set_build_id(b.id());
  job.set_build_number(b.build_number());
  job.set_project_name(b.project_name());
  *job.mutable_source() = b.source();
  job.set_source_version(b.source_version());
  *job.mutable_environment_variables() = b.environment_variables();
  job.set_timeout_millis(int64_t{b.timeout_in_minutes()} * options_.minute_millis);
  if (b.has_webhook()) *job.mutable_webhook() = b.webhook();
  if (b.has_environment()) *job.mutable_environment() = b.environment();
  job.set_initiator(b.initiator());
  job.set_start_time_unix_millis(ToMillis(b.start_time()));
  return job;
}

void BuildController::SendRunPhaseLocked(const ActiveBuild& ab) {
  CoordinatorMessage msg;
  auto* run = msg.mutable_run_phase();
  run->set_build_id(ab.build.id());
  run->set_phase(ab.build.current_phase());
  run->set_build_succeeding(!ab.build.failing());
  if (ab.build.current_phase() == BuildPhaseType::PROVISIONING) {
    *run->mutable_job() = JobFor(ab.build);
    auto next_seq = options_.logs->NextSeq(ab.build.id());
    run->mutable_job()->set_first_log_seq(next_seq.ok() ? *next_seq : 0);
  }
  SendLocked(ab.build.agent_id(), msg);
}

// ---------------------------------------------------------------------------------------------
// Scheduling and phase transitions

void BuildController::ScheduleLocked() {
  if (!store_error_.ok()) return;
  std::vector<Assignment> assignments = scheduler_.Schedule();
  if (assignments.empty()) return;
  const int64_t now = options_.clock->NowUnixMillis();
  WriteBatch batch;
  std::vector<ActiveBuild*> dispatched;
  for (const Assignment& a : assignments) {
    auto it = active_.find(a.build_id);
    if (it == active_.end()) {  // cannot happen: the scheduler only knows active builds
      scheduler_.Release(a.build_id);
      continue;
    }
    ActiveBuild& ab = it->second;
    Build& b = ab.build;
    if (BuildPhase* p = CurrentPhase(b)) EndPhase(p, BuildStatus::SUCCEEDED, now);
    BeginPhase(b, BuildPhaseType::PROVISIONING, now);
    b.set_agent_id(a.agent_id);
    ab.lease_deadline_millis = now + options_.lease_millis;
    b.set_lease_expires_unix_millis(ab.lease_deadline_millis);
    agents_[a.agent_id].builds.insert(b.id());
    batch.Put(BuildKey(b.id()), b.SerializeAsString());
    dispatched.push_back(&ab);
  }
  if (!store_error_.ok()) return;
  absl::Status s = options_.store->Write(batch);
  if (!s.ok()) {
    KILN_LOG(ERROR) << "store write failed; coordinator is now unhealthy: " << s;
    store_error_ = s;
    return;  // nothing is sent; a restart reloads the builds as they were (queued)
  }
  for (ActiveBuild* ab : dispatched) {
    SendRunPhaseLocked(*ab);
    NotifyLocked(ab->build.id());
  }
}

void BuildController::CompleteLocked(ActiveBuild& ab) {
  Build& b = ab.build;
  const int64_t now = options_.clock->NowUnixMillis();
  if (BuildPhase* p = CurrentPhase(b); p != nullptr && p->phase_status() == BuildStatus::IN_PROGRESS) {
    EndPhase(p, BuildStatus::SUCCEEDED, now);
  }
  BuildPhase* done = b.add_phases();
  done->set_phase_type(BuildPhaseType::COMPLETED);
  *done->mutable_start_time() = ToTimestamp(now);
  b.set_current_phase(BuildPhaseType::COMPLETED);
  BuildStatus::Value final_status = FinalStatus(b);
  // A stop that raced with a phase finishing (or failing) still ends the build STOPPED.
  if (b.stop_requested() && (final_status == BuildStatus::SUCCEEDED || final_status == BuildStatus::FAILED)) {
    final_status = BuildStatus::STOPPED;
  }
  b.set_build_status(final_status);
  b.set_build_complete(true);
  *b.mutable_end_time() = ToTimestamp(now);
  auto size = options_.logs->Size(b.id());
  if (size.ok()) b.set_log_size_bytes(*size);
  WriteBatch batch;
  batch.Delete(ActiveKey(b.id()));
  if (!PersistLocked(b, batch).ok()) return;
  options_.logs->Close(b.id());
  builds_completed_[BuildStatus::Value_Name(b.build_status())]++;
  const std::string id = b.id();
  const std::string agent = b.agent_id();
  scheduler_.Release(id);
  if (!agent.empty()) {
    agents_[agent].builds.erase(id);
    CoordinatorMessage msg;
    msg.mutable_release_build()->set_build_id(id);
    SendLocked(agent, msg);
  }
  NotifyLocked(id);
  active_.erase(id);  // `ab` is dangling from here on
}

void BuildController::AdvanceLocked(ActiveBuild& ab, BuildPhaseType::Value next) {
  Build& b = ab.build;
  if (b.stop_requested() && next != BuildPhaseType::COMPLETED) {
    next = BuildPhaseType::FINALIZING;
    b.set_failing(true);
  }
  if (next == BuildPhaseType::COMPLETED) {
    CompleteLocked(ab);
    return;
  }
  BeginPhase(b, next, options_.clock->NowUnixMillis());
  WriteBatch batch;
  if (!PersistLocked(b, batch).ok()) return;
  SendRunPhaseLocked(ab);
  NotifyLocked(b.id());
}

void BuildController::ApplyPhaseResultLocked(const std::string& agent_id,
                                             const kiln::v1::PhaseResult& r) {
  auto it = active_.find(r.build_id());
  if (it == active_.end()) return;  // completed already: a duplicate
  ActiveBuild& ab = it->second;
  Build& b = ab.build;
  BuildPhase* p = CurrentPhase(b);
  if (b.agent_id() != agent_id || p == nullptr || b.current_phase() != r.phase() ||
      p->phase_status() != BuildStatus::IN_PROGRESS) {
    return;  // duplicate or stale result
  }
  BuildStatus::Value status = r.status();
  if (status != BuildStatus::SUCCEEDED && status != BuildStatus::FAILED &&
      status != BuildStatus::FAULT && status != BuildStatus::TIMED_OUT &&
      status != BuildStatus::STOPPED) {
    status = BuildStatus::FAULT;
  }
  EndPhase(p, status, options_.clock->NowUnixMillis());
  *p->mutable_contexts() = r.contexts();
  if (!r.resolved_source_version().empty()) b.set_resolved_source_version(r.resolved_source_version());
  for (const auto& [k, v] : r.exported_variables()) (*b.mutable_exported_variables())[k] = v;
  if (r.cache_saved()) scheduler_.AddWarmProject(agent_id, b.project_name());
  if (r.phase() == BuildPhaseType::UPLOAD_ARTIFACTS) {
    *b.mutable_reports() = r.reports();
    for (const auto& a : r.artifacts()) {
      // Only blobs the store holds, with the size it holds, are recorded.
      absl::StatusOr<int64_t> size = options_.artifacts != nullptr
                                         ? options_.artifacts->BlobSize(a.sha256())
                                         : absl::FailedPreconditionError("no artifact store");
      if (!size.ok() || *size != a.size_bytes()) {
        status = BuildStatus::FAILED;
        auto* ctx = p->add_contexts();
        ctx->set_status_code("CLIENT_ERROR");
        ctx->set_message(absl::StrCat("artifact ", a.identifier().empty() ? a.name() : a.identifier(),
                                      " was not stored by the coordinator: ",
                                      size.ok() ? "size mismatch" : size.status().ToString()));
        continue;
      }
      *b.add_artifacts() = a;
    }
    if (status != BuildStatus::SUCCEEDED) EndPhase(p, status, options_.clock->NowUnixMillis());
  }
  if (status != BuildStatus::SUCCEEDED) b.set_failing(true);
  kiln::v1::PhaseResult effective = r;
  effective.set_status(status);
  AdvanceLocked(ab, NextPhase(effective));
}

void BuildController::FailWithoutAgentLocked(ActiveBuild& ab, BuildStatus::Value status,
                                             const std::string& code, const std::string& message) {
  Build& b = ab.build;
  const int64_t now = options_.clock->NowUnixMillis();
  BuildPhase* p = CurrentPhase(b);
  if (p != nullptr && p->phase_status() == BuildStatus::IN_PROGRESS) {
    EndPhase(p, status, now);
    auto* ctx = p->add_contexts();
    ctx->set_status_code(code);
    ctx->set_message(message);
  }
  b.set_failing(true);
  KILN_LOG(WARNING) << "build " << b.id() << " ends " << BuildStatus::Value_Name(status) << ": "
                    << message;
  CompleteLocked(ab);
}

void BuildController::RequeueLocked(ActiveBuild& ab) {
  Build& b = ab.build;
  const int64_t now = options_.clock->NowUnixMillis();
  // Drop the PROVISIONING attempt; the build returns to its place in the queue.
  if (b.phases_size() > 0 && b.phases(b.phases_size() - 1).phase_type() == BuildPhaseType::PROVISIONING) {
    b.mutable_phases()->RemoveLast();
  }
  if (BuildPhase* q = CurrentPhase(b); q != nullptr && q->phase_type() == BuildPhaseType::QUEUED) {
    q->set_phase_status(BuildStatus::IN_PROGRESS);
    q->clear_end_time();
    q->set_duration_in_millis(0);
    q->set_duration_in_seconds(0);
  }
  b.set_current_phase(BuildPhaseType::QUEUED);
  const std::string old_agent = b.agent_id();
  b.clear_agent_id();
  b.set_lease_expires_unix_millis(0);
  WriteBatch batch;
  if (!PersistLocked(b, batch).ok()) return;
  scheduler_.Release(b.id());
  agents_[old_agent].builds.erase(b.id());
  ab.queued_at_millis = ab.queued_at_millis ? ab.queued_at_millis : now;
  Labels labels(b.agent_labels().begin(), b.agent_labels().end());
  scheduler_.Enqueue({b.id(), b.project_name(), b.queue_seq(), labels});
  KILN_LOG(WARNING) << "build " << b.id() << " requeued: agent " << old_agent
                    << " lost before the build started";
  NotifyLocked(b.id());
}

// ---------------------------------------------------------------------------------------------
// Projects

absl::StatusOr<Project> BuildController::PutProject(Project project) {
  KILN_RETURN_IF_ERROR(common::ValidateProject(project));
  absl::MutexLock l(&mu_);
  if (!store_error_.ok()) return store_error_;
  const int64_t now = options_.clock->NowUnixMillis();
  auto existing = projects_.find(project.name());
  *project.mutable_created() =
      existing != projects_.end() ? existing->second.created() : ToTimestamp(now);
  *project.mutable_last_modified() = ToTimestamp(now);
  WriteBatch batch;
  batch.Put(ProjectKey(project.name()), project.SerializeAsString());
  absl::Status s = options_.store->Write(batch);
  if (!s.ok()) {
    store_error_ = s;
    return s;
  }
  scheduler_.SetProjectLimit(project.name(), project.concurrent_build_limit());
  projects_[project.name()] = project;
  ScheduleLocked();  // a raised limit may let queued builds run
  return project;
}

absl::StatusOr<std::vector<Project>> BuildController::ListProjects() {
  absl::MutexLock l(&mu_);
  std::vector<Project> out;
  for (const auto& [name, p] : projects_) out.push_back(p);
  return out;
}

absl::StatusOr<Project> BuildController::GetProject(const std::string& name) {
  absl::MutexLock l(&mu_);
  auto it = projects_.find(name);
  if (it == projects_.end()) return absl::NotFoundError(absl::StrCat("project ", name, " not found"));
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Builds

absl::StatusOr<Build> BuildController::StartBuild(const kiln::v1::StartBuildRequest& req,
                                                  const kiln::v1::WebhookTrigger* trigger) {
  Build result;
  {
    absl::MutexLock l(&mu_);
    if (!store_error_.ok()) return store_error_;
    auto pit = projects_.find(req.project_name());
    if (pit == projects_.end()) {
      return absl::NotFoundError(absl::StrCat("project ", req.project_name(), " not found"));
    }
    const Project& project = pit->second;
    for (const auto& v : req.environment_variables_override()) {
      if (v.name().empty() || v.name().rfind("CODEBUILD_", 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "environment_variables_override: invalid name '", v.name(),
            "' (must be non-empty and must not start with CODEBUILD_)"));
      }
    }
    if (req.timeout_in_minutes_override() != 0 &&
        (req.timeout_in_minutes_override() < 5 || req.timeout_in_minutes_override() > 2160)) {
      return absl::InvalidArgumentError("timeout_in_minutes_override must be within 5..2160");
    }
    const int limit = project.concurrent_build_limit();
    if (project.on_limit() == kiln::v1::OnLimit::REJECT && limit > 0 &&
        scheduler_.RunningCount(project.name()) + scheduler_.QueuedCount(project.name()) >= limit) {
      // CodeBuild: builds over a project's concurrentBuildLimit are refused, not queued.
      return absl::ResourceExhaustedError(
          absl::StrCat("Cannot have more than ", limit, " active builds for the project"));
    }

    const int64_t now = options_.clock->NowUnixMillis();
    const int64_t number = build_numbers_[project.name()] + 1;
    const int64_t seq = next_queue_seq_;
    ActiveBuild ab;
    Build& b = ab.build;
    b.set_id(absl::StrCat(project.name(), ":", common::NewUuid()));
    b.set_build_number(number);
    b.set_project_name(project.name());
    b.set_build_status(BuildStatus::IN_PROGRESS);
    b.set_source_version(req.source_version().empty() ? project.source().branch() : req.source_version());
    *b.mutable_start_time() = ToTimestamp(now);
    b.set_initiator(req.initiator().empty() ? "kiln-cli" : req.initiator());
    b.set_timeout_in_minutes(req.timeout_in_minutes_override() ? req.timeout_in_minutes_override()
                             : project.timeout_in_minutes() ? project.timeout_in_minutes()
                                                            : kDefaultTimeoutMinutes);
    b.set_queued_timeout_in_minutes(project.queued_timeout_in_minutes()
                                        ? project.queued_timeout_in_minutes()
                                        : kDefaultQueuedTimeoutMinutes);
    // Project variables, then overrides replacing same-named ones (CodeBuild precedence).
    std::vector<kiln::v1::EnvironmentVariable> env(project.environment_variables().begin(),
                                                   project.environment_variables().end());
    for (const auto& o : req.environment_variables_override()) {
      auto same = std::find_if(env.begin(), env.end(), [&](const auto& e) { return e.name() == o.name(); });
      if (same != env.end()) *same = o; else env.push_back(o);
    }
    for (auto& e : env) *b.add_environment_variables() = e;
    *b.mutable_source() = project.source();
    if (trigger != nullptr) *b.mutable_webhook() = *trigger;
    if (project.has_environment()) *b.mutable_environment() = project.environment();
    *b.mutable_agent_labels() = project.agent_labels();
    b.set_queue_seq(seq);
    b.set_failing(false);
    BuildPhase* submitted = b.add_phases();
    submitted->set_phase_type(BuildPhaseType::SUBMITTED);
    *submitted->mutable_start_time() = ToTimestamp(now);
    EndPhase(submitted, BuildStatus::SUCCEEDED, now);
    BeginPhase(b, BuildPhaseType::QUEUED, now);
    ab.queued_at_millis = now;

    WriteBatch batch;
    batch.Put(ActiveKey(b.id()), "");
    batch.Put(absl::StrCat("build-by-project/", project.name(), "/", Pad(number)), b.id());
    batch.Put(absl::StrCat("build-by-time/", Pad(seq)), b.id());
    batch.Put(absl::StrCat("counter/build_number/", project.name()), absl::StrCat(number));
    batch.Put("counter/queue_seq", absl::StrCat(seq + 1));
    KILN_RETURN_IF_ERROR(PersistLocked(b, batch));
    build_numbers_[project.name()] = number;
    next_queue_seq_ = seq + 1;
    builds_submitted_++;
    Labels labels(b.agent_labels().begin(), b.agent_labels().end());
    scheduler_.Enqueue({b.id(), b.project_name(), seq, labels});
    const std::string id = b.id();
    active_[id] = std::move(ab);
    ScheduleLocked();
    if (auto loaded = LoadBuildLocked(id); loaded.ok()) result = *std::move(loaded);
  }
  FlushNotifications();
  return result;
}

absl::StatusOr<Build> BuildController::LoadBuildLocked(const std::string& id) {
  auto it = active_.find(id);
  if (it != active_.end()) return it->second.build;
  KILN_ASSIGN_OR_RETURN(auto value, options_.store->Get(BuildKey(id)));
  if (!value.has_value()) return absl::NotFoundError(absl::StrCat("build ", id, " not found"));
  Build b;
  if (!b.ParseFromString(*value)) return Corrupt(BuildKey(id));
  return b;
}

absl::StatusOr<Build> BuildController::GetBuild(const std::string& id) {
  absl::MutexLock l(&mu_);
  KILN_ASSIGN_OR_RETURN(Build b, LoadBuildLocked(id));
  if (!b.build_complete()) {
    auto size = options_.logs->Size(id);
    if (size.ok()) b.set_log_size_bytes(*size);
  }
  return b;
}

absl::StatusOr<std::vector<Build>> BuildController::ListBuilds(const std::string& project, int limit) {
  limit = std::clamp(limit <= 0 ? 100 : limit, 1, 1000);
  absl::MutexLock l(&mu_);
  std::string prefix = project.empty() ? "build-by-time/" : absl::StrCat("build-by-project/", project, "/");
  KILN_ASSIGN_OR_RETURN(auto index, options_.store->Scan(prefix, limit, /*reverse=*/true));
  std::vector<Build> out;
  for (const auto& [key, id] : index) {
    auto b = LoadBuildLocked(id);
    if (b.ok()) out.push_back(*std::move(b));
  }
  return out;
}

absl::StatusOr<Build> BuildController::StopBuild(const std::string& id) {
  Build result;
  {
    absl::MutexLock l(&mu_);
    auto it = active_.find(id);
    if (it == active_.end()) return LoadBuildLocked(id);  // completed (no-op) or NotFound
    ActiveBuild& ab = it->second;
    Build& b = ab.build;
    if (b.current_phase() == BuildPhaseType::QUEUED) {
      scheduler_.RemoveQueued(id);
      b.set_stop_requested(true);
      FailWithoutAgentLocked(ab, BuildStatus::STOPPED, "BUILD_STOPPED", "Build was stopped while queued");
    } else if (!b.stop_requested()) {
      b.set_stop_requested(true);
      WriteBatch batch;
      KILN_RETURN_IF_ERROR(PersistLocked(b, batch));
      auto agent = agents_.find(b.agent_id());
      if (agent != agents_.end() && agent->second.conn != nullptr) {
        CoordinatorMessage msg;
        auto* stop = msg.mutable_stop_build();
        stop->set_build_id(id);
        stop->set_status(BuildStatus::STOPPED);
        stop->set_reason("Build was stopped by a user request");
        agent->second.conn->Send(msg);
      } else {
        FailWithoutAgentLocked(ab, BuildStatus::STOPPED, "BUILD_STOPPED",
                               "Build was stopped while its agent was disconnected");
      }
    }
    KILN_ASSIGN_OR_RETURN(result, LoadBuildLocked(id));
    ScheduleLocked();
  }
  FlushNotifications();
  return result;
}

absl::StatusOr<std::unique_ptr<BuildWatch>> BuildController::Watch(const std::string& build_id,
                                                                   std::function<void()> on_change) {
  {
    absl::MutexLock l(&mu_);
    KILN_RETURN_IF_ERROR(LoadBuildLocked(build_id).status());
  }
  auto w = std::make_shared<Watcher>();
  w->fn = std::move(on_change);
  absl::MutexLock l(&watch_mu_);
  watchers_.emplace(build_id, w);
  return std::unique_ptr<BuildWatch>(new WatchImpl(this, build_id, w));
}

absl::StatusOr<std::string> BuildController::ReadLog(const std::string& build_id, int64_t offset,
                                                     int64_t max_bytes) {
  return options_.logs->Read(build_id, offset, max_bytes);
}

// ---------------------------------------------------------------------------------------------
// Parameters

absl::StatusOr<int64_t> BuildController::PutParameter(const kiln::v1::PutParameterRequest& r) {
  return options_.params->Put(r.name(), r.value(), r.type(), r.overwrite());
}

absl::StatusOr<std::vector<kiln::v1::Parameter>> BuildController::ListParameters() {
  return options_.params->List();
}

absl::StatusOr<std::string> BuildController::GetParameterValue(const std::string& name) {
  KILN_ASSIGN_OR_RETURN(kiln::v1::Parameter p, options_.params->Get(name));
  return p.value();
}

// ---------------------------------------------------------------------------------------------
// Agents

absl::Status BuildController::AgentConnected(const kiln::v1::AgentHello& hello, AgentConnection* conn) {
  if (hello.protocol_version() != kiln::v1::ProtocolVersion::V1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "agent protocol version ", hello.protocol_version(), " is not supported; this coordinator speaks V1"));
  }
  if (!ValidAgentId(hello.agent_id())) {
    return absl::InvalidArgumentError("agent_id must be 1..128 characters of [A-Za-z0-9._-]");
  }
  if (hello.slots() < 1 || hello.slots() > 1024) {
    return absl::InvalidArgumentError("slots must be within 1..1024");
  }
  for (const auto& [k, v] : hello.labels()) {
    if (k.empty() || k.size() > 128 || v.size() > 128) {
      return absl::InvalidArgumentError("label keys must be 1..128 bytes and values at most 128 bytes");
    }
  }
  {
    absl::MutexLock l(&mu_);
    const std::string& id = hello.agent_id();
    const int64_t now = options_.clock->NowUnixMillis();
    AgentState& a = agents_[id];
    a.conn = conn;
    a.info.set_agent_id(id);
    a.info.set_hostname(hello.hostname());
    *a.info.mutable_labels() = hello.labels();
    a.info.set_slots(hello.slots());
    a.info.set_connected(true);
    a.info.set_last_seen_unix_millis(now);
    WriteBatch batch;
    batch.Put("agent/" + id, a.info.SerializeAsString());
    if (store_error_.ok()) {
      absl::Status s = options_.store->Write(batch);
      if (!s.ok()) store_error_ = s;
    }

    CoordinatorMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_millis(options_.heartbeat_interval_millis);
    welcome.mutable_welcome()->set_lease_millis(options_.lease_millis);
    conn->Send(welcome);

    // Re-attach what the agent still holds; fail what it lost; release what we no longer track.
    std::map<std::string, kiln::v1::HeldBuild> held;
    for (const auto& h : hello.held_builds()) held[h.build_id()] = h;
    std::vector<std::string> mine(a.builds.begin(), a.builds.end());
    for (const std::string& bid : mine) {
      auto it = active_.find(bid);
      if (it == active_.end()) continue;
      ActiveBuild& ab = it->second;
      auto h = held.find(bid);
      if (h == held.end()) {
        if (ab.build.current_phase() == BuildPhaseType::PROVISIONING) {
          ab.lease_deadline_millis = now + options_.lease_millis;
          SendRunPhaseLocked(ab);  // PROVISIONING never reached the agent: send it again
        } else {
          FailWithoutAgentLocked(ab, BuildStatus::FAULT, "AGENT_LOST",
                                 absl::StrCat("agent ", id, " reconnected without this build (agent restarted?)"));
        }
        continue;
      }
      ab.lease_deadline_millis = now + options_.lease_millis;
      if (h->second.phase() < ab.build.current_phase()) SendRunPhaseLocked(ab);
      // Same phase: still running, or the agent resends its result after this hello.
      held.erase(h);
    }
    for (const auto& [bid, h] : held) {
      CoordinatorMessage release;
      release.mutable_release_build()->set_build_id(bid);
      conn->Send(release);
    }
    scheduler_.AddAgent(id, Labels(hello.labels().begin(), hello.labels().end()), hello.slots());
    scheduler_.SetWarmProjects(id, std::set<std::string>(hello.warm_cache_projects().begin(),
                                                         hello.warm_cache_projects().end()));
    KILN_LOG(INFO) << "agent " << id << " connected (" << hello.slots() << " slots, "
                   << hello.held_builds_size() << " held builds)";
    ScheduleLocked();
  }
  FlushNotifications();
  for (AgentExtension* e : extensions_) e->OnAgentConnected(hello);
  return absl::OkStatus();
}

void BuildController::AddAgentExtension(AgentExtension* extension) {
  extensions_.push_back(extension);
}

bool BuildController::SendToAgent(const std::string& agent_id, const CoordinatorMessage& message) {
  absl::MutexLock l(&mu_);
  auto it = agents_.find(agent_id);
  if (it == agents_.end() || it->second.conn == nullptr) return false;
  it->second.conn->Send(message);
  return true;
}

bool BuildController::HandleAgentMessage(const std::string& agent_id,
                                         const kiln::v1::AgentMessage& m) {
  if (m.kind_case() == kiln::v1::AgentMessage::kDeployEventResult ||
      m.kind_case() == kiln::v1::AgentMessage::kDeployLog) {
    for (AgentExtension* e : extensions_) e->OnAgentMessage(agent_id, m);
  }
  bool keep_stream = true;
  {
    absl::MutexLock l(&mu_);
    auto ait = agents_.find(agent_id);
    if (ait == agents_.end()) return true;
    AgentState& a = ait->second;
    const int64_t now = options_.clock->NowUnixMillis();
    a.info.set_last_seen_unix_millis(now);
    for (const std::string& bid : a.builds) {
      auto it = active_.find(bid);
      if (it != active_.end()) it->second.lease_deadline_millis = now + options_.lease_millis;
    }
    switch (m.kind_case()) {
      case kiln::v1::AgentMessage::kLogChunk: {
        const auto& c = m.log_chunk();
        auto it = active_.find(c.build_id());
        if (it == active_.end() || it->second.build.agent_id() != agent_id) {
          // A late resend for a completed build, or not this agent's build: acknowledged so the
          // agent drops it, never stored (a completed build's log is final).
          CoordinatorMessage ack;
          ack.mutable_log_ack()->set_build_id(c.build_id());
          ack.mutable_log_ack()->set_acked_seq(c.seq());
          if (a.conn) a.conn->Send(ack);
          break;
        }
        auto appended = c.data().size() > (256 << 10)
                            ? absl::StatusOr<bool>(absl::InvalidArgumentError("log chunk over 256 KiB"))
                            : options_.logs->Append(c.build_id(), c.seq(), c.data());
        if (!appended.ok()) {
          // Not stored: every later chunk would be a gap. End the stream; the agent reconnects and
          // resends everything unacknowledged, in order.
          KILN_LOG(WARNING) << "log chunk " << c.seq() << " of " << c.build_id() << " from agent "
                            << agent_id << " not stored (" << appended.status()
                            << "); asking the agent to reconnect";
          a.resync_requested = true;
          break;
        }
        if (*appended) {
          log_bytes_ += static_cast<int64_t>(c.data().size());
          NotifyLocked(c.build_id());
        }
        // Acks are cumulative: every 16th chunk, resent duplicates, and before each phase result
        // is applied (below), so the agent's resend buffer stays small without one ack per chunk.
        if (!*appended || c.seq() % 16 == 15) {
          CoordinatorMessage ack;
          ack.mutable_log_ack()->set_build_id(c.build_id());
          ack.mutable_log_ack()->set_acked_seq(c.seq());
          if (a.conn) a.conn->Send(ack);
        }
        break;
      }
      case kiln::v1::AgentMessage::kPhaseResult:
        if (auto it = active_.find(m.phase_result().build_id());
            it == active_.end() || it->second.build.agent_id() != agent_id) {
          break;  // stale: the build completed or moved on
        }
        if (auto next = options_.logs->NextSeq(m.phase_result().build_id()); next.ok() && *next > 0) {
          CoordinatorMessage ack;
          ack.mutable_log_ack()->set_build_id(m.phase_result().build_id());
          ack.mutable_log_ack()->set_acked_seq(*next - 1);
          if (a.conn) a.conn->Send(ack);
        }
        ApplyPhaseResultLocked(agent_id, m.phase_result());
        ScheduleLocked();
        break;
      default:  // heartbeat: the lease renewal above is all
        break;
    }
    if (a.resync_requested) {
      a.resync_requested = false;
      keep_stream = false;
    }
  }
  FlushNotifications();
  return keep_stream;
}

void BuildController::AgentDisconnected(const std::string& agent_id, AgentConnection* conn) {
  {
    absl::MutexLock l(&mu_);
    auto it = agents_.find(agent_id);
    if (it == agents_.end() || it->second.conn != conn) return;
    it->second.conn = nullptr;
    it->second.info.set_connected(false);
    scheduler_.RemoveAgent(agent_id);
    KILN_LOG(INFO) << "agent " << agent_id << " disconnected; " << it->second.builds.size()
                   << " builds keep their lease";
  }
  for (AgentExtension* e : extensions_) e->OnAgentDisconnected(agent_id);
}

absl::StatusOr<kiln::v1::GetBuildParametersResponse> BuildController::GetBuildParameters(
    const kiln::v1::GetBuildParametersRequest& req) {
  KILN_RETURN_IF_ERROR(CheckBuildHeldBy(req.agent_id(), req.build_id()));
  KILN_ASSIGN_OR_RETURN(auto resolved, options_.params->Resolve(
      std::vector<std::string>(req.names().begin(), req.names().end())));
  kiln::v1::GetBuildParametersResponse resp;
  for (auto& p : resolved.parameters) *resp.add_parameters() = std::move(p);
  for (auto& n : resolved.missing) resp.add_missing(n);
  return resp;
}

absl::Status BuildController::CheckBuildHeldBy(const std::string& agent_id,
                                               const std::string& build_id) {
  absl::MutexLock l(&mu_);
  auto it = active_.find(build_id);
  if (it == active_.end()) {
    return absl::NotFoundError(absl::StrCat("build ", build_id, " is not running"));
  }
  if (it->second.build.agent_id() != agent_id) {
    return absl::PermissionDeniedError(
        absl::StrCat("build ", build_id, " is not assigned to agent ", agent_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<kiln::v1::BuildArtifact> BuildController::FindArtifact(const std::string& build_id,
                                                                      const std::string& name) {
  KILN_ASSIGN_OR_RETURN(Build b, GetBuild(build_id));
  std::vector<std::string> known;
  for (const auto& a : b.artifacts()) {
    if (name.empty() ? a.identifier().empty() : (a.identifier() == name || a.name() == name)) {
      return a;
    }
    known.push_back(a.identifier().empty() ? absl::StrCat(a.name(), " (primary)") : a.identifier());
  }
  if (known.empty()) {
    return absl::NotFoundError(absl::StrCat("build ", build_id, " has no artifacts"));
  }
  return absl::NotFoundError(absl::StrCat("build ", build_id, " has no artifact ",
                                          name.empty() ? "(primary)" : name, "; it has ",
                                          absl::StrJoin(known, ", ")));
}

std::vector<kiln::v1::AgentInfo> BuildController::ListAgents() {
  absl::MutexLock l(&mu_);
  std::vector<kiln::v1::AgentInfo> out;
  for (const auto& [id, a] : agents_) {
    if (a.info.agent_id().empty()) continue;
    kiln::v1::AgentInfo info = a.info;
    info.set_running_builds(static_cast<int32_t>(a.builds.size()));
    out.push_back(std::move(info));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Time

void BuildController::Tick() {
  {
    absl::MutexLock l(&mu_);
    const int64_t now = options_.clock->NowUnixMillis();
    std::vector<std::string> queued_timeouts, lost, requeue, overdue;
    for (auto& [id, ab] : active_) {
      const Build& b = ab.build;
      if (b.current_phase() == BuildPhaseType::QUEUED) {
        if (now - ab.queued_at_millis >
            int64_t{b.queued_timeout_in_minutes()} * options_.minute_millis) {
          queued_timeouts.push_back(id);
        }
        continue;
      }
      if (ab.lease_deadline_millis > 0 && now > ab.lease_deadline_millis) {
        (b.current_phase() == BuildPhaseType::PROVISIONING ? requeue : lost).push_back(id);
        continue;
      }
      // The agent enforces the build timeout; this is the backstop if it cannot.
      int64_t provisioning_start = now;
      for (const auto& p : b.phases()) {
        if (p.phase_type() == BuildPhaseType::PROVISIONING) provisioning_start = ToMillis(p.start_time());
      }
      if (now - provisioning_start >
          int64_t{b.timeout_in_minutes()} * options_.minute_millis + 2 * options_.lease_millis) {
        overdue.push_back(id);
      }
    }
    for (const auto& id : queued_timeouts) {
      auto it = active_.find(id);
      if (it == active_.end()) continue;
      scheduler_.RemoveQueued(id);
      FailWithoutAgentLocked(it->second, BuildStatus::TIMED_OUT, "QUEUED_TIMEOUT",
                             absl::StrCat("Build was queued longer than ",
                                          it->second.build.queued_timeout_in_minutes(), " minutes"));
    }
    for (const auto& id : requeue) {
      auto it = active_.find(id);
      if (it != active_.end()) RequeueLocked(it->second);
    }
    for (const auto& id : lost) {
      auto it = active_.find(id);
      if (it == active_.end()) continue;
      FailWithoutAgentLocked(it->second, BuildStatus::FAULT, "AGENT_LOST",
                             absl::StrCat("agent ", it->second.build.agent_id(),
                                          " stopped responding; its lease expired"));
    }
    for (const auto& id : overdue) {
      auto it = active_.find(id);
      if (it == active_.end()) continue;
      CoordinatorMessage stop;
      stop.mutable_stop_build()->set_build_id(id);
      stop.mutable_stop_build()->set_status(BuildStatus::TIMED_OUT);
      stop.mutable_stop_build()->set_reason("Build has timed out. ");
      SendLocked(it->second.build.agent_id(), stop);
      FailWithoutAgentLocked(it->second, BuildStatus::TIMED_OUT, "BUILD_TIMED_OUT", "Build has timed out. ");
    }
    ScheduleLocked();
  }
  FlushNotifications();
}

std::string BuildController::MetricsText() {
  absl::MutexLock l(&mu_);
  int connected = 0;
  for (const auto& [id, a] : agents_) connected += a.conn != nullptr;
  std::string out;
  absl::StrAppend(&out, "# HELP kiln_builds_submitted_total Builds submitted since the coordinator started.\n",
                  "# TYPE kiln_builds_submitted_total counter\n",
                  "kiln_builds_submitted_total ", builds_submitted_, "\n",
                  "# HELP kiln_builds_completed_total Builds completed since the coordinator started, by status.\n",
                  "# TYPE kiln_builds_completed_total counter\n");
  for (const auto& [status, n] : builds_completed_) {
    absl::StrAppend(&out, "kiln_builds_completed_total{status=\"", status, "\"} ", n, "\n");
  }
  absl::StrAppend(&out, "# HELP kiln_builds_queued Builds waiting in the queue.\n# TYPE kiln_builds_queued gauge\n",
                  "kiln_builds_queued ", scheduler_.TotalQueued(), "\n",
                  "# HELP kiln_builds_running Builds assigned to agents.\n# TYPE kiln_builds_running gauge\n",
                  "kiln_builds_running ", scheduler_.TotalRunning(), "\n",
                  "# HELP kiln_agents_connected Agents with an open stream.\n# TYPE kiln_agents_connected gauge\n",
                  "kiln_agents_connected ", connected, "\n",
                  "# HELP kiln_agent_free_slots Free build slots over connected agents.\n# TYPE kiln_agent_free_slots gauge\n",
                  "kiln_agent_free_slots ", scheduler_.FreeSlots(), "\n",
                  "# HELP kiln_log_bytes_total Log bytes stored since the coordinator started.\n# TYPE kiln_log_bytes_total counter\n",
                  "kiln_log_bytes_total ", log_bytes_, "\n",
                  "# HELP kiln_store_healthy 1 while every store write has succeeded.\n# TYPE kiln_store_healthy gauge\n",
                  "kiln_store_healthy ", store_error_.ok() ? 1 : 0, "\n");
  return out;
}

bool BuildController::Healthy() {
  absl::MutexLock l(&mu_);
  return store_error_.ok();
}

}  // namespace kiln::coordinator
