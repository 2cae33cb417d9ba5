// kiln.v1.PipelineService over a PipelineController: a thin gRPC adapter (callback API, unary
// reactors finished inline, like coordinator/service/services.cc). Reactions never block: the
// controller only takes its mutex, writes the local store and queues builds/deployments.
#ifndef KILN_COORDINATOR_PIPELINES_PIPELINE_SERVICE_H_
#define KILN_COORDINATOR_PIPELINES_PIPELINE_SERVICE_H_

#include "coordinator/pipelines/pipeline_controller.h"
#include "kiln/v1/deploy.grpc.pb.h"

namespace kiln::coordinator {

// `controller` must outlive the service and the server it is registered with. Status codes are the
// controller's (PipelineController in pipeline_controller.h).
class PipelineServiceImpl final : public kiln::v1::PipelineService::CallbackService {
 public:
  explicit PipelineServiceImpl(PipelineController* controller) : controller_(controller) {}
  grpc::ServerUnaryReactor* PutPipeline(grpc::CallbackServerContext*, const kiln::v1::PutPipelineRequest*,
                                        kiln::v1::Pipeline*) override;
  grpc::ServerUnaryReactor* GetPipeline(grpc::CallbackServerContext*, const kiln::v1::GetPipelineRequest*,
                                        kiln::v1::GetPipelineResponse*) override;
  grpc::ServerUnaryReactor* StartPipelineExecution(grpc::CallbackServerContext*,
                                                   const kiln::v1::StartPipelineExecutionRequest*,
                                                   kiln::v1::PipelineExecution*) override;
  grpc::ServerUnaryReactor* PutApprovalResult(grpc::CallbackServerContext*,
                                              const kiln::v1::PutApprovalResultRequest*,
                                              kiln::v1::PipelineExecution*) override;
  grpc::ServerUnaryReactor* RetryStageExecution(grpc::CallbackServerContext*,
                                                const kiln::v1::RetryStageExecutionRequest*,
                                                kiln::v1::PipelineExecution*) override;

 private:
  PipelineController* controller_;
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_PIPELINES_PIPELINE_SERVICE_H_
