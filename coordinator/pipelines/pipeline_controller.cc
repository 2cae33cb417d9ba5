#include "coordinator/pipelines/pipeline_controller.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "coordinator/pipelines/pipeline_yaml.h"
#include "google/protobuf/util/time_util.h"

namespace kiln::coordinator {
namespace {

using ::absl::StrCat;
using ::kiln::v1::ActionExecution;
using ::kiln::v1::Pipeline;
using ::kiln::v1::PipelineAction;
using ::kiln::v1::PipelineExecution;
using ::kiln::v1::StageExecution;

// Statuses (§3.3 lists; "Waiting" is deploy.proto's pending approval).
constexpr char kInProgress[] = "InProgress";
constexpr char kSucceeded[] = "Succeeded";
constexpr char kFailed[] = "Failed";
constexpr char kSuperseded[] = "Superseded";
constexpr char kWaiting[] = "Waiting";

constexpr char kPipelinePrefix[] = "pipeline/";
constexpr char kActivePrefix[] = "pipeline-active/";
constexpr char kIdPrefix[] = "pipeline-execution-id/";
constexpr char kSeqCounter[] = "counter/pipeline_execution_seq";
constexpr size_t kMaxConfigValue = 1000;  // §3.2, characters after substitution
constexpr int kDefaultExecutions = 20;
constexpr int kMaxExecutions = 1000;

std::string SeqText(int64_t seq) { return absl::StrFormat("%020d", seq); }
std::string ExecPrefix(const std::string& pipeline) {
  return StrCat("pipeline-execution/", pipeline, "/");
}
std::string ExecKey(const std::string& pipeline, int64_t seq) {
  return StrCat(ExecPrefix(pipeline), SeqText(seq));
}
std::string VersionKey(const std::string& pipeline, int version) {
  return StrCat("pipeline-version/", pipeline, "/", absl::StrFormat("%010d", version));
}
std::string ActiveKey(int64_t seq) { return StrCat(kActivePrefix, SeqText(seq)); }

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  return google::protobuf::util::TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(t));
}
absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMillis(google::protobuf::util::TimeUtil::TimestampToMilliseconds(t));
}

int RunOrder(const PipelineAction& a) { return a.run_order() <= 0 ? 1 : a.run_order(); }
bool IsBuildLike(const std::string& category) { return category == "Build" || category == "Test"; }

ActionExecution* FindAction(StageExecution& st, const std::string& name) {
  for (ActionExecution& ae : *st.mutable_actions()) {
    if (ae.action() == name) return &ae;
  }
  return nullptr;
}
const PipelineAction* FindActionDef(const Pipeline& p, int stage, const std::string& name) {
  for (const PipelineAction& a : p.stages(stage).actions()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}
int FindStage(const Pipeline& p, const std::string& name) {
  for (int s = 0; s < p.stages_size(); ++s) {
    if (p.stages(s).name() == name) return s;
  }
  return -1;
}

// The first stage not Succeeded (stages_size() when all are).
int CurrentStage(const PipelineExecution& pe) {
  int k = 0;
  while (k < pe.stages_size() && pe.stages(k).status() == kSucceeded) ++k;
  return k;
}

// The action producing `artifact`: (stage, action, output index), or stage -1.
struct Producer {
  int stage = -1;
  const PipelineAction* action = nullptr;
  int output = 0;
};
Producer FindProducer(const Pipeline& p, const std::string& artifact) {
  for (int s = 0; s < p.stages_size(); ++s) {
    for (const PipelineAction& a : p.stages(s).actions()) {
      for (int i = 0; i < a.output_artifacts_size(); ++i) {
        if (a.output_artifacts(i) == artifact) return {s, &a, i};
      }
    }
  }
  return {};
}

void Finish(ActionExecution& ae, const char* status, std::string summary, absl::Time now) {
  ae.set_status(status);
  if (!summary.empty()) ae.set_summary(std::move(summary));
  *ae.mutable_end_time() = ToTimestamp(now);
}

template <typename M>
absl::StatusOr<M> ParseRecord(const std::string& key, const std::string& bytes) {
  M m;
  if (!m.ParseFromString(bytes)) return absl::DataLossError(StrCat("corrupt record ", key));
  return m;
}

}  // namespace

