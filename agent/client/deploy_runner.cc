// DeployRunner (agent.proto deployments; reference/aws-semantics.md §4.5-§4.8).
#include "agent/client/deploy_runner.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/executor/git_checkout.h"
#include "common/logging.h"
#include "deploy/appspec.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;
using kiln::v1::AgentMessage;
using kiln::v1::LifecycleEvent;

bool SafeComponent(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\0') == std::string::npos;
}

// Events that run the last successful revision's scripts (§4.6); their failure may be ignored
// (§4.5 ignoreApplicationStopFailures).
bool IsOldRevisionEvent(const std::string& event) {
  return event == "ApplicationStop" || event == "BeforeBlockTraffic" ||
         event == "AfterBlockTraffic";
}

void SetTime(absl::Time t, google::protobuf::Timestamp* ts) {
  const int64_t secs = absl::ToUnixSeconds(t);
  ts->set_seconds(secs);
  ts->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(secs))));
}

const char* StatusName(deploy::EventStatus s) {
  switch (s) {
    case deploy::EventStatus::kSucceeded:
      return "Succeeded";
    case deploy::EventStatus::kFailed:
      return "Failed";
    case deploy::EventStatus::kSkipped:
      return "Skipped";
  }
  return "Unknown";
}

}  // namespace

absl::StatusOr<std::unique_ptr<DeployRunner>> DeployRunner::Create(Options options) {
  if (options.root_dir.empty()) return absl::InvalidArgumentError("a deployment root is required");
  if (!options.send) return absl::InvalidArgumentError("a message sink is required");
  if (options.clock == nullptr) options.clock = common::RealClock::Default();
  auto engine = deploy::DeploymentEngine::Create(options.root_dir, options.engine);
  if (!engine.ok()) return engine.status();
  std::unique_ptr<DeployRunner> runner(new DeployRunner(std::move(options), *std::move(engine)));
  // §4.7: events an earlier agent process left running are failed with code 7, never re-run.
  for (deploy::RecoveredEvent& ev : runner->engine_->RecoverAfterRestart()) {
    KILN_LOG(WARNING) << "deployment " << ev.deployment_id << ": lifecycle event "
                      << ev.result.event << " was interrupted by an agent restart";
    LifecycleEvent e;
    e.set_name(ev.result.event);
    e.set_status(StatusName(ev.result.status));
    e.set_error_code(ev.result.error_code);
    e.set_message(ev.result.message);
    AgentMessage m;
    auto* r = m.mutable_deploy_event_result();
    r->set_deployment_id(ev.deployment_id);
    *r->mutable_event() = std::move(e);
    r->set_host_done(true);
    absl::MutexLock l(&runner->mu_);
    auto [it, inserted] = runner->records_.try_emplace(ev.deployment_id);
    if (inserted) runner->order_.push_back(ev.deployment_id);
    it->second.host.set_deployment_id(ev.deployment_id);
    it->second.host.set_deployment_group_id(ev.deployment_group_id);
    it->second.state = State::kDone;
    it->second.results.push_back(std::move(m));
  }
  return runner;
}

DeployRunner::DeployRunner(Options options, std::unique_ptr<deploy::DeploymentEngine> engine)
    : opts_(std::move(options)), engine_(std::move(engine)) {}

DeployRunner::~DeployRunner() { Shutdown(); }

void DeployRunner::Shutdown() {
  std::vector<std::string> queued;
  bool running = false;
  {
    absl::MutexLock l(&mu_);
    if (!shutdown_) {
      shutdown_ = true;
      for (auto& [id, rec] : records_) {
        if (rec.state == State::kDone) continue;
        rec.stop = true;
        running |= rec.state == State::kRunning;
      }
      queued.assign(queue_.begin(), queue_.end());
      queue_.clear();
    }
  }
  if (running) engine_->Stop();
  for (const std::string& id : queued) ReportAllSkipped(id);
  if (worker_.joinable()) worker_.join();
  if (flusher_.joinable()) flusher_.join();
}

