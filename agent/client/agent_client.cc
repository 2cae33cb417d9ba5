#include "agent/client/agent_client.h"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/executor/container.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "agent/client/deploy_runner.h"
#include "agent/executor/build_executor.h"
#include "agent/executor/process_tree.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "kiln/v1/agent.grpc.pb.h"

namespace kiln::agent {

using kiln::v1::AgentMessage;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;
using kiln::v1::CoordinatorMessage;

namespace {

class ExecutorRunner final : public BuildRunner {
 public:
  explicit ExecutorRunner(std::unique_ptr<BuildExecutor> e) : e_(std::move(e)) {}
  kiln::v1::PhaseResult RunPhase(BuildPhaseType::Value phase, bool succeeding) override {
    return e_->RunPhase(phase, succeeding);
  }
  void Stop(BuildStatus::Value status, std::string reason) override { e_->Stop(status, std::move(reason)); }

 private:
  std::unique_ptr<BuildExecutor> e_;
};

std::string SanitiseId(std::string s) {
  for (char& c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok) c = '-';
  }
  return s.substr(0, 100);
}

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "agent";
  return buf;
}

absl::StatusOr<std::string> LoadOrCreateAgentId(const std::string& work_dir, const std::string& hostname) {
  const std::string path = work_dir + "/agent-id";
  std::ifstream in(path);
  std::string id;
  if (in && std::getline(in, id) && !id.empty()) return std::string(absl::StripAsciiWhitespace(id));
  id = SanitiseId(absl::StrCat(hostname, "-", common::RandomHex(4)));
  std::ofstream out(path, std::ios::trunc);
  out << id << "\n";
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return id;
}

// A FAULT result for a phase the agent cannot run.
AgentMessage FaultResult(const kiln::v1::RunPhase& rp, const std::string& message) {
  AgentMessage m;
  auto* r = m.mutable_phase_result();
  r->set_build_id(rp.build_id());
  r->set_phase(rp.phase());
  r->set_status(BuildStatus::FAULT);
  auto* c = r->add_contexts();
  c->set_status_code("AGENT_ERROR");
  c->set_message(message);
  return m;
}

}  // namespace

RunnerFactory ExecutorRunnerFactory(const std::string& work_dir,
                                    std::shared_ptr<LocalCache> cache) {
  return [work_dir, cache](const kiln::v1::BuildJob& job,
                           RunnerContext ctx) -> absl::StatusOr<std::unique_ptr<BuildRunner>> {
    BuildExecutor::Options o;
    o.work_dir = work_dir;
    o.cache = cache.get();
    o.output = std::move(ctx.output);
    o.resolve_parameters = std::move(ctx.resolve_parameters);
    o.upload_artifact = std::move(ctx.upload_artifact);
    KILN_ASSIGN_OR_RETURN(auto executor, BuildExecutor::Create(job, std::move(o)));
    return std::unique_ptr<BuildRunner>(new ExecutorRunner(std::move(executor)));
  };
}

struct AgentClient::Impl {
  struct Build {
    std::shared_ptr<BuildRunner> runner;
    std::deque<kiln::v1::RunPhase> pending;
    bool running = false;
    BuildPhaseType::Value phase = BuildPhaseType::UNKNOWN;
    std::optional<kiln::v1::PhaseResult> last_result;
    int64_t next_seq = 0;
    std::deque<kiln::v1::LogChunk> unacked;
    bool released = false;
    bool done = false;
    std::thread worker;
  };

  Options opts;
  std::string agent_id;
  std::string hostname;
  std::map<std::string, std::string> labels;

  mutable absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Set by Stop() before the stream closes: running builds are reported FAULT; new builds are not
  // accepted (their PROVISIONING lease expires on the coordinator, which requeues them).
  bool draining ABSL_GUARDED_BY(mu) = false;
  bool started ABSL_GUARDED_BY(mu) = false;
  bool stream_open ABSL_GUARDED_BY(mu) = false;
  grpc::ClientContext* ctx ABSL_GUARDED_BY(mu) = nullptr;
  std::shared_ptr<grpc::Channel> channel ABSL_GUARDED_BY(mu);
  std::deque<AgentMessage> outbox ABSL_GUARDED_BY(mu);
  bool writing ABSL_GUARDED_BY(mu) = false;  // a message popped from outbox is being written
  bool half_close ABSL_GUARDED_BY(mu) = false;  // Stop(): send what is queued, then WritesDone()
  bool conn_done ABSL_GUARDED_BY(mu) = false;   // ConnectionLoop returned
  int64_t heartbeat_millis ABSL_GUARDED_BY(mu) = 2000;
  std::map<std::string, std::unique_ptr<Build>> builds ABSL_GUARDED_BY(mu);
  std::thread conn_thread;
  // Set in Create(); declared last so it stops (and stops sending) before the rest goes.
  std::unique_ptr<DeployRunner> deploy;

