// gRPC adapters over the DeploymentController (a thin layer, as coordinator/service/services.h):
// kiln.v1.DeployService for the `kiln deploy ...` commands, and the AgentService.DownloadRevision
// stream, which the AgentServiceImpl delegates to StartDownloadRevision.
//
// StreamDeploymentLogs sends a Deployment snapshot whenever the deployment's status or a host's
// status or event count changed, and the host's log bytes in order (at most 64 KiB per message);
// with follow it ends once that host is done (Succeeded, Failed or Skipped), else once the stored
// log was sent. It follows through DeploymentController::Watch (no polling).
//
// Thread-safety: reactions never block (the controller only takes its mutex and touches the local
// store and log files). Each stream reactor deletes itself in OnDone.
#ifndef KILN_COORDINATOR_DEPLOYMENTS_DEPLOY_SERVICE_H_
#define KILN_COORDINATOR_DEPLOYMENTS_DEPLOY_SERVICE_H_

#include "coordinator/artifacts/artifact_store.h"
#include "coordinator/deployments/deployment_controller.h"
#include "kiln/v1/agent.grpc.pb.h"
#include "kiln/v1/deploy.grpc.pb.h"

namespace kiln::coordinator {

// kiln.v1.DeployService. `controller` must outlive the service and the server it is registered
// with. Status codes are the controller's (see deployment_controller.h).
class DeployServiceImpl final : public kiln::v1::DeployService::CallbackService {
 public:
  explicit DeployServiceImpl(DeploymentController* controller) : controller_(controller) {}

  grpc::ServerUnaryReactor* CreateApplication(grpc::CallbackServerContext*,
                                              const kiln::v1::CreateApplicationRequest*,
                                              kiln::v1::Application*) override;
  grpc::ServerUnaryReactor* PutDeploymentGroup(grpc::CallbackServerContext*,
                                               const kiln::v1::PutDeploymentGroupRequest*,
                                               kiln::v1::DeploymentGroup*) override;
  grpc::ServerUnaryReactor* ListDeploymentGroups(grpc::CallbackServerContext*,
                                                 const kiln::v1::ListDeploymentGroupsRequest*,
                                                 kiln::v1::ListDeploymentGroupsResponse*) override;
  grpc::ServerUnaryReactor* CreateDeployment(grpc::CallbackServerContext*,
                                             const kiln::v1::CreateDeploymentRequest*,
                                             kiln::v1::Deployment*) override;
  grpc::ServerUnaryReactor* GetDeployment(grpc::CallbackServerContext*,
                                          const kiln::v1::GetDeploymentRequest*,
                                          kiln::v1::Deployment*) override;
  // page_size 0 = 50, capped at 1000; INVALID_ARGUMENT if negative.
  grpc::ServerUnaryReactor* ListDeployments(grpc::CallbackServerContext*,
                                            const kiln::v1::ListDeploymentsRequest*,
                                            kiln::v1::ListDeploymentsResponse*) override;
  grpc::ServerUnaryReactor* StopDeployment(grpc::CallbackServerContext*,
                                           const kiln::v1::StopDeploymentRequest*,
                                           kiln::v1::Deployment*) override;
  // NOT_FOUND (deployment, or `host` is not one of its hosts), INVALID_ARGUMENT (negative offset).
  grpc::ServerWriteReactor<kiln::v1::StreamDeploymentLogsResponse>* StreamDeploymentLogs(
      grpc::CallbackServerContext*, const kiln::v1::StreamDeploymentLogsRequest*) override;

 private:
  DeploymentController* const controller_;
};

// AgentService.DownloadRevision: streams the revision zip of `request.deployment_id` to
// `request.agent_id` in chunks of at most 1 MiB (an empty blob sends no message). Ends with
// PERMISSION_DENIED (the agent's host is not in progress in that deployment), NOT_FOUND (unknown
// deployment, or the blob is missing), FAILED_PRECONDITION (a git revision, or `controller` or
// `artifacts` is null), INTERNAL (disk). Returns a self-deleting reactor; `controller` and
// `artifacts` must outlive it. Call from AgentServiceImpl::DownloadRevision.
grpc::ServerWriteReactor<kiln::v1::DownloadRevisionResponse>* StartDownloadRevision(
    DeploymentController* controller, ArtifactStore* artifacts,
    const kiln::v1::DownloadRevisionRequest& request);

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_DEPLOYMENTS_DEPLOY_SERVICE_H_