void DeployRunner::Deploy(const kiln::v1::DeployHost& host) {
  std::vector<AgentMessage> resend;
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) return;
    auto [it, inserted] = records_.try_emplace(host.deployment_id());
    if (!inserted) {
      if (it->second.state != State::kDone) return;  // queued or running already
      // The coordinator missed them (e.g. it restarted): send them again, never re-run.
      for (const AgentMessage& m : it->second.results) resend.push_back(m);
    } else {
      it->second.host = host;
      order_.push_back(host.deployment_id());
      queue_.push_back(host.deployment_id());
      if (!worker_.joinable()) {  // started on first use: most agents never deploy
        worker_ = std::thread([this] { WorkerLoop(); });
        flusher_ = std::thread([this] { FlushLoop(); });
      }
    }
  }
  if (resend.empty()) return;
  absl::MutexLock s(&send_mu_);
  for (AgentMessage& m : resend) opts_.send(std::move(m));
}

void DeployRunner::Stop(const std::string& deployment_id) {
  bool running = false, queued = false;
  {
    absl::MutexLock l(&mu_);
    auto it = records_.find(deployment_id);
    if (it == records_.end() || it->second.state == State::kDone || it->second.stop) return;
    it->second.stop = true;
    running = it->second.state == State::kRunning;
    auto q = std::find(queue_.begin(), queue_.end(), deployment_id);
    if (q != queue_.end()) {
      queue_.erase(q);
      queued = true;
    }
  }
  KILN_LOG(INFO) << "deployment " << deployment_id << ": stop requested";
  if (running) engine_->Stop();
  if (queued) ReportAllSkipped(deployment_id);
}

std::vector<AgentMessage> DeployRunner::ResendableResults() const {
  absl::MutexLock l(&mu_);
  std::vector<AgentMessage> out;
  for (const std::string& id : order_) {
    const Record& rec = records_.at(id);
    out.insert(out.end(), rec.results.begin(), rec.results.end());
  }
  return out;
}

bool DeployRunner::StopRequested(const std::string& deployment_id) const {
  absl::MutexLock l(&mu_);
  auto it = records_.find(deployment_id);
  return it == records_.end() || it->second.stop;
}

void DeployRunner::WorkerLoop() {
  while (true) {
    kiln::v1::DeployHost host;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](DeployRunner* r)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->shutdown_ || !r->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // shut down
      Record& rec = records_.at(queue_.front());
      queue_.pop_front();
      rec.state = State::kRunning;
      host = rec.host;
    }
    RunDeployment(host);
  }
}

