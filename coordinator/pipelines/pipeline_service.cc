#include "coordinator/pipelines/pipeline_service.h"

#include <utility>

#include "common/grpc_status.h"

namespace kiln::coordinator {
namespace {

template <typename T, typename F>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, absl::StatusOr<T> result, F fill) {
  auto* reactor = ctx->DefaultReactor();
  if (result.ok()) fill(*std::move(result));
  reactor->Finish(common::ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* PipelineServiceImpl::PutPipeline(grpc::CallbackServerContext* ctx,
                                                           const kiln::v1::PutPipelineRequest* req,
                                                           kiln::v1::Pipeline* resp) {
  return Unary(ctx, controller_->PutPipeline(req->pipeline()), [&](auto p) { *resp = std::move(p); });
}

grpc::ServerUnaryReactor* PipelineServiceImpl::GetPipeline(grpc::CallbackServerContext* ctx,
                                                           const kiln::v1::GetPipelineRequest* req,
                                                           kiln::v1::GetPipelineResponse* resp) {
  return Unary(ctx, controller_->GetPipeline(req->name(), req->max_executions()),
               [&](auto r) { *resp = std::move(r); });
}

grpc::ServerUnaryReactor* PipelineServiceImpl::StartPipelineExecution(
    grpc::CallbackServerContext* ctx, const kiln::v1::StartPipelineExecutionRequest* req,
    kiln::v1::PipelineExecution* resp) {
  return Unary(ctx, controller_->StartPipelineExecution(req->name(), req->source_commit()),
               [&](auto e) { *resp = std::move(e); });
}

grpc::ServerUnaryReactor* PipelineServiceImpl::PutApprovalResult(
    grpc::CallbackServerContext* ctx, const kiln::v1::PutApprovalResultRequest* req,
    kiln::v1::PipelineExecution* resp) {
  return Unary(ctx, controller_->PutApprovalResult(*req), [&](auto e) { *resp = std::move(e); });
}

grpc::ServerUnaryReactor* PipelineServiceImpl::RetryStageExecution(
    grpc::CallbackServerContext* ctx, const kiln::v1::RetryStageExecutionRequest* req,
    kiln::v1::PipelineExecution* resp) {
  return Unary(ctx, controller_->RetryStageExecution(*req), [&](auto e) { *resp = std::move(e); });
}

}  // namespace kiln::coordinator
