#include "coordinator/service/coordinator_server.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "coordinator/deployments/deploy_service.h"
#include "coordinator/deployments/deployment_controller.h"
#include "coordinator/http/http_server.h"
#include "coordinator/http/webhook.h"
#include "coordinator/http/webhook_deliveries.h"
#include "coordinator/logs/log_store.h"
#include "coordinator/params/parameter_store.h"
#include "coordinator/pipelines/pipeline_controller.h"
#include "coordinator/pipelines/pipeline_service.h"
#include "coordinator/poller/source_poller.h"
#include "coordinator/service/services.h"
#include "coordinator/store/rocksdb_store.h"
#include "grpcpp/grpcpp.h"

namespace kiln::coordinator {

namespace {

// Webhook deliveries and source polls start builds through the controller, and tell the pipelines
// whose Source action names the project (PipelineController::OnSourceChange).
class ControllerWebhookBackend final : public WebhookBackend {
 public:
  ControllerWebhookBackend(BuildController* c, PipelineController* pipelines, std::string initiator)
      : c_(c), pipelines_(pipelines), initiator_(std::move(initiator)) {}
  absl::StatusOr<std::vector<kiln::v1::Project>> ListProjects() override { return c_->ListProjects(); }
  absl::StatusOr<std::string> GetSecret(const std::string& name) override {
    return c_->GetParameterValue(name);
  }
  absl::StatusOr<std::string> StartBuild(const kiln::v1::Project& project, const std::string& version,
                                         const kiln::v1::WebhookTrigger& trigger) override {
    kiln::v1::StartBuildRequest req;
    req.set_project_name(project.name());
    req.set_source_version(version);
    req.set_initiator(initiator_);
    KILN_ASSIGN_OR_RETURN(kiln::v1::Build b, c_->StartBuild(req, &trigger));
    if (pipelines_ != nullptr && trigger.event() == "PUSH" &&
        absl::StartsWith(trigger.head_ref(), "refs/heads/")) {
      auto ids = pipelines_->OnSourceChange(project.name(), trigger.head_ref().substr(11), version,
                                            initiator_ == "poll" ? "poll" : "webhook");
      if (!ids.ok()) KILN_LOG(WARNING) << "pipelines: " << ids.status();
    }
    return b.id();
  }

 private:
  BuildController* c_;
  PipelineController* pipelines_;
  const std::string initiator_;
};

// Pipeline Deploy actions create deployments through the deployment controller.
class PipelineDeployments final : public DeploymentStarter {
 public:
  explicit PipelineDeployments(DeploymentController* d) : d_(d) {}
  absl::StatusOr<std::string> Start(const std::string& app, const std::string& group,
                                    const std::string& build, const std::string& artifact) override {
    kiln::v1::Revision r;
    r.mutable_build_artifact()->set_build_id(build);
    r.mutable_build_artifact()->set_artifact(artifact);
    KILN_ASSIGN_OR_RETURN(kiln::v1::Deployment d, d_->StartForPipeline(app, group, r));
    return d.id();
  }
  absl::StatusOr<std::string> Status(const std::string& id) override {
    KILN_ASSIGN_OR_RETURN(kiln::v1::Deployment d, d_->GetDeployment(id));
    return d.status();
  }