void DeployRunner::RunDeployment(const kiln::v1::DeployHost& host) {
  const std::string& id = host.deployment_id();
  KILN_LOG(INFO) << "deployment " << id << ": starting on this host";
  deploy::Deployment d;
  d.deployment_id = id;
  d.deployment_group_id = host.deployment_group_id();
  d.deployment_group_name = host.deployment_group();
  d.application_name = host.application();
  d.file_exists_behavior = host.file_exists_behavior();
  d.ignore_application_stop_failures = host.ignore_application_stop_failures();
  // The engine refuses unsafe ids itself (the first event fails); no path is built from them here.
  const bool safe_ids = SafeComponent(id) && SafeComponent(d.deployment_group_id);
  const fs::path dir = engine_->root_dir() / d.deployment_group_id / id;

  const deploy::OutputCallback output = [this, &id](const std::string&, const std::string& line) {
    // A Stop() that landed between our check and RunEvent (which clears the engine's stop flag)
    // is applied here: the engine emits "LifecycleEvent - X" before it starts any script.
    if (StopRequested(id)) engine_->Stop();
    Log(id, line);
  };

  const std::vector<std::string>& events = deploy::DefaultLifecycleEvents();
  bool skip = false;
  for (size_t i = 0; i < events.size(); ++i) {
    const std::string& name = events[i];
    const bool last = i + 1 == events.size();
    LifecycleEvent ev;
    ev.set_name(name);
    if (skip || StopRequested(id)) {
      ev.set_status("Skipped");
      Emit(id, std::move(ev), last);
      continue;
    }
    const absl::Time start = opts_.clock->Now();
    deploy::EventResult r;
    if (name == "DownloadBundle" && safe_ids) {
      absl::StatusOr<fs::path> revision = FetchRevision(host, dir);
      if (revision.ok()) {
        d.revision = *revision;
        r = engine_->RunEvent(d, name, output);
      } else {
        r.event = name;
        r.status = deploy::EventStatus::kFailed;
        r.error_code = deploy::kUnknownErrorCode;
        r.message = absl::StrCat("cannot fetch the revision: ", revision.status().message());
        Log(id, r.message);
      }
      if (host.revision().has_git()) {
        std::error_code ec;
        fs::remove_all(dir / "revision-git", ec);  // copied to deployment-archive by now
      }
    } else {
      r = engine_->RunEvent(d, name, output);
    }
    const absl::Time end = opts_.clock->Now();
    SetTime(start, ev.mutable_start_time());
    SetTime(end, ev.mutable_end_time());
    ev.set_duration_millis(absl::ToInt64Milliseconds(end - start));
    ev.set_status(StatusName(r.status));
    ev.set_error_code(r.error_code);
    ev.set_script_name(r.script_name);
    ev.set_message(r.message);
    if (r.status == deploy::EventStatus::kFailed) {
      if (d.ignore_application_stop_failures && IsOldRevisionEvent(name) && !StopRequested(id)) {
        // §4.5: the agent carries on and the event does not fail the host.
        ev.set_status("Succeeded");
        ev.set_error_code(deploy::kSucceededCode);
        ev.set_message(absl::StrCat("ignored (ignore_application_stop_failures): ", r.message));
      } else {
        skip = true;
      }
    }
    Emit(id, std::move(ev), last);
  }
  KILN_LOG(INFO) << "deployment " << id << ": done on this host";
}

absl::StatusOr<fs::path> DeployRunner::FetchRevision(const kiln::v1::DeployHost& host,
                                                     const fs::path& dir) {
  const std::string& id = host.deployment_id();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  }
  const kiln::v1::Revision& rev = host.revision();
  if (rev.has_build_artifact()) {
    const std::string& artifact = rev.build_artifact().artifact();
    Log(id, absl::StrCat("Downloading the revision: ",
                         artifact.empty() ? "primary artifact" : "artifact " + artifact,
                         " of build ", rev.build_artifact().build_id()));
    const fs::path zip = dir / "revision.zip";
    fs::path part = zip;
    part += ".part";
    absl::Status s = Download(id, part);
    if (!s.ok()) {
      fs::remove(part, ec);
      return s;
    }
    fs::rename(part, zip, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot rename ", part.string(), ": ", ec.message()));
    }
    return zip;
  }
  if (rev.has_git()) {
    // The location may carry credentials: it is not logged.
    Log(id, absl::StrCat("Cloning the revision: commit ", rev.git().commit(), " of project ",
                         rev.git().project()));
    const fs::path src = dir / "revision-git";
    fs::remove_all(src, ec);
    absl::StatusOr<std::string> commit =
        CloneAndCheckout(host.git_location(), rev.git().commit(), src.string(),
                         [this, &id] { return StopRequested(id); });
    if (!commit.ok()) return commit.status();
    fs::remove_all(src / ".git", ec);  // a revision is the tree, as GitHub's archives (§4.8)
    if (ec) return absl::InternalError(absl::StrCat("cannot remove ", (src / ".git").string()));
    return src;
  }
  return absl::InvalidArgumentError("the deployment has no revision");
}