absl::StatusOr<std::string> SubstituteVariables(
    std::string_view text,
    const std::function<std::optional<std::string>(const std::string& ns, const std::string& var)>&
        lookup) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = text.find("#{", i);
    size_t end = start == std::string_view::npos ? start : text.find('}', start + 2);
    if (end == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, start - i));
    std::string ref(text.substr(start + 2, end - start - 2));
    size_t dot = ref.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == ref.size()) {
      return absl::InvalidArgumentError(
          StrCat("malformed variable reference #{", ref, "}; write #{namespace.variable}"));
    }
    std::optional<std::string> value = lookup(ref.substr(0, dot), ref.substr(dot + 1));
    if (!value) return absl::InvalidArgumentError(StrCat("unknown variable #{", ref, "}"));
    out += *value;
    i = end + 1;
  }
  return out;
}

PipelineController::PipelineController(const Options& options) : options_(options) {}
PipelineController::~PipelineController() = default;

absl::StatusOr<std::unique_ptr<PipelineController>> PipelineController::Create(
    const Options& options) {
  if (options.store == nullptr || options.builds == nullptr || options.clock == nullptr) {
    return absl::InvalidArgumentError("PipelineController needs a store, builds and a clock");
  }
  std::unique_ptr<PipelineController> c(new PipelineController(options));
  absl::MutexLock l(&c->mu_);
  KILN_RETURN_IF_ERROR(c->Load());
  return c;
}

absl::Status PipelineController::Load() {
  KILN_ASSIGN_OR_RETURN(auto pipelines, options_.store->Scan(kPipelinePrefix));
  for (const auto& [key, value] : pipelines) {
    KILN_ASSIGN_OR_RETURN(Pipeline p, ParseRecord<Pipeline>(key, value));
    pipelines_[p.name()] = std::move(p);
  }
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> counter, options_.store->Get(kSeqCounter));
  if (counter && !absl::SimpleAtoi(*counter, &last_seq_)) {
    return absl::DataLossError(StrCat("corrupt record ", kSeqCounter));
  }
  KILN_ASSIGN_OR_RETURN(auto active, options_.store->Scan(kActivePrefix));
  for (const auto& [key, name] : active) {
    int64_t seq = 0;
    if (!absl::SimpleAtoi(key.substr(strlen(kActivePrefix)), &seq)) {
      return absl::DataLossError(StrCat("corrupt key ", key));
    }
    const std::string exec_key = ExecKey(name, seq);
    KILN_ASSIGN_OR_RETURN(std::optional<std::string> bytes, options_.store->Get(exec_key));
    if (!bytes) return absl::DataLossError(StrCat(key, " names missing ", exec_key));
    Exec e;
    e.seq = seq;
    KILN_ASSIGN_OR_RETURN(e.pe, ParseRecord<PipelineExecution>(exec_key, *bytes));
    KILN_ASSIGN_OR_RETURN(e.def, VersionLocked(name, e.pe.pipeline_version()));
    live_[seq] = std::move(e);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Pipeline>> PipelineController::VersionLocked(
    const std::string& name, int version) {
  auto key = std::make_pair(name, version);
  if (auto it = versions_.find(key); it != versions_.end()) return it->second;
  const std::string store_key = VersionKey(name, version);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> bytes, options_.store->Get(store_key));
  if (!bytes) return absl::DataLossError(StrCat("missing pipeline version ", store_key));
  KILN_ASSIGN_OR_RETURN(Pipeline p, ParseRecord<Pipeline>(store_key, *bytes));
  auto shared = std::make_shared<const Pipeline>(std::move(p));
  versions_[key] = shared;
  return shared;
}

absl::Status PipelineController::WriteLocked(const WriteBatch& batch) {
  if (!store_error_.ok()) return store_error_;
  absl::Status s = options_.store->Write(batch);
  if (!s.ok()) {
    store_error_ = s;
    KILN_LOG(ERROR) << "pipeline store write failed; pipelines stop advancing: " << s;
  }
  return s;
}

bool PipelineController::Healthy() {
  absl::MutexLock l(&mu_);
  return store_error_.ok();
}

// ---- API ----

absl::StatusOr<Pipeline> PipelineController::PutPipeline(Pipeline pipeline) {
  KILN_RETURN_IF_ERROR(ValidatePipeline(pipeline));
  NormalizePipeline(pipeline);
  absl::MutexLock l(&mu_);
  if (!store_error_.ok()) return store_error_;
  auto existing = pipelines_.find(pipeline.name());
  pipeline.set_version(existing == pipelines_.end() ? 1 : existing->second.version() + 1);
  WriteBatch batch;
  const std::string bytes = pipeline.SerializeAsString();
  batch.Put(StrCat(kPipelinePrefix, pipeline.name()), bytes);
  batch.Put(VersionKey(pipeline.name(), pipeline.version()), bytes);
  KILN_RETURN_IF_ERROR(WriteLocked(batch));
  versions_[{pipeline.name(), pipeline.version()}] = std::make_shared<const Pipeline>(pipeline);
  pipelines_[pipeline.name()] = pipeline;
  AdvanceLocked();  // a new execution mode may unblock waiting executions
  return pipeline;
}