  // Queues `m` for the open stream; dropped when no stream is open (state is resent on reconnect).
  void EnqueueLocked(AgentMessage m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (stream_open) outbox.push_back(std::move(m));
  }

  void Output(const std::string& build_id, std::string_view data) {
    absl::MutexLock l(&mu);
    auto it = builds.find(build_id);
    if (it == builds.end() || data.empty()) return;
    Build& b = *it->second;
    kiln::v1::LogChunk chunk;
    chunk.set_build_id(build_id);
    chunk.set_seq(b.next_seq++);
    chunk.set_data(std::string(data));
    AgentMessage m;
    *m.mutable_log_chunk() = chunk;
    b.unacked.push_back(std::move(chunk));
    EnqueueLocked(std::move(m));
  }

  absl::StatusOr<kiln::v1::GetBuildParametersResponse> Resolve(const std::string& build_id,
                                                              const std::vector<std::string>& names) {
    std::shared_ptr<grpc::Channel> ch;
    {
      absl::MutexLock l(&mu);
      ch = channel;
    }
    if (!ch) return absl::UnavailableError("not connected to a coordinator");
    auto stub = kiln::v1::AgentService::NewStub(ch);
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    c.set_wait_for_ready(true);
    kiln::v1::GetBuildParametersRequest req;
    req.set_agent_id(agent_id);
    req.set_build_id(build_id);
    for (const auto& n : names) req.add_names(n);
    kiln::v1::GetBuildParametersResponse resp;
    grpc::Status s = stub->GetBuildParameters(&c, req, &resp);
    if (!s.ok()) return common::FromGrpcStatus(s);
    return resp;
  }