 private:
  DeploymentController* d_;
};

}  // namespace

struct CoordinatorServer::Impl {
  std::unique_ptr<RocksDbStore> store;
  std::unique_ptr<LogStore> logs;
  std::unique_ptr<ParameterStore> params;
  std::unique_ptr<ArtifactStore> artifacts;
  std::unique_ptr<WebhookDeliveryLog> deliveries;
  std::unique_ptr<DeploymentController> deployments;
  std::unique_ptr<DeployServiceImpl> deploy_service;
  std::unique_ptr<BuildControllerBackend> pipeline_builds;
  std::unique_ptr<PipelineDeployments> pipeline_deploys;
  std::unique_ptr<PipelineController> pipelines;
  std::unique_ptr<PipelineServiceImpl> pipeline_service;
  std::unique_ptr<AgentServiceImpl> agent_service;
  std::unique_ptr<KilnServiceImpl> kiln_service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<ControllerWebhookBackend> webhook_backend;
  std::unique_ptr<WebhookProcessor> webhooks;
  std::unique_ptr<ControllerWebhookBackend> poll_backend;
  std::unique_ptr<SourcePoller> poller;
  std::unique_ptr<HttpServer> http;
  absl::Notification stop_ticker;
  std::thread ticker;
  bool shut_down = false;
};

CoordinatorServer::CoordinatorServer() : impl_(new Impl) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

int CoordinatorServer::http_port() const { return impl_->http ? impl_->http->port() : 0; }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const Options& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data-dir is required");
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir + "/logs", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data dir ", options.data_dir, ": ", ec.message()));
  }
  ::chmod(options.data_dir.c_str(), 0700);
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  Impl& impl = *s->impl_;
  RocksDbStore::Options store_options;
  store_options.path = options.data_dir + "/db";
  store_options.sync = options.sync_writes;
  KILN_ASSIGN_OR_RETURN(impl.store, RocksDbStore::Open(store_options));
  KILN_ASSIGN_OR_RETURN(impl.logs, LogStore::Open(impl.store.get(), options.data_dir + "/logs"));
  KILN_ASSIGN_OR_RETURN(impl.params,
                        ParameterStore::Create(impl.store.get(), options.data_dir + "/secret.key"));
  KILN_ASSIGN_OR_RETURN(impl.artifacts, ArtifactStore::Open(options.data_dir + "/artifacts",
                                                            options.max_artifact_bytes));
  BuildController::Options copts;
  copts.artifacts = impl.artifacts.get();
  copts.minute_millis = options.minute_millis;
  copts.store = impl.store.get();
  copts.logs = impl.logs.get();
  copts.params = impl.params.get();
  copts.heartbeat_interval_millis = options.heartbeat_interval_millis;
  copts.lease_millis = options.lease_millis;
  KILN_ASSIGN_OR_RETURN(s->controller_, BuildController::Create(copts));

  DeploymentController::Options dopts;
  dopts.store = impl.store.get();
  dopts.logs = impl.logs.get();
  dopts.builds = s->controller_.get();
  dopts.lease_millis = options.lease_millis;
  KILN_ASSIGN_OR_RETURN(impl.deployments, DeploymentController::Create(dopts));
  impl.deploy_service = std::make_unique<DeployServiceImpl>(impl.deployments.get());
  impl.pipeline_builds = std::make_unique<BuildControllerBackend>(s->controller_.get());
  impl.pipeline_deploys = std::make_unique<PipelineDeployments>(impl.deployments.get());
  PipelineController::Options popts;
  popts.store = impl.store.get();
  popts.builds = impl.pipeline_builds.get();
  popts.deployments = impl.pipeline_deploys.get();
  KILN_ASSIGN_OR_RETURN(impl.pipelines, PipelineController::Create(popts));
  impl.pipeline_service = std::make_unique<PipelineServiceImpl>(impl.pipelines.get());
  impl.agent_service = std::make_unique<AgentServiceImpl>(
      s->controller_.get(), impl.artifacts.get(), impl.deployments.get());
  KILN_ASSIGN_OR_RETURN(impl.deliveries, WebhookDeliveryLog::Open(impl.store.get()));
  impl.kiln_service = std::make_unique<KilnServiceImpl>(s->controller_.get(), impl.artifacts.get(),
                                                        impl.deliveries.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.grpc_listen, grpc::InsecureServerCredentials(), &s->grpc_port_);
  builder.RegisterService(impl.agent_service.get());
  builder.RegisterService(impl.kiln_service.get());
  builder.RegisterService(impl.deploy_service.get());
  builder.RegisterService(impl.pipeline_service.get());
  // Agents ping every 20 s with no calls in flight; allow it (grpc doc/keepalive.md).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.SetMaxReceiveMessageSize(4 << 20);
  // gRPC sets SO_REUSEPORT by default: a second coordinator on the same port would silently share
  // connections with the first. Refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl.grpc_server = builder.BuildAndStart();
  if (impl.grpc_server == nullptr || s->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", options.grpc_listen));
  }

  if (!options.http_listen.empty()) {
    impl.webhook_backend = std::make_unique<ControllerWebhookBackend>(
        s->controller_.get(), impl.pipelines.get(), "webhook/github");
    impl.webhooks =
        std::make_unique<WebhookProcessor>(impl.webhook_backend.get(), impl.deliveries.get());
    HttpServer::Options hopts;
    hopts.listen = options.http_listen;
    HttpServer::Handlers handlers;
    WebhookProcessor* webhooks = impl.webhooks.get();
    BuildController* controller = s->controller_.get();
    handlers.github_webhook = [webhooks](const std::map<std::string, std::string>& h,
                                         std::string_view body) { return webhooks->HandleGitHub(h, body); };
    handlers.metrics = [controller] { return controller->MetricsText(); };
    DeploymentController* deployments = impl.deployments.get();
    PipelineController* pipelines = impl.pipelines.get();
    handlers.healthy = [controller, deployments, pipelines] {
      return controller->Healthy() && deployments->Healthy() && pipelines->Healthy();
    };
    KILN_ASSIGN_OR_RETURN(impl.http, HttpServer::Start(hopts, std::move(handlers)));
  }

  impl.poll_backend = std::make_unique<ControllerWebhookBackend>(s->controller_.get(),
                                                                 impl.pipelines.get(), "poll");
  SourcePoller::Options poller_options;
  poller_options.backend = impl.poll_backend.get();
  poller_options.store = impl.store.get();
  poller_options.deliveries = impl.deliveries.get();
  KILN_ASSIGN_OR_RETURN(impl.poller, SourcePoller::Create(poller_options));
  impl.poller->Start();

  BuildController* controller = s->controller_.get();
  DeploymentController* deployments = impl.deployments.get();
  PipelineController* pipelines = impl.pipelines.get();
  const int64_t tick = options.tick_interval_millis;
  impl.ticker = std::thread([&impl, controller, deployments, pipelines, tick] {
    while (!impl.stop_ticker.WaitForNotificationWithTimeout(absl::Milliseconds(tick))) {
      controller->Tick();
      deployments->Tick();
      pipelines->Tick();
    }
  });
  KILN_LOG(INFO) << "coordinator listening: gRPC 127.0.0.1:" << s->grpc_port_
                 << (impl.http ? absl::StrCat(", HTTP port ", impl.http->port()) : std::string());
  return s;
}

void CoordinatorServer::Shutdown() {
  Impl& impl = *impl_;
  if (impl.shut_down) return;
  impl.shut_down = true;
  if (impl.http) impl.http->Stop();
  if (impl.poller) impl.poller->Stop();
  if (impl.grpc_server) impl.grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  if (impl.ticker.joinable()) {
    impl.stop_ticker.Notify();
    impl.ticker.join();
  }
  if (impl.grpc_server) impl.grpc_server->Wait();
}

}  // namespace kiln::coordinator