absl::StatusOr<kiln::v1::GetPipelineResponse> PipelineController::GetPipeline(
    const std::string& name, int max_executions) {
  if (max_executions < 0) {
    return absl::InvalidArgumentError(
        StrCat("max_executions ", max_executions, " is negative; use 0 for the default"));
  }
  const int limit = max_executions == 0 ? kDefaultExecutions : std::min(max_executions, kMaxExecutions);
  absl::MutexLock l(&mu_);
  auto it = pipelines_.find(name);
  if (it == pipelines_.end()) return absl::NotFoundError(StrCat("pipeline ", name, " not found"));
  kiln::v1::GetPipelineResponse resp;
  *resp.mutable_pipeline() = it->second;
  KILN_ASSIGN_OR_RETURN(auto execs, options_.store->Scan(ExecPrefix(name), limit, /*reverse=*/true));
  for (const auto& [key, value] : execs) {
    KILN_ASSIGN_OR_RETURN(*resp.add_executions(), ParseRecord<PipelineExecution>(key, value));
  }
  return resp;
}

absl::StatusOr<PipelineExecution> PipelineController::StartPipelineExecution(
    const std::string& name, const std::string& commit) {
  absl::MutexLock l(&mu_);
  if (!store_error_.ok()) return store_error_;
  auto it = pipelines_.find(name);
  if (it == pipelines_.end()) return absl::NotFoundError(StrCat("pipeline ", name, " not found"));
  KILN_ASSIGN_OR_RETURN(int64_t seq, CreateExecLocked(it->second, "manual", commit, ""));
  AdvanceLocked();
  return CurrentLocked(name, seq);
}

absl::StatusOr<std::vector<std::string>> PipelineController::OnSourceChange(
    const std::string& project, const std::string& branch, const std::string& commit,
    const std::string& trigger) {
  absl::MutexLock l(&mu_);
  if (!store_error_.ok()) return store_error_;
  std::optional<std::string> project_branch;
  std::vector<std::string> ids;
  for (const auto& [name, p] : pipelines_) {
    const auto& sources = p.stages(0).actions();
    bool uses = std::any_of(sources.begin(), sources.end(), [&](const PipelineAction& a) {
      auto it = a.configuration().find("project");
      return it != a.configuration().end() && it->second == project;
    });
    if (!uses) continue;
    if (!project_branch) {
      absl::StatusOr<kiln::v1::Project> proj = options_.builds->GetProject(project);
      if (absl::IsNotFound(proj.status())) return ids;
      KILN_RETURN_IF_ERROR(proj.status());
      project_branch = proj->source().branch().empty() ? "main" : proj->source().branch();
    }
    if (*project_branch != branch) continue;
    KILN_ASSIGN_OR_RETURN(auto newest, options_.store->Scan(ExecPrefix(name), 1, /*reverse=*/true));
    if (!newest.empty()) {
      KILN_ASSIGN_OR_RETURN(PipelineExecution last,
                            ParseRecord<PipelineExecution>(newest[0].first, newest[0].second));
      if (last.source_commit() == commit) continue;  // redelivery, or a poll after a webhook
    }
    KILN_ASSIGN_OR_RETURN(int64_t seq, CreateExecLocked(p, trigger, commit, project));
    ids.push_back(live_.at(seq).pe.id());
    KILN_LOG(INFO) << "pipeline " << name << ": execution " << ids.back() << " for " << project
                   << " " << branch << " at " << commit << " (" << trigger << ")";
  }
  AdvanceLocked();
  return ids;
}