  absl::StatusOr<kiln::v1::BuildArtifact> Upload(const std::string& build_id,
                                                 kiln::v1::UploadArtifactHeader header,
                                                 const std::string& path) {
    std::shared_ptr<grpc::Channel> ch;
    {
      absl::MutexLock l(&mu);
      ch = channel;
    }
    if (!ch) return absl::UnavailableError("not connected to a coordinator");
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    auto stub = kiln::v1::AgentService::NewStub(ch);
    grpc::ClientContext c;
    c.set_wait_for_ready(true);
    kiln::v1::UploadArtifactResponse resp;
    auto writer = stub->UploadArtifact(&c, &resp);
    header.set_agent_id(agent_id);
    header.set_build_id(build_id);
    kiln::v1::UploadArtifactRequest req;
    *req.mutable_header() = std::move(header);
    bool ok = writer->Write(req);
    std::string buf(1 << 20, '\0');
    while (ok && in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      std::streamsize n = in.gcount();
      if (n <= 0) break;
      req.Clear();
      req.set_data(buf.data(), static_cast<size_t>(n));
      ok = writer->Write(req);
    }
    if (ok && in.bad()) {
      c.TryCancel();
      writer->Finish();
      return absl::InternalError(absl::StrCat("reading ", path, " failed"));
    }
    if (ok) writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) return common::FromGrpcStatus(s);
    return resp.artifact();
  }

  // DeployRunner::DownloadFn over AgentService.DownloadRevision: streams into `dest` chunk by
  // chunk; `cancelled` is checked between chunks.
  absl::Status DownloadRevision(const std::string& deployment_id, const std::string& dest,
                                const std::function<bool()>& cancelled) {
    std::shared_ptr<grpc::Channel> ch;
    {
      absl::MutexLock l(&mu);
      ch = channel;
    }
    if (!ch) return absl::UnavailableError("not connected to a coordinator");
    std::ofstream out(dest, std::ios::binary | std::ios::trunc);
    if (!out) return absl::InternalError(absl::StrCat("cannot create ", dest));
    auto stub = kiln::v1::AgentService::NewStub(ch);
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(1));
    kiln::v1::DownloadRevisionRequest req;
    req.set_agent_id(agent_id);
    req.set_deployment_id(deployment_id);
    auto reader = stub->DownloadRevision(&c, req);
    kiln::v1::DownloadRevisionResponse resp;
    bool stopped = false, write_failed = false;
    while (reader->Read(&resp)) {
      if (cancelled && cancelled()) {
        stopped = true;
        break;
      }
      out.write(resp.data().data(), static_cast<std::streamsize>(resp.data().size()));
      if (!out) {
        write_failed = true;
        break;
      }
    }
    if (stopped || write_failed) c.TryCancel();
    grpc::Status s = reader->Finish();
    if (stopped) return absl::CancelledError("the deployment was stopped");
    out.close();
    if (write_failed || !out) return absl::InternalError(absl::StrCat("writing ", dest, " failed"));
    if (!s.ok()) return common::FromGrpcStatus(s);
    return absl::OkStatus();
  }

  void Worker(std::string build_id, Build* b) {
    std::shared_ptr<BuildRunner> runner;
    {
      absl::MutexLock l(&mu);
      runner = b->runner;
    }
    while (true) {
      kiln::v1::RunPhase rp;
      {
        absl::MutexLock l(&mu);
        mu.Await(absl::Condition(
            +[](Build* b) { return b->released || !b->pending.empty(); }, b));
        if (b->released) break;
        rp = b->pending.front();
        b->pending.pop_front();
        b->running = true;
        b->phase = rp.phase();
      }
      kiln::v1::PhaseResult result = runner->RunPhase(rp.phase(), rp.build_succeeding());
      result.set_build_id(build_id);
      result.set_phase(rp.phase());
      absl::MutexLock l(&mu);
      b->running = false;
      b->last_result = result;
      AgentMessage m;
      *m.mutable_phase_result() = std::move(result);
      EnqueueLocked(std::move(m));
    }
    {
      absl::MutexLock l(&mu);
      b->runner.reset();
    }
    runner.reset();  // the last reference: kills leftovers, deletes the workspace
    absl::MutexLock l(&mu);
    b->done = true;
  }

  void HandleRunPhase(const kiln::v1::RunPhase& rp) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const std::string& id = rp.build_id();
    auto it = builds.find(id);
    if (it != builds.end() && it->second->released && rp.phase() == BuildPhaseType::PROVISIONING &&
        rp.has_job()) {
      // The coordinator requeued this build and gave it back to us: let the old attempt finish
      // (its runner deletes the workspace), then start afresh.
      std::thread old_worker = std::move(it->second->worker);
      mu.Unlock();
      if (old_worker.joinable()) old_worker.join();
      mu.Lock();
      builds.erase(id);
      it = builds.end();
    }
    if (it == builds.end()) {
      if (draining) return;
      if (rp.phase() != BuildPhaseType::PROVISIONING || !rp.has_job()) {
        EnqueueLocked(FaultResult(rp, absl::StrCat("agent ", agent_id, " does not hold build ", id, " (restarted?)")));
        return;
      }
      auto b = std::make_unique<Build>();
      RunnerContext ctx;
      ctx.output = [this, id](std::string_view d) { Output(id, d); };
      ctx.resolve_parameters = [this, id](const std::vector<std::string>& names) { return Resolve(id, names); };
      ctx.upload_artifact = [this, id](kiln::v1::UploadArtifactHeader h, const std::string& path) {
        return Upload(id, std::move(h), path);
      };
      auto runner = opts.runner_factory(rp.job(), std::move(ctx));
      if (!runner.ok()) {
        EnqueueLocked(FaultResult(rp, absl::StrCat("cannot prepare the build: ", runner.status().ToString())));
        return;
      }
      b->runner = std::shared_ptr<BuildRunner>(std::move(*runner));
      b->next_seq = std::max<int64_t>(0, rp.job().first_log_seq());
      Build* raw = b.get();
      builds[id] = std::move(b);
      raw->pending.push_back(rp);
      raw->worker = std::thread([this, id, raw] { Worker(id, raw); });
      return;
    }
    Build& b = *it->second;
    if (b.released) return;
    if (b.running && b.phase == rp.phase()) return;  // already running it
    if (b.last_result.has_value() && b.last_result->phase() == rp.phase()) {
      AgentMessage m;
      *m.mutable_phase_result() = *b.last_result;  // the coordinator missed it
      EnqueueLocked(std::move(m));
      return;
    }
    for (const auto& p : b.pending) {
      if (p.phase() == rp.phase()) return;
    }
    b.last_result.reset();
    b.pending.push_back(rp);
  }

  void Release(const std::string& id, BuildStatus::Value status, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = builds.find(id);
    if (it == builds.end()) return;
    Build& b = *it->second;
    b.released = true;
    b.unacked.clear();
    b.last_result.reset();
    if (b.running && b.runner) {
      std::shared_ptr<BuildRunner> r = b.runner;
      mu.Unlock();
      r->Stop(status, reason);
      mu.Lock();
    }
  }

  void Handle(const CoordinatorMessage& m) {
    absl::MutexLock l(&mu);
    switch (m.kind_case()) {
      case CoordinatorMessage::kRunPhase:
        HandleRunPhase(m.run_phase());
        break;
      case CoordinatorMessage::kLogAck: {
        auto it = builds.find(m.log_ack().build_id());
        if (it == builds.end()) break;
        auto& q = it->second->unacked;
        while (!q.empty() && q.front().seq() <= m.log_ack().acked_seq()) q.pop_front();
        break;
      }
      case CoordinatorMessage::kStopBuild: {
        auto it = builds.find(m.stop_build().build_id());
        if (it == builds.end() || !it->second->runner) break;
        std::shared_ptr<BuildRunner> r = it->second->runner;
        mu.Unlock();
        r->Stop(m.stop_build().status(), m.stop_build().reason());
        mu.Lock();
        break;
      }
      case CoordinatorMessage::kReleaseBuild:
        Release(m.release_build().build_id(), BuildStatus::FAULT, "build released by the coordinator");
        break;
      case CoordinatorMessage::kDeployHost:
        // The runner may send (resend results) right away: not under `mu`.
        mu.Unlock();
        deploy->Deploy(m.deploy_host());
        mu.Lock();
        break;
      case CoordinatorMessage::kStopDeployment:
        mu.Unlock();
        deploy->Stop(m.stop_deployment().deployment_id());
        mu.Lock();
        break;
      default:
        break;
    }
    ReapLocked();
  }

  // Joins workers that finished and forgets their builds.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (auto it = builds.begin(); it != builds.end();) {
      if (it->second->done) {
        std::thread t = std::move(it->second->worker);
        it = builds.erase(it);
        mu.Unlock();
        if (t.joinable()) t.join();
        mu.Lock();
        it = builds.begin();
      } else {
        ++it;
      }
    }
  }

  AgentMessage MakeHelloLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    AgentMessage m;
    auto* h = m.mutable_hello();
    h->set_protocol_version(kiln::v1::ProtocolVersion::V1);
    h->set_agent_id(agent_id);
    h->set_hostname(hostname);
    for (const auto& [k, v] : labels) (*h->mutable_labels())[k] = v;
    h->set_slots(opts.slots);
    if (opts.warm_cache_projects) {
      for (const auto& p : opts.warm_cache_projects()) h->add_warm_cache_projects(p);
    }
    for (const auto& [id, b] : builds) {
      if (b->released) continue;
      auto* held = h->add_held_builds();
      held->set_build_id(id);
      BuildPhaseType::Value phase = b->phase;
      if (!b->running && b->last_result.has_value()) phase = b->last_result->phase();
      if (!b->running && !b->pending.empty()) phase = b->pending.front().phase();
      held->set_phase(phase);
      held->set_running(b->running || !b->pending.empty());
    }
    return m;
  }

  void WriterLoop(grpc::ClientReaderWriter<AgentMessage, CoordinatorMessage>* stream) {
    while (true) {
      AgentMessage m;
      {
        absl::MutexLock l(&mu);
        mu.AwaitWithTimeout(absl::Condition(
                                +[](Impl* i) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                  return !i->stream_open || !i->outbox.empty() || i->half_close;
                                },
                                this),
                            absl::Milliseconds(heartbeat_millis));
        if (!stream_open) return;
        if (half_close && outbox.empty()) {
          // Graceful end: the coordinator sees end-of-stream after everything sent, then finishes.
          mu.Unlock();
          stream->WritesDone();
          mu.Lock();
          return;
        }
        if (outbox.empty()) {
          m.mutable_heartbeat();
        } else {
          m = std::move(outbox.front());
          outbox.pop_front();
        }
        writing = true;
      }
      const bool ok = stream->Write(m);
      absl::MutexLock l(&mu);
      writing = false;
      if (!ok) {
        stream_open = false;
        if (ctx) ctx->TryCancel();
        return;
      }
    }
  }

  // Waits `d` or until Stop().
  void Backoff(absl::Duration d) {
    absl::MutexLock l(&mu);
    mu.AwaitWithTimeout(absl::Condition(&stopping), d);
  }

  void ConnectionLoop() {
    ConnectionLoopInner();
    absl::MutexLock l(&mu);
    conn_done = true;
  }

  void ConnectionLoopInner() {
    absl::Duration backoff = opts.min_backoff;
    size_t attempt = 0;
    while (true) {
      const std::string addr = opts.coordinators[attempt++ % opts.coordinators.size()];
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
      args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
      auto ch = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
      auto context = std::make_unique<grpc::ClientContext>();
      AgentMessage hello;
      {
        absl::MutexLock l(&mu);
        if (stopping) return;
        ctx = context.get();
        channel = ch;
        hello = MakeHelloLocked();
      }
      auto stub = kiln::v1::AgentService::NewStub(ch);
      auto stream = stub->Connect(context.get());
      CoordinatorMessage msg;
      bool ok = stream->Write(hello) && stream->Read(&msg) &&
                msg.kind_case() == CoordinatorMessage::kWelcome;
      if (!ok) {
        context->TryCancel();
        grpc::Status st = stream->Finish();
        {
          absl::MutexLock l(&mu);
          ctx = nullptr;
        }
        KILN_LOG(WARNING) << "cannot connect to coordinator " << addr << ": " << st.error_message()
                          << "; retrying in " << absl::FormatDuration(backoff);
        Backoff(backoff);
        backoff = std::min(backoff * 2, opts.max_backoff);
        continue;
      }
      backoff = opts.min_backoff;
      {
        absl::MutexLock l(&mu);
        heartbeat_millis = std::max<int64_t>(100, msg.welcome().heartbeat_interval_millis());
        stream_open = true;
        outbox.clear();
        for (auto& [id, b] : builds) {
          if (b->released) continue;
          for (const auto& c : b->unacked) {
            AgentMessage m;
            *m.mutable_log_chunk() = c;
            outbox.push_back(std::move(m));
          }
          if (b->last_result.has_value()) {
            AgentMessage m;
            *m.mutable_phase_result() = *b->last_result;
            outbox.push_back(std::move(m));
          }
        }
        // No ack exists for deploy results: resend every kept one (applied idempotently).
        for (AgentMessage& m : deploy->ResendableResults()) outbox.push_back(std::move(m));
      }
      KILN_LOG(INFO) << "agent " << agent_id << " connected to " << addr;
      std::thread writer([this, s = stream.get()] { WriterLoop(s); });
      while (stream->Read(&msg)) Handle(msg);
      {
        absl::MutexLock l(&mu);
        stream_open = false;
        outbox.clear();
      }
      context->TryCancel();
      writer.join();
      grpc::Status st = stream->Finish();
      {
        absl::MutexLock l(&mu);
        ctx = nullptr;
        if (stopping) return;
      }
      KILN_LOG(WARNING) << "stream to " << addr << " ended: " << st.error_message() << "; reconnecting";
      Backoff(opts.min_backoff);
    }
  }
};