absl::Status DeployRunner::Download(const std::string& deployment_id, const fs::path& dest) {
  if (!opts_.download) return absl::FailedPreconditionError("this agent cannot download revisions");
  auto cancelled = [this, &deployment_id] { return StopRequested(deployment_id); };
  absl::Duration backoff = opts_.download_backoff;
  absl::Status s;
  for (int attempt = 1;; ++attempt) {
    s = opts_.download(deployment_id, dest.string(), cancelled);
    if (s.ok() || !absl::IsUnavailable(s) || attempt >= opts_.download_attempts) break;
    Log(deployment_id, absl::StrCat("Download failed (", s.message(), "); retrying in ",
                                    absl::FormatDuration(backoff)));
    absl::MutexLock l(&mu_);
    auto stopped = [this, &deployment_id]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = records_.find(deployment_id);
      return shutdown_ || it == records_.end() || it->second.stop;
    };
    mu_.AwaitWithTimeout(absl::Condition(&stopped), backoff);
    if (stopped()) break;
    backoff *= 2;
  }
  if (!s.ok() && cancelled()) return absl::CancelledError("the deployment was stopped");
  return s;
}

void DeployRunner::ReportAllSkipped(const std::string& deployment_id) {
  const std::vector<std::string>& events = deploy::DefaultLifecycleEvents();
  for (size_t i = 0; i < events.size(); ++i) {
    LifecycleEvent ev;
    ev.set_name(events[i]);
    ev.set_status("Skipped");
    Emit(deployment_id, std::move(ev), i + 1 == events.size());
  }
}

void DeployRunner::Emit(const std::string& deployment_id, LifecycleEvent event, bool host_done) {
  AgentMessage m;
  auto* r = m.mutable_deploy_event_result();
  r->set_deployment_id(deployment_id);
  *r->mutable_event() = std::move(event);
  r->set_host_done(host_done);
  {
    absl::MutexLock l(&mu_);
    auto it = records_.find(deployment_id);
    if (it != records_.end()) {
      it->second.results.push_back(m);
      if (host_done) MarkDoneLocked(deployment_id);
    }
  }
  absl::MutexLock s(&send_mu_);
  FlushLogsLocked();
  opts_.send(std::move(m));
}

void DeployRunner::MarkDoneLocked(const std::string& deployment_id) {
  records_.at(deployment_id).state = State::kDone;
  int done = 0;
  for (const std::string& id : order_) done += records_.at(id).state == State::kDone;
  for (auto it = order_.begin(); done > opts_.retained_deployments && it != order_.end();) {
    if (records_.at(*it).state == State::kDone) {
      records_.erase(*it);
      it = order_.erase(it);
      --done;
    } else {
      ++it;
    }
  }
}

void DeployRunner::Log(const std::string& deployment_id, const std::string& line) {
  absl::MutexLock s(&send_mu_);
  bool other_deployment;
  {
    absl::MutexLock l(&mu_);
    other_deployment = !log_buf_.empty() && log_deployment_ != deployment_id;
  }
  if (other_deployment) FlushLogsLocked();
  bool full;
  {
    absl::MutexLock l(&mu_);
    log_deployment_ = deployment_id;
    absl::StrAppend(&log_buf_, line, "\n");
    full = log_buf_.size() >= kMaxDeployLogChunkBytes;
  }
  if (full) FlushLogsLocked();
}

void DeployRunner::FlushLogs() {
  absl::MutexLock s(&send_mu_);
  FlushLogsLocked();
}

void DeployRunner::FlushLogsLocked() {
  std::string data, id;
  {
    absl::MutexLock l(&mu_);
    data.swap(log_buf_);
    id = log_deployment_;
  }
  for (size_t pos = 0; pos < data.size(); pos += kMaxDeployLogChunkBytes) {
    AgentMessage m;
    m.mutable_deploy_log()->set_deployment_id(id);
    m.mutable_deploy_log()->set_data(data.substr(pos, kMaxDeployLogChunkBytes));
    opts_.send(std::move(m));
  }
}

void DeployRunner::FlushLoop() {
  // After Shutdown() the worker's Emit() flushes what is left before each result.
  while (true) {
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](DeployRunner* r)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->shutdown_ || !r->log_buf_.empty(); },
          this));
      // Let more lines join the batch; a shutdown cuts the wait short.
      mu_.AwaitWithTimeout(absl::Condition(&shutdown_), opts_.log_flush_interval);
    }
    FlushLogs();
    absl::MutexLock l(&mu_);
    if (shutdown_) return;
  }
}

}  // namespace kiln::agent