absl::StatusOr<PipelineExecution> PipelineController::PutApprovalResult(
    const kiln::v1::PutApprovalResultRequest& req) {
  absl::MutexLock l(&mu_);
  if (!store_error_.ok()) return store_error_;
  if (pipelines_.count(req.pipeline()) == 0) {
    return absl::NotFoundError(StrCat("pipeline ", req.pipeline(), " not found"));
  }
  KILN_ASSIGN_OR_RETURN(Exec found, FindExecLocked(req.pipeline(), req.execution_id()));
  const int stage = FindStage(*found.def, req.stage());
  if (stage < 0) {
    return absl::NotFoundError(
        StrCat("execution ", req.execution_id(), " has no stage ", req.stage()));
  }
  const PipelineAction* def = FindActionDef(*found.def, stage, req.action());
  if (def == nullptr) {
    return absl::NotFoundError(StrCat("stage ", req.stage(), " has no action ", req.action()));
  }
  if (def->category() != "Approval") {
    return absl::FailedPreconditionError(
        StrCat("action ", req.action(), " is a ", def->category(), " action, not an approval"));
  }
  auto live = live_.find(found.seq);
  ActionExecution* ae =
      live == live_.end() ? nullptr : FindAction(*live->second.pe.mutable_stages(stage), req.action());
  if (ae == nullptr || ae->status() != kWaiting) {
    const ActionExecution* stored = FindAction(*found.pe.mutable_stages(stage), req.action());
    return absl::FailedPreconditionError(
        StrCat("approval ", req.stage(), "/", req.action(), " of execution ", req.execution_id(),
               " is not waiting (", stored == nullptr ? "not reached" : stored->status(), ")"));
  }
  Finish(*ae, req.approved() ? kSucceeded : kFailed,
         req.summary().empty() ? (req.approved() ? "approved" : "rejected") : req.summary(),
         options_.clock->Now());
  KILN_RETURN_IF_ERROR(PersistLocked(live->second));
  AdvanceLocked();
  return CurrentLocked(req.pipeline(), found.seq);
}

absl::StatusOr<PipelineExecution> PipelineController::RetryStageExecution(
    const kiln::v1::RetryStageExecutionRequest& req) {
  absl::MutexLock l(&mu_);
  if (!store_error_.ok()) return store_error_;
  auto pit = pipelines_.find(req.pipeline());
  if (pit == pipelines_.end()) {
    return absl::NotFoundError(StrCat("pipeline ", req.pipeline(), " not found"));
  }
  KILN_ASSIGN_OR_RETURN(Exec e, FindExecLocked(req.pipeline(), req.execution_id()));
  const int stage = FindStage(*e.def, req.stage());
  if (stage < 0) {
    return absl::NotFoundError(
        StrCat("execution ", req.execution_id(), " has no stage ", req.stage()));
  }
  const std::string& status = e.pe.stages(stage).status();
  if (status != kFailed) {
    return absl::FailedPreconditionError(
        StrCat("stage ", req.stage(), " of execution ", req.execution_id(), " is ",
               status.empty() ? "not reached" : status, "; only a failed stage can be retried"));
  }
  if (e.pe.pipeline_version() != pit->second.version()) {
    return absl::FailedPreconditionError(StrCat(
        "pipeline ", req.pipeline(), " changed since execution ", req.execution_id(),
        " started (version ", e.pe.pipeline_version(), ", now ", pit->second.version(),
        "); a stage cannot be retried after the pipeline structure changed (§3.4)"));
  }
  if (pit->second.execution_mode() != "PARALLEL" && last_seq_ > e.seq) {
    KILN_ASSIGN_OR_RETURN(auto newer, options_.store->Scan(ExecPrefix(req.pipeline()),
                                                           last_seq_ - e.seq, /*reverse=*/true));
    for (const auto& [key, value] : newer) {
      KILN_ASSIGN_OR_RETURN(PipelineExecution other, ParseRecord<PipelineExecution>(key, value));
      if (other.id() == e.pe.id()) break;
      for (const StageExecution& st : other.stages()) {
        if (st.stage() == req.stage() && !st.status().empty()) {
          return absl::FailedPreconditionError(
              StrCat("a newer execution (", other.id(), ") has entered stage ", req.stage(),
                     "; execution ", req.execution_id(), " can no longer be retried (§3.4)"));
        }
      }
    }
  }
  StageExecution& st = *e.pe.mutable_stages(stage);
  auto* actions = st.mutable_actions();
  actions->erase(std::remove_if(actions->begin(), actions->end(),
                                [](const ActionExecution& ae) { return ae.status() == kFailed; }),
                 actions->end());
  st.set_status(kInProgress);
  st.clear_end_time();
  e.pe.set_status(kInProgress);
  e.pe.clear_end_time();
  const int64_t seq = e.seq;
  live_[seq] = std::move(e);
  KILN_RETURN_IF_ERROR(PersistLocked(live_[seq]));
  KILN_LOG(INFO) << "pipeline " << req.pipeline() << ": retrying stage " << req.stage()
                 << " of execution " << req.execution_id();
  AdvanceLocked();
  return CurrentLocked(req.pipeline(), seq);
}

void PipelineController::Tick() {
  absl::MutexLock l(&mu_);
  AdvanceLocked();
}

// ---- executions ----