AgentClient::AgentClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AgentClient::~AgentClient() { Stop(); }

absl::StatusOr<std::unique_ptr<AgentClient>> AgentClient::Create(Options options) {
  if (options.coordinators.empty()) return absl::InvalidArgumentError("at least one coordinator address is required");
  if (options.slots < 1 || options.slots > 1024) return absl::InvalidArgumentError("slots must be within 1..1024");
  if (options.work_dir.empty()) return absl::InvalidArgumentError("work dir is required");
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create work dir ", options.work_dir, ": ", ec.message()));
  auto impl = std::make_unique<Impl>();
  impl->hostname = options.hostname.empty() ? Hostname() : options.hostname;
  if (options.agent_id.empty()) {
    KILN_ASSIGN_OR_RETURN(impl->agent_id, LoadOrCreateAgentId(options.work_dir, impl->hostname));
  } else {
    impl->agent_id = options.agent_id;
  }
  struct utsname u;
  impl->labels["os"] = "linux";
  if (uname(&u) == 0) impl->labels["arch"] = u.machine;
  struct stat st;
  impl->labels["docker"] = ::stat("/var/run/docker.sock", &st) == 0 ? "true" : "false";
  for (const auto& [k, v] : options.labels) {
    if (k.empty() || k.size() > 128 || v.size() > 128) {
      return absl::InvalidArgumentError(absl::StrCat("bad label '", k, "': keys 1..128 bytes, values ≤ 128 bytes"));
    }
    impl->labels[k] = v;
  }
  if (!options.runner_factory) {
    auto cache = std::make_shared<LocalCache>(options.work_dir + "/cache");
    options.runner_factory = ExecutorRunnerFactory(options.work_dir, cache);
    if (!options.warm_cache_projects) {
      options.warm_cache_projects = [cache] { return cache->WarmProjects(); };
    }
    // A previous agent process may have died with builds running: their leases end them on the
    // coordinator; here their leftover processes and workspaces go.
    if (int n = KillLeftoverSessions(options.work_dir + "/builds"); n > 0) {
      KILN_LOG(WARNING) << "killed the processes of " << n << " builds left by a previous agent process";
    }
    if (impl->labels["docker"] == "true") {
      RemoveLeftoverContainers(std::filesystem::absolute(options.work_dir).lexically_normal().string() +
                               "/builds");
    }
  }
  DeployRunner::Options deploy_options;
  deploy_options.root_dir = options.deployment_root.empty()
                                ? std::filesystem::path(options.work_dir) / "deployment-root"
                                : std::filesystem::path(options.deployment_root);
  impl->opts = std::move(options);
  Impl* raw = impl.get();
  deploy_options.download = [raw](const std::string& id, const std::string& dest,
                                  const std::function<bool()>& cancelled) {
    return raw->DownloadRevision(id, dest, cancelled);
  };
  deploy_options.send = [raw](AgentMessage m) {
    absl::MutexLock l(&raw->mu);
    raw->EnqueueLocked(std::move(m));
  };
  KILN_ASSIGN_OR_RETURN(impl->deploy, DeployRunner::Create(std::move(deploy_options)));
  return std::unique_ptr<AgentClient>(new AgentClient(std::move(impl)));
}

