// gRPC adapters over the BuildController: a thin layer that turns calls and stream messages into
// controller calls and controller output into messages (laminar rpc.cpp style). Reactions never block:
// the controller only takes its mutex and writes to the local store.
//
// Stream discipline (one ServerBidiReactor per agent): one read in flight at all times; outbound
// messages queued and written one at a time from OnWriteDone; the reactor deletes itself in OnDone.
#ifndef KILN_COORDINATOR_SERVICE_SERVICES_H_
#define KILN_COORDINATOR_SERVICE_SERVICES_H_

#include "coordinator/artifacts/artifact_store.h"
#include "coordinator/builds/build_controller.h"
#include "coordinator/deployments/deployment_controller.h"
#include "coordinator/http/webhook_deliveries.h"
#include "kiln/v1/agent.grpc.pb.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::coordinator {

// kiln.v1.AgentService. `controller` must outlive the service and the server it is registered with.
class AgentServiceImpl final : public kiln::v1::AgentService::CallbackService {
 public:
  // `artifacts` (may be null: uploads fail) must outlive the service too.
  // `deployments` may be null (DownloadRevision then answers FAILED_PRECONDITION).
  AgentServiceImpl(BuildController* controller, ArtifactStore* artifacts,
                   DeploymentController* deployments = nullptr)
      : controller_(controller), artifacts_(artifacts), deployments_(deployments) {}
  grpc::ServerBidiReactor<kiln::v1::AgentMessage, kiln::v1::CoordinatorMessage>* Connect(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* GetBuildParameters(grpc::CallbackServerContext* context,
                                               const kiln::v1::GetBuildParametersRequest* request,
                                               kiln::v1::GetBuildParametersResponse* response) override;
  grpc::ServerReadReactor<kiln::v1::UploadArtifactRequest>* UploadArtifact(
      grpc::CallbackServerContext* context, kiln::v1::UploadArtifactResponse* response) override;
  grpc::ServerWriteReactor<kiln::v1::DownloadRevisionResponse>* DownloadRevision(
      grpc::CallbackServerContext* context, const kiln::v1::DownloadRevisionRequest* request) override;

 private:
  BuildController* controller_;
  ArtifactStore* artifacts_;
  DeploymentController* deployments_;
};

// kiln.v1.KilnService. `controller` must outlive the service and the server it is registered with.
class KilnServiceImpl final : public kiln::v1::KilnService::CallbackService {
 public:
  // `deliveries` (may be null: ListWebhookDeliveries answers FAILED_PRECONDITION) must outlive the
  // service too.
  KilnServiceImpl(BuildController* controller, ArtifactStore* artifacts,
                  WebhookDeliveryLog* deliveries = nullptr)
      : controller_(controller), artifacts_(artifacts), deliveries_(deliveries) {}
  grpc::ServerUnaryReactor* PutProject(grpc::CallbackServerContext*, const kiln::v1::PutProjectRequest*,
                                       kiln::v1::PutProjectResponse*) override;
  grpc::ServerUnaryReactor* ListProjects(grpc::CallbackServerContext*, const kiln::v1::ListProjectsRequest*,
                                         kiln::v1::ListProjectsResponse*) override;
  grpc::ServerUnaryReactor* GetProject(grpc::CallbackServerContext*, const kiln::v1::GetProjectRequest*,
                                       kiln::v1::GetProjectResponse*) override;
  grpc::ServerUnaryReactor* StartBuild(grpc::CallbackServerContext*, const kiln::v1::StartBuildRequest*,
                                       kiln::v1::StartBuildResponse*) override;
  grpc::ServerUnaryReactor* GetBuild(grpc::CallbackServerContext*, const kiln::v1::GetBuildRequest*,
                                     kiln::v1::GetBuildResponse*) override;
  grpc::ServerUnaryReactor* ListBuilds(grpc::CallbackServerContext*, const kiln::v1::ListBuildsRequest*,
                                       kiln::v1::ListBuildsResponse*) override;
  grpc::ServerUnaryReactor* StopBuild(grpc::CallbackServerContext*, const kiln::v1::StopBuildRequest*,
                                      kiln::v1::StopBuildResponse*) override;
  grpc::ServerWriteReactor<kiln::v1::StreamBuildLogsResponse>* StreamBuildLogs(
      grpc::CallbackServerContext*, const kiln::v1::StreamBuildLogsRequest*) override;
  grpc::ServerUnaryReactor* PutParameter(grpc::CallbackServerContext*, const kiln::v1::PutParameterRequest*,
                                         kiln::v1::PutParameterResponse*) override;
  grpc::ServerUnaryReactor* ListParameters(grpc::CallbackServerContext*, const kiln::v1::ListParametersRequest*,
                                           kiln::v1::ListParametersResponse*) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext*, const kiln::v1::ListAgentsRequest*,
                                       kiln::v1::ListAgentsResponse*) override;
  grpc::ServerWriteReactor<kiln::v1::GetArtifactResponse>* GetArtifact(
      grpc::CallbackServerContext*, const kiln::v1::GetArtifactRequest*) override;
  // Newest first; page_size 0 = 50, at most 1000 (larger is capped). INVALID_ARGUMENT for a negative
  // page_size.
  grpc::ServerUnaryReactor* ListWebhookDeliveries(grpc::CallbackServerContext*,
                                                  const kiln::v1::ListWebhookDeliveriesRequest*,
                                                  kiln::v1::ListWebhookDeliveriesResponse*) override;

 private:
  BuildController* controller_;
  ArtifactStore* artifacts_;
  WebhookDeliveryLog* deliveries_;
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_SERVICE_SERVICES_H_