absl::StatusOr<PipelineController::Exec> PipelineController::FindExecLocked(
    const std::string& pipeline, const std::string& id) {
  for (const auto& [seq, e] : live_) {
    if (e.pe.id() == id && e.pe.pipeline() == pipeline) return e;
  }
  const absl::Status not_found =
      absl::NotFoundError(StrCat("pipeline ", pipeline, " has no execution ", id));
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> ref, options_.store->Get(StrCat(kIdPrefix, id)));
  if (!ref) return not_found;
  std::pair<std::string, std::string> parts = absl::StrSplit(*ref, absl::MaxSplits('/', 1));
  Exec e;
  if (parts.first != pipeline || !absl::SimpleAtoi(parts.second, &e.seq)) return not_found;
  const std::string key = ExecKey(pipeline, e.seq);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> bytes, options_.store->Get(key));
  if (!bytes) return absl::DataLossError(StrCat("missing ", key));
  KILN_ASSIGN_OR_RETURN(e.pe, ParseRecord<PipelineExecution>(key, *bytes));
  KILN_ASSIGN_OR_RETURN(e.def, VersionLocked(pipeline, e.pe.pipeline_version()));
  return e;
}

absl::StatusOr<PipelineExecution> PipelineController::CurrentLocked(const std::string& pipeline,
                                                                    int64_t seq) {
  if (auto it = live_.find(seq); it != live_.end()) return it->second.pe;
  const std::string key = ExecKey(pipeline, seq);
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> bytes, options_.store->Get(key));
  if (!bytes) return absl::DataLossError(StrCat("missing ", key));
  return ParseRecord<PipelineExecution>(key, *bytes);
}

absl::StatusOr<int64_t> PipelineController::CreateExecLocked(const Pipeline& pipeline,
                                                             const std::string& trigger,
                                                             const std::string& commit,
                                                             const std::string& source_project) {
  Exec e;
  KILN_ASSIGN_OR_RETURN(e.def, VersionLocked(pipeline.name(), pipeline.version()));
  e.seq = last_seq_ + 1;
  PipelineExecution& pe = e.pe;
  pe.set_id(common::NewUuid());
  pe.set_pipeline(pipeline.name());
  pe.set_pipeline_version(pipeline.version());
  pe.set_status(kInProgress);
  pe.set_trigger(trigger);
  pe.set_source_commit(commit);
  *pe.mutable_start_time() = ToTimestamp(options_.clock->Now());
  for (const auto& stage : e.def->stages()) pe.add_stages()->set_stage(stage.name());
  const auto& sources = e.def->stages(0).actions();
  for (int i = 0; i < sources.size(); ++i) {
    auto it = sources[i].configuration().find("project");
    bool gets_commit = source_project.empty()
                           ? i == 0
                           : it != sources[i].configuration().end() && it->second == source_project;
    e.source_revisions[sources[i].name()] = gets_commit ? commit : "";
  }
  WriteBatch batch;
  batch.Put(ExecKey(pipeline.name(), e.seq), pe.SerializeAsString());
  batch.Put(StrCat(kIdPrefix, pe.id()), StrCat(pipeline.name(), "/", SeqText(e.seq)));
  batch.Put(ActiveKey(e.seq), pipeline.name());
  batch.Put(kSeqCounter, StrCat(e.seq));
  KILN_RETURN_IF_ERROR(WriteLocked(batch));
  last_seq_ = e.seq;
  live_[e.seq] = std::move(e);
  return last_seq_;
}

absl::Status PipelineController::PersistLocked(const Exec& e) {
  WriteBatch batch;
  batch.Put(ExecKey(e.pe.pipeline(), e.seq), e.pe.SerializeAsString());
  if (IsLive(e)) {
    batch.Put(ActiveKey(e.seq), e.pe.pipeline());
  } else {
    batch.Delete(ActiveKey(e.seq));
  }
  return WriteLocked(batch);
}

bool PipelineController::IsLive(const Exec& e) {
  if (e.pe.status() == kInProgress) return true;
  for (const StageExecution& st : e.pe.stages()) {
    for (const ActionExecution& ae : st.actions()) {
      if (ae.status() == kInProgress || ae.status() == kWaiting) return true;
    }
  }
  return false;
}

std::string PipelineController::ModeLocked(const Exec& e) {
  auto it = pipelines_.find(e.pe.pipeline());
  return it != pipelines_.end() ? it->second.execution_mode() : e.def->execution_mode();
}