void AgentClient::Start() {
  absl::MutexLock l(&impl_->mu);
  if (impl_->started) return;
  impl_->started = true;
  Impl* impl = impl_.get();
  impl_->conn_thread = std::thread([impl] { impl->ConnectionLoop(); });
}

void AgentClient::Stop() {
  // Tell the coordinator why the running builds end, while the stream is still up (bounded).
  std::vector<std::shared_ptr<BuildRunner>> running;
  {
    absl::MutexLock l(&impl_->mu);
    if (impl_->stopping && !impl_->conn_thread.joinable()) return;
    impl_->draining = true;
    for (const auto& [id, b] : impl_->builds) {
      // A stopped runner fails every later phase at once, so pending phases (and ones that arrive
      // while draining) end promptly too.
      if (!b->released && b->runner) running.push_back(b->runner);
    }
  }
  const std::string reason = absl::StrCat("agent ", impl_->agent_id, " is shutting down");
  for (auto& r : running) r->Stop(BuildStatus::FAULT, reason);
  // Stops a running deployment (its results join the outbox drained below) and joins its threads.
  impl_->deploy->Shutdown();
  {
    absl::MutexLock l(&impl_->mu);
    impl_->mu.AwaitWithTimeout(
        absl::Condition(
            +[](Impl* i) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              if (!i->stream_open) return true;
              for (const auto& [id, b] : i->builds) {
                if (b->running || !b->pending.empty()) return false;
              }
              return i->outbox.empty() && !i->writing;
            },
            impl_.get()),
        absl::Seconds(3));
  }
  {
    // Half-close so the coordinator receives everything queued, and give it 2 s to finish the
    // stream; cancel after that.
    absl::MutexLock l(&impl_->mu);
    impl_->stopping = true;
    impl_->half_close = true;
    if (!impl_->started) impl_->conn_done = true;
    impl_->mu.AwaitWithTimeout(absl::Condition(&impl_->conn_done), absl::Seconds(2));
    if (!impl_->conn_done && impl_->ctx) impl_->ctx->TryCancel();
  }
  if (impl_->conn_thread.joinable()) impl_->conn_thread.join();
  std::vector<std::thread> workers;
  {
    absl::MutexLock l(&impl_->mu);
    std::vector<std::string> ids;
    for (const auto& [id, b] : impl_->builds) ids.push_back(id);
    for (const auto& id : ids) impl_->Release(id, BuildStatus::FAULT, "the agent is shutting down");
    for (auto& [id, b] : impl_->builds) workers.push_back(std::move(b->worker));
  }
  for (auto& t : workers) {
    if (t.joinable()) t.join();
  }
  absl::MutexLock l(&impl_->mu);
  impl_->builds.clear();
}

const std::string& AgentClient::agent_id() const { return impl_->agent_id; }

bool AgentClient::connected() const {
  absl::MutexLock l(&impl_->mu);
  return impl_->stream_open;
}

}  // namespace kiln::agent
