#include "coordinator/deployments/deploy_service.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"

namespace kiln::coordinator {

using common::ToGrpcStatus;

namespace {

template <typename T, typename F>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, absl::StatusOr<T> result, F fill) {
  auto* reactor = ctx->DefaultReactor();
  if (result.ok()) fill(*std::move(result));
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

bool HostDone(const std::string& status) {
  return status == "Succeeded" || status == "Failed" || status == "Skipped";
}

// StreamDeploymentLogs: deployment snapshots when something changed, and one host's log bytes.
class DeploymentLogReactor final
    : public grpc::ServerWriteReactor<kiln::v1::StreamDeploymentLogsResponse> {
 public:
  DeploymentLogReactor(DeploymentController* controller,
                       const kiln::v1::StreamDeploymentLogsRequest& req)
      : controller_(controller), id_(req.deployment_id()), host_(req.host()),
        offset_(req.offset()), follow_(req.follow()) {
    if (req.offset() < 0) {
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "offset must not be negative"));
      return;
    }
    auto watch = controller_->Watch(id_, [this] { Poke(); });
    absl::MutexLock l(&mu_);
    if (!watch.ok()) {
      finished_ = true;
      Finish(ToGrpcStatus(watch.status()));
      return;
    }
    watch_ = *std::move(watch);
    if (!writing_) NextLocked();  // a Poke may have started the first write already
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok || cancelled_) {
      FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    NextLocked();
  }

  void OnCancel() override {
    absl::MutexLock l(&mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    watch_.reset();  // no callback runs after this returns
    delete this;
  }

 private:
  void Poke() {
    absl::MutexLock l(&mu_);
    if (!writing_) NextLocked();
  }

  void FinishLocked(grpc::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(std::move(s));
  }

  // REQUIRES: no write in flight.
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    // The snapshot first: a host's log is complete once it is done (logs precede host_done).
    auto d = controller_->GetDeployment(id_);
    if (!d.ok()) {
      FinishLocked(ToGrpcStatus(d.status()));
      return;
    }
    const kiln::v1::DeploymentTarget* target = nullptr;
    std::string signature = d->status();
    for (const auto& t : d->targets()) {
      if (t.agent_id() == host_ || t.hostname() == host_) target = &t;
      absl::StrAppend(&signature, "/", t.status(), ":", t.lifecycle_events_size());
    }
    if (target == nullptr) {
      FinishLocked(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                absl::StrCat("deployment ", id_, " has no host ", host_)));
      return;
    }
    const std::string agent = target->agent_id();
    const bool done = HostDone(target->status());
    if (signature != last_signature_) {
      last_signature_ = signature;
      resp_.Clear();
      *resp_.mutable_deployment() = *std::move(d);
      writing_ = true;
      StartWrite(&resp_);
      return;
    }
    auto data = controller_->ReadLog(id_, agent, offset_, 64 << 10);
    if (!data.ok()) {
      FinishLocked(ToGrpcStatus(data.status()));
      return;
    }
    if (!data->empty()) {
      offset_ += static_cast<int64_t>(data->size());
      resp_.Clear();
      resp_.set_data(*std::move(data));
      writing_ = true;
      StartWrite(&resp_);
      return;
    }
    if (done || !follow_) FinishLocked(grpc::Status::OK);
    // Otherwise wait for the next Poke().
  }

  DeploymentController* const controller_;
  const std::string id_;
  const std::string host_;
  absl::Mutex mu_;
  int64_t offset_ ABSL_GUARDED_BY(mu_);
  const bool follow_;
  std::unique_ptr<DeploymentWatch> watch_;
  std::string last_signature_ ABSL_GUARDED_BY(mu_);
  kiln::v1::StreamDeploymentLogsResponse resp_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// DownloadRevision: the revision blob in 1 MiB chunks.