void PipelineController::AdvanceLocked() {
  // Each round changes at least one execution, and every change moves an execution forward, so
  // this ends; the cap only guards against a bug turning into a hung ticker.
  for (int round = 0; round < 1000 && store_error_.ok(); ++round) {
    std::set<int64_t> dirty;
    SupersedeLocked(dirty);
    for (auto& [seq, e] : live_) {
      if (StepLocked(e, /*poll=*/round == 0)) dirty.insert(seq);
    }
    if (dirty.empty()) return;
    for (int64_t seq : dirty) {
      Exec& e = live_.at(seq);
      if (!PersistLocked(e).ok()) return;
      if (!IsLive(e)) {
        KILN_LOG(INFO) << "pipeline " << e.pe.pipeline() << ": execution " << e.pe.id() << " "
                       << e.pe.status();
        live_.erase(seq);
      }
    }
  }
}

void PipelineController::SupersedeLocked(std::set<int64_t>& dirty) {
  std::map<std::pair<std::string, std::string>, Exec*> waiting;  // (pipeline, stage) -> newest
  for (auto& [seq, e] : live_) {  // oldest first
    if (e.pe.status() != kInProgress || ModeLocked(e) != "SUPERSEDED") continue;
    const int k = CurrentStage(e.pe);
    if (k >= e.pe.stages_size() || !e.pe.stages(k).status().empty()) continue;
    Exec*& slot = waiting[{e.pe.pipeline(), e.pe.stages(k).stage()}];
    if (slot != nullptr) {
      // §3.3 rule 3: the newer waiting execution replaces the older one.
      slot->pe.set_status(kSuperseded);
      *slot->pe.mutable_end_time() = ToTimestamp(options_.clock->Now());
      dirty.insert(slot->seq);
    }
    slot = &e;
  }
}

bool PipelineController::CanEnterLocked(const Exec& e, int stage) {
  const std::string mode = ModeLocked(e);
  if (mode == "PARALLEL") return true;
  const std::string& name = e.pe.stages(stage).stage();
  for (const auto& [seq, other] : live_) {
    if (seq == e.seq || other.pe.pipeline() != e.pe.pipeline()) continue;
    for (const StageExecution& st : other.pe.stages()) {
      if (st.stage() == name && st.status() == kInProgress) return false;  // locked (§3.3 rule 1)
    }
    if (mode == "QUEUED" && seq < e.seq && other.pe.status() == kInProgress) {
      const int k = CurrentStage(other.pe);
      if (k < other.pe.stages_size() && other.pe.stages(k).status().empty() &&
          other.pe.stages(k).stage() == name) {
        return false;  // an older execution queued at the same stage goes first
      }
    }
  }
  return true;
}

bool PipelineController::StepLocked(Exec& e, bool poll) {
  bool changed = poll && PollActionsLocked(e);
  if (e.pe.status() != kInProgress) return changed;
  const absl::Time now = options_.clock->Now();
  for (;;) {
    const int k = CurrentStage(e.pe);
    if (k == e.pe.stages_size()) {
      e.pe.set_status(kSucceeded);
      *e.pe.mutable_end_time() = ToTimestamp(now);
      return true;
    }
    StageExecution& st = *e.pe.mutable_stages(k);
    if (st.status().empty()) {
      if (!CanEnterLocked(e, k)) return changed;
      st.set_status(kInProgress);
      *st.mutable_start_time() = ToTimestamp(now);
      changed = true;
    }
    if (st.status() == kInProgress) changed |= EvaluateStageLocked(e, k);
    if (st.status() == kInProgress) return changed;
    if (st.status() == kFailed) {
      e.pe.set_status(kFailed);
      *e.pe.mutable_end_time() = ToTimestamp(now);
      return true;
    }
  }
}

bool PipelineController::EvaluateStageLocked(Exec& e, int stage) {
  const auto& defs = e.def->stages(stage).actions();
  StageExecution& st = *e.pe.mutable_stages(stage);
  std::set<int> orders;
  for (const PipelineAction& a : defs) orders.insert(RunOrder(a));
  bool changed = false;
  const absl::Time now = options_.clock->Now();
  for (int order : orders) {
    bool running = false, failed = false;
    for (const PipelineAction& a : defs) {
      if (RunOrder(a) != order) continue;
      ActionExecution* ae = FindAction(st, a.name());
      if (ae == nullptr) {
        ae = st.add_actions();
        ae->set_action(a.name());
        StartActionLocked(e, a, *ae);
        changed = true;
      }
      if (ae->status() == kFailed) {
        failed = true;
      } else if (ae->status() != kSucceeded) {
        running = true;
      }
    }
    if (failed) {  // §3.4: the stage fails at once; running actions carry on
      st.set_status(kFailed);
      *st.mutable_end_time() = ToTimestamp(now);
      return true;
    }
    if (running) return changed;
  }
  st.set_status(kSucceeded);
  *st.mutable_end_time() = ToTimestamp(now);
  return true;
}

absl::StatusOr<std::string> PipelineController::SubstituteLocked(const Exec& e,
                                                                  std::string_view text) {
  auto lookup = [&](const std::string& ns, const std::string& var) -> std::optional<std::string> {
    if (ns == "codepipeline") {
      if (var == "PipelineExecutionId") return e.pe.id();
      return std::nullopt;
    }
    for (int s = 0; s < e.def->stages_size(); ++s) {
      for (const PipelineAction& a : e.def->stages(s).actions()) {
        if (a.namespace_() != ns) continue;
        for (const ActionExecution& ae : e.pe.stages(s).actions()) {
          if (ae.action() != a.name() || ae.status() != kSucceeded) continue;
          auto it = ae.output_variables().find(var);
          if (it != ae.output_variables().end()) return it->second;
        }
        return std::nullopt;
      }
    }
    return std::nullopt;
  };
  KILN_ASSIGN_OR_RETURN(std::string out, SubstituteVariables(text, lookup));
  if (out.size() > kMaxConfigValue) {
    return absl::InvalidArgumentError(StrCat("a configuration value is ", out.size(),
                                             " characters after substituting variables; the limit "
                                             "is 1000 (§3.2)"));
  }
  return out;
}

std::string PipelineController::RevisionForLocked(const Exec& e, const PipelineAction& def) {
  const PipelineAction* action = &def;
  for (int depth = 0; depth < 100 && action->input_artifacts_size() > 0; ++depth) {
    Producer p = FindProducer(*e.def, action->input_artifacts(0));
    if (p.stage < 0) break;
    if (p.action->category() == "Source") {
      for (const ActionExecution& ae : e.pe.stages(p.stage).actions()) {
        if (ae.action() != p.action->name()) continue;
        auto it = ae.output_variables().find("CommitId");
        if (it != ae.output_variables().end()) return it->second;
      }
      break;
    }
    action = p.action;
  }
  return e.pe.source_commit();
}

void PipelineController::StartActionLocked(Exec& e, const PipelineAction& def, ActionExecution& ae) {
  const absl::Time now = options_.clock->Now();
  *ae.mutable_start_time() = ToTimestamp(now);
  ae.set_status(kInProgress);
  auto fail = [&](const std::string& why) { Finish(ae, kFailed, why, now); };

  std::map<std::string, std::string> config;
  for (const auto& [key, value] : def.configuration()) {
    if (key == "environment_variables") continue;  // substituted per value below
    absl::StatusOr<std::string> v = SubstituteLocked(e, value);
    if (!v.ok()) return fail(StrCat("configuration ", key, ": ", v.status().message()));
    config[key] = *std::move(v);
  }

  if (def.category() == "Source") {
    absl::StatusOr<kiln::v1::Project> project = options_.builds->GetProject(config["project"]);
    if (!project.ok()) return fail(std::string(project.status().message()));
    const std::string branch =
        project->source().branch().empty() ? "main" : project->source().branch();
    std::string revision;
    if (auto it = e.source_revisions.find(def.name()); it != e.source_revisions.end()) {
      revision = it->second;
    } else if (def.name() == e.def->stages(0).actions(0).name()) {
      revision = e.pe.source_commit();
    }
    if (revision.empty()) revision = branch;
    if (e.pe.source_commit().empty() && def.name() == e.def->stages(0).actions(0).name()) {
      e.pe.set_source_commit(revision);
    }
    ae.set_external_id(revision);
    (*ae.mutable_output_variables())["CommitId"] = revision;
    (*ae.mutable_output_variables())["BranchName"] = branch;
    return Finish(ae, kSucceeded, StrCat(config["project"], " ", branch, " at ", revision), now);
  }

  if (IsBuildLike(def.category())) {
    kiln::v1::StartBuildRequest req;
    req.set_project_name(config["project"]);
    req.set_source_version(RevisionForLocked(e, def));
    req.set_initiator(StrCat("codepipeline/", e.pe.pipeline()));
    if (auto it = def.configuration().find("environment_variables");
        it != def.configuration().end()) {
      absl::StatusOr<std::vector<kiln::v1::EnvironmentVariable>> vars =
          ParseBuildEnvironmentVariables(it->second);
      if (!vars.ok()) return fail(std::string(vars.status().message()));
      for (kiln::v1::EnvironmentVariable& var : *vars) {
        absl::StatusOr<std::string> v = SubstituteLocked(e, var.value());
        if (!v.ok()) {
          return fail(StrCat("environment variable ", var.name(), ": ", v.status().message()));
        }
        var.set_value(*std::move(v));
        *req.add_environment_variables_override() = std::move(var);
      }
    }
    absl::StatusOr<kiln::v1::Build> build = options_.builds->StartBuild(req);
    if (!build.ok()) return fail(StrCat("cannot start a build: ", build.status().ToString()));
    ae.set_external_id(build->id());
    return;
  }

  if (def.category() == "Approval") {
    ae.set_status(kWaiting);
    ae.set_summary(config["summary"]);
    return;
  }

  // Deploy: the build and artifact behind the input artifact (pipeline_yaml.h: a Build/Test output).
  if (options_.deployments == nullptr) return fail("no deployment service is configured");
  Producer p = FindProducer(*e.def, def.input_artifacts(0));
  std::string build_id;
  if (p.stage >= 0) {
    for (const ActionExecution& prod : e.pe.stages(p.stage).actions()) {
      if (prod.action() == p.action->name() && prod.status() == kSucceeded) {
        build_id = prod.external_id();
      }
    }
  }
  if (build_id.empty()) {
    return fail(StrCat("input artifact ", def.input_artifacts(0), " has no successful build"));
  }
  const std::string artifact = p.output == 0 ? "" : def.input_artifacts(0);
  absl::StatusOr<std::string> deployment = options_.deployments->Start(
      config["application"], config["deployment_group"], build_id, artifact);
  if (!deployment.ok()) {
    return fail(StrCat("cannot start a deployment: ", deployment.status().ToString()));
  }
  ae.set_external_id(*deployment);
}