class RevisionDownloadReactor final
    : public grpc::ServerWriteReactor<kiln::v1::DownloadRevisionResponse> {
 public:
  RevisionDownloadReactor(DeploymentController* controller, ArtifactStore* store,
                          const kiln::v1::DownloadRevisionRequest& req) {
    if (controller == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "deployments are not enabled"));
      return;
    }
    auto revision = controller->RevisionForAgent(req.agent_id(), req.deployment_id());
    if (!revision.ok()) {
      Finish(ToGrpcStatus(revision.status()));
      return;
    }
    if (store == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no artifact store"));
      return;
    }
    auto reader = store->OpenBlob(revision->sha256());
    if (!reader.ok()) {
      Finish(ToGrpcStatus(reader.status()));
      return;
    }
    reader_ = *std::move(reader);
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::CANCELLED);
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    auto data = reader_->Read(1 << 20);
    if (!data.ok()) return Finish(ToGrpcStatus(data.status()));
    if (data->empty()) return Finish(grpc::Status::OK);
    resp_.set_data(*std::move(data));
    StartWrite(&resp_);
  }

  std::unique_ptr<ArtifactStore::Reader> reader_;
  kiln::v1::DownloadRevisionResponse resp_;
};

}  // namespace

grpc::ServerWriteReactor<kiln::v1::DownloadRevisionResponse>* StartDownloadRevision(
    DeploymentController* controller, ArtifactStore* artifacts,
    const kiln::v1::DownloadRevisionRequest& request) {
  return new RevisionDownloadReactor(controller, artifacts, request);
}

grpc::ServerUnaryReactor* DeployServiceImpl::CreateApplication(
    grpc::CallbackServerContext* ctx, const kiln::v1::CreateApplicationRequest* req,
    kiln::v1::Application* resp) {
  return Unary(ctx, controller_->CreateApplication(req->name()),
               [&](auto a) { *resp = std::move(a); });
}

grpc::ServerUnaryReactor* DeployServiceImpl::PutDeploymentGroup(
    grpc::CallbackServerContext* ctx, const kiln::v1::PutDeploymentGroupRequest* req,
    kiln::v1::DeploymentGroup* resp) {
  return Unary(ctx, controller_->PutDeploymentGroup(req->group()),
               [&](auto g) { *resp = std::move(g); });
}

grpc::ServerUnaryReactor* DeployServiceImpl::ListDeploymentGroups(
    grpc::CallbackServerContext* ctx, const kiln::v1::ListDeploymentGroupsRequest* req,
    kiln::v1::ListDeploymentGroupsResponse* resp) {
  return Unary(ctx, controller_->ListDeploymentGroups(req->application()), [&](auto gs) {
    for (auto& g : gs) *resp->add_groups() = std::move(g);
  });
}

grpc::ServerUnaryReactor* DeployServiceImpl::CreateDeployment(
    grpc::CallbackServerContext* ctx, const kiln::v1::CreateDeploymentRequest* req,
    kiln::v1::Deployment* resp) {
  return Unary(ctx, controller_->CreateDeployment(*req), [&](auto d) { *resp = std::move(d); });
}

grpc::ServerUnaryReactor* DeployServiceImpl::GetDeployment(grpc::CallbackServerContext* ctx,
                                                           const kiln::v1::GetDeploymentRequest* req,
                                                           kiln::v1::Deployment* resp) {
  return Unary(ctx, controller_->GetDeployment(req->id()), [&](auto d) { *resp = std::move(d); });
}

grpc::ServerUnaryReactor* DeployServiceImpl::ListDeployments(
    grpc::CallbackServerContext* ctx, const kiln::v1::ListDeploymentsRequest* req,
    kiln::v1::ListDeploymentsResponse* resp) {
  return Unary(ctx,
               controller_->ListDeployments(req->application(), req->deployment_group(),
                                            req->page_size()),
               [&](auto ds) {
                 for (auto& d : ds) *resp->add_deployments() = std::move(d);
               });
}

grpc::ServerUnaryReactor* DeployServiceImpl::StopDeployment(
    grpc::CallbackServerContext* ctx, const kiln::v1::StopDeploymentRequest* req,
    kiln::v1::Deployment* resp) {
  return Unary(ctx, controller_->StopDeployment(req->id()), [&](auto d) { *resp = std::move(d); });
}

grpc::ServerWriteReactor<kiln::v1::StreamDeploymentLogsResponse>*
DeployServiceImpl::StreamDeploymentLogs(grpc::CallbackServerContext* ctx,
                                        const kiln::v1::StreamDeploymentLogsRequest* req) {
  return new DeploymentLogReactor(controller_, *req);
}

}  // namespace kiln::coordinator