bool PipelineController::PollActionsLocked(Exec& e) {
  bool changed = false;
  const absl::Time now = options_.clock->Now();
  for (int s = 0; s < e.pe.stages_size(); ++s) {
    for (ActionExecution& ae : *e.pe.mutable_stages(s)->mutable_actions()) {
      if (ae.status() != kInProgress && ae.status() != kWaiting) continue;
      const PipelineAction* def = FindActionDef(*e.def, s, ae.action());
      if (def == nullptr) continue;  // cannot happen: executions keep their version
      if (def->category() == "Approval") {
        if (now - FromTimestamp(ae.start_time()) >= options_.approval_timeout) {
          Finish(ae, kFailed,
                 StrCat("not approved within ", absl::FormatDuration(options_.approval_timeout)),
                 now);
          changed = true;
        }
      } else if (IsBuildLike(def->category())) {
        absl::StatusOr<kiln::v1::Build> build = options_.builds->GetBuild(ae.external_id());
        if (absl::IsNotFound(build.status())) {
          Finish(ae, kFailed, std::string(build.status().message()), now);
          changed = true;
          continue;
        }
        if (!build.ok() || !build->build_complete()) continue;
        changed = true;
        if (build->build_status() != kiln::v1::BuildStatus::SUCCEEDED) {
          Finish(ae, kFailed,
                 StrCat("build ", build->id(), " ",
                        kiln::v1::BuildStatus::Value_Name(build->build_status())),
                 now);
          continue;
        }
        std::string missing;
        for (int i = 0; i < def->output_artifacts_size() && missing.empty(); ++i) {
          absl::StatusOr<kiln::v1::BuildArtifact> artifact =
              options_.builds->FindArtifact(build->id(), i == 0 ? "" : def->output_artifacts(i));
          if (!artifact.ok()) {
            missing = StrCat("output artifact ", def->output_artifacts(i), ": ",
                             artifact.status().message());
          }
        }
        if (!missing.empty()) {
          Finish(ae, kFailed, missing, now);
          continue;
        }
        ae.mutable_output_variables()->insert(build->exported_variables().begin(),
                                              build->exported_variables().end());
        Finish(ae, kSucceeded, StrCat("build ", build->id(), " SUCCEEDED"), now);
      } else if (def->category() == "Deploy") {
        absl::StatusOr<std::string> status =
            options_.deployments != nullptr
                ? options_.deployments->Status(ae.external_id())
                : absl::NotFoundError("no deployment service is configured");
        if (absl::IsNotFound(status.status())) {
          Finish(ae, kFailed, std::string(status.status().message()), now);
          changed = true;
        } else if (status.ok() && (*status == "Succeeded" || *status == "Failed" ||
                                   *status == "Stopped")) {
          Finish(ae, *status == "Succeeded" ? kSucceeded : kFailed,
                 StrCat("deployment ", ae.external_id(), " ", *status), now);
          changed = true;
        }
      }
    }
  }
  return changed;
}

}  // namespace kiln::coordinator
