#include "coordinator/service/services.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "coordinator/deployments/deploy_service.h"
#include "common/logging.h"

namespace kiln::coordinator {

using common::ToGrpcStatus;

namespace {

// One agent's Connect stream.
class AgentSession final
    : public grpc::ServerBidiReactor<kiln::v1::AgentMessage, kiln::v1::CoordinatorMessage>,
      public AgentConnection {
 public:
  explicit AgentSession(BuildController* controller) : controller_(controller) { StartRead(&in_); }

  void Send(const kiln::v1::CoordinatorMessage& msg) override {
    absl::MutexLock l(&mu_);
    if (closing_) return;
    out_.push_back(msg);
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close(grpc::Status::OK);
      return;
    }
    if (agent_id_.empty()) {
      if (in_.kind_case() != kiln::v1::AgentMessage::kHello) {
        Close(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be AgentHello"));
        return;
      }
      absl::Status s = controller_->AgentConnected(in_.hello(), this);
      if (!s.ok()) {
        KILN_LOG(WARNING) << "agent hello refused: " << s;
        Close(ToGrpcStatus(s));
        return;
      }
      agent_id_ = in_.hello().agent_id();
    } else if (!controller_->HandleAgentMessage(agent_id_, in_)) {
      Close(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                         "a log chunk could not be stored; reconnect and resend unacknowledged chunks"));
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    out_.pop_front();
    if (!ok) {
      out_.clear();
      closing_ = true;
    }
    if (!out_.empty() && !closing_) {
      StartWrite(&out_.front());
      return;
    }
    writing_ = false;
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  // The stream is over from our side: stop taking messages from the controller, then finish once no
  // write is in flight.
  void Close(grpc::Status status) {
    if (!agent_id_.empty()) controller_->AgentDisconnected(agent_id_, this);
    absl::MutexLock l(&mu_);
    closing_ = true;
    final_status_ = std::move(status);
    close_requested_ = true;
    MaybeFinishLocked();
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (close_requested_ && !writing_ && !finished_) {
      finished_ = true;
      Finish(final_status_);
    }
  }

  BuildController* const controller_;
  kiln::v1::AgentMessage in_;  // touched only by the read chain
  std::string agent_id_;       // touched only by the read chain
  absl::Mutex mu_;
  std::deque<kiln::v1::CoordinatorMessage> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

// StreamBuildLogs: sends build snapshots when the phase or status changed, and log bytes in order.
class LogStreamReactor final : public grpc::ServerWriteReactor<kiln::v1::StreamBuildLogsResponse> {
 public:
  LogStreamReactor(BuildController* controller, const kiln::v1::StreamBuildLogsRequest& req)
      : controller_(controller), id_(req.build_id()), offset_(std::max<int64_t>(0, req.offset())),
        follow_(req.follow()) {
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
    auto build = controller_->GetBuild(id_);
    if (!build.ok()) {
      FinishLocked(ToGrpcStatus(build.status()));
      return;
    }
    std::string signature = absl::StrCat(build->current_phase(), "/", build->build_status(), "/",
                                         build->phases_size(), "/", build->build_complete());
    if (signature != last_signature_) {
      last_signature_ = signature;
      resp_.Clear();
      *resp_.mutable_build() = *build;
      writing_ = true;
      StartWrite(&resp_);
      return;
    }
    auto data = controller_->ReadLog(id_, offset_, 64 << 10);
    if (data.ok() && !data->empty()) {
      offset_ += static_cast<int64_t>(data->size());
      resp_.Clear();
      resp_.set_data(*std::move(data));
      writing_ = true;
      StartWrite(&resp_);
      return;
    }
    if (build->build_complete() || !follow_) FinishLocked(grpc::Status::OK);
    // Otherwise wait for the next Poke().
  }

  BuildController* const controller_;
  const std::string id_;
  absl::Mutex mu_;
  int64_t offset_ ABSL_GUARDED_BY(mu_);
  const bool follow_;
  std::unique_ptr<BuildWatch> watch_;
  std::string last_signature_ ABSL_GUARDED_BY(mu_);
  kiln::v1::StreamBuildLogsResponse resp_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// UploadArtifact: header first, then data chunks written to the artifact store as they arrive.
class UploadReactor final : public grpc::ServerReadReactor<kiln::v1::UploadArtifactRequest> {
 public:
  UploadReactor(grpc::CallbackServerContext* ctx, BuildController* controller, ArtifactStore* store,
                kiln::v1::UploadArtifactResponse* resp)
      : ctx_(ctx), controller_(controller), store_(store), resp_(resp) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the agent half-closed (the upload is complete), or the call was cancelled
      if (ctx_->IsCancelled()) return Finish(grpc::Status::CANCELLED);  // never commit a partial blob
      if (writer_ == nullptr) return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no header"));
      auto info = writer_->Commit();
      if (!info.ok()) return Finish(ToGrpcStatus(info.status()));
      kiln::v1::BuildArtifact* a = resp_->mutable_artifact();
      a->set_identifier(header_.identifier());
      a->set_name(header_.name());
      a->set_file_count(header_.file_count());
      a->set_sha256(info->sha256);
      a->set_size_bytes(info->size_bytes);
      return Finish(grpc::Status::OK);
    }
    if (writer_ == nullptr) {
      if (in_.kind_case() != kiln::v1::UploadArtifactRequest::kHeader) {
        return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be a header"));
      }
      header_ = in_.header();
      absl::Status s = ValidateHeader();
      if (s.ok()) s = controller_->CheckBuildHeldBy(header_.agent_id(), header_.build_id());
      if (!s.ok()) return Finish(ToGrpcStatus(s));
      if (store_ == nullptr) {
        return Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no artifact store"));
      }
      auto w = store_->NewWriter();
      if (!w.ok()) return Finish(ToGrpcStatus(w.status()));
      writer_ = *std::move(w);
    } else {
      if (in_.kind_case() != kiln::v1::UploadArtifactRequest::kData || in_.data().size() > (1u << 20)) {
        return Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "after the header, only data messages of at most 1 MiB"));
      }
      absl::Status s = writer_->Append(in_.data());
      if (!s.ok()) return Finish(ToGrpcStatus(s));
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status ValidateHeader() const {
    const std::string& id = header_.identifier();
    bool id_ok = id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
                   return absl::ascii_isalnum(c) || c == '_';
                 });
    if (!id_ok) return absl::InvalidArgumentError("identifier: expected [A-Za-z0-9_]{0,128}");
    if (header_.name().size() > 1024) return absl::InvalidArgumentError("name: over 1024 bytes");
    if (header_.file_count() < 0) return absl::InvalidArgumentError("file_count: negative");
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const ctx_;
  BuildController* const controller_;
  ArtifactStore* const store_;
  kiln::v1::UploadArtifactResponse* const resp_;
  kiln::v1::UploadArtifactRequest in_;
  kiln::v1::UploadArtifactHeader header_;
  std::unique_ptr<ArtifactStore::Writer> writer_;
};

// GetArtifact: the artifact record, then its blob in 1 MiB chunks.
class ArtifactReadReactor final : public grpc::ServerWriteReactor<kiln::v1::GetArtifactResponse> {
 public:
  ArtifactReadReactor(BuildController* controller, ArtifactStore* store,
                      const kiln::v1::GetArtifactRequest& req) {
    auto artifact = controller->FindArtifact(req.build_id(), req.name());
    if (!artifact.ok()) {
      Finish(ToGrpcStatus(artifact.status()));
      return;
    }
    if (store == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no artifact store"));
      return;
    }
    auto reader = store->OpenBlob(artifact->sha256());
    if (!reader.ok()) {
      Finish(ToGrpcStatus(reader.status()));
      return;
    }
    reader_ = *std::move(reader);
    *resp_.mutable_artifact() = *std::move(artifact);
    StartWrite(&resp_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::CANCELLED);
    auto data = reader_->Read(1 << 20);
    if (!data.ok()) return Finish(ToGrpcStatus(data.status()));
    if (data->empty()) return Finish(grpc::Status::OK);
    resp_.Clear();
    resp_.set_data(*std::move(data));
    StartWrite(&resp_);
  }

  void OnDone() override { delete this; }

 private:
  std::unique_ptr<ArtifactStore::Reader> reader_;
  kiln::v1::GetArtifactResponse resp_;
};

template <typename T, typename F>
grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, absl::StatusOr<T> result, F fill) {
  auto* reactor = ctx->DefaultReactor();
  if (result.ok()) fill(*std::move(result));
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace

// ---- AgentService ----

grpc::ServerBidiReactor<kiln::v1::AgentMessage, kiln::v1::CoordinatorMessage>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* context) {
  return new AgentSession(controller_);
}

grpc::ServerReadReactor<kiln::v1::UploadArtifactRequest>* AgentServiceImpl::UploadArtifact(
    grpc::CallbackServerContext* ctx, kiln::v1::UploadArtifactResponse* resp) {
  return new UploadReactor(ctx, controller_, artifacts_, resp);
}

grpc::ServerWriteReactor<kiln::v1::DownloadRevisionResponse>* AgentServiceImpl::DownloadRevision(
    grpc::CallbackServerContext*, const kiln::v1::DownloadRevisionRequest* req) {
  return StartDownloadRevision(deployments_, artifacts_, *req);
}

grpc::ServerWriteReactor<kiln::v1::GetArtifactResponse>* KilnServiceImpl::GetArtifact(
    grpc::CallbackServerContext* ctx, const kiln::v1::GetArtifactRequest* req) {
  return new ArtifactReadReactor(controller_, artifacts_, *req);
}

grpc::ServerUnaryReactor* AgentServiceImpl::GetBuildParameters(
    grpc::CallbackServerContext* ctx, const kiln::v1::GetBuildParametersRequest* req,
    kiln::v1::GetBuildParametersResponse* resp) {
  return Unary(ctx, controller_->GetBuildParameters(*req), [&](auto r) { *resp = std::move(r); });
}

// ---- KilnService ----

grpc::ServerUnaryReactor* KilnServiceImpl::PutProject(grpc::CallbackServerContext* ctx,
                                                      const kiln::v1::PutProjectRequest* req,
                                                      kiln::v1::PutProjectResponse* resp) {
  return Unary(ctx, controller_->PutProject(req->project()),
               [&](auto p) { *resp->mutable_project() = std::move(p); });
}

grpc::ServerUnaryReactor* KilnServiceImpl::ListProjects(grpc::CallbackServerContext* ctx,
                                                        const kiln::v1::ListProjectsRequest* req,
                                                        kiln::v1::ListProjectsResponse* resp) {
  return Unary(ctx, controller_->ListProjects(), [&](auto ps) {
    for (auto& p : ps) *resp->add_projects() = std::move(p);
  });
}

grpc::ServerUnaryReactor* KilnServiceImpl::GetProject(grpc::CallbackServerContext* ctx,
                                                      const kiln::v1::GetProjectRequest* req,
                                                      kiln::v1::GetProjectResponse* resp) {
  return Unary(ctx, controller_->GetProject(req->name()),
               [&](auto p) { *resp->mutable_project() = std::move(p); });
}

grpc::ServerUnaryReactor* KilnServiceImpl::StartBuild(grpc::CallbackServerContext* ctx,
                                                      const kiln::v1::StartBuildRequest* req,
                                                      kiln::v1::StartBuildResponse* resp) {
  return Unary(ctx, controller_->StartBuild(*req),
               [&](auto b) { *resp->mutable_build() = std::move(b); });
}

grpc::ServerUnaryReactor* KilnServiceImpl::GetBuild(grpc::CallbackServerContext* ctx,
                                                    const kiln::v1::GetBuildRequest* req,
                                                    kiln::v1::GetBuildResponse* resp) {
  return Unary(ctx, controller_->GetBuild(req->id()),
               [&](auto b) { *resp->mutable_build() = std::move(b); });
}

grpc::ServerUnaryReactor* KilnServiceImpl::ListBuilds(grpc::CallbackServerContext* ctx,
                                                      const kiln::v1::ListBuildsRequest* req,
                                                      kiln::v1::ListBuildsResponse* resp) {
  return Unary(ctx, controller_->ListBuilds(req->project_name(), req->page_size()), [&](auto bs) {
    for (auto& b : bs) *resp->add_builds() = std::move(b);
  });
}

grpc::ServerUnaryReactor* KilnServiceImpl::StopBuild(grpc::CallbackServerContext* ctx,
                                                     const kiln::v1::StopBuildRequest* req,
                                                     kiln::v1::StopBuildResponse* resp) {
  return Unary(ctx, controller_->StopBuild(req->id()),
               [&](auto b) { *resp->mutable_build() = std::move(b); });
}

grpc::ServerWriteReactor<kiln::v1::StreamBuildLogsResponse>* KilnServiceImpl::StreamBuildLogs(
    grpc::CallbackServerContext* ctx, const kiln::v1::StreamBuildLogsRequest* req) {
  return new LogStreamReactor(controller_, *req);
}

grpc::ServerUnaryReactor* KilnServiceImpl::PutParameter(grpc::CallbackServerContext* ctx,
                                                        const kiln::v1::PutParameterRequest* req,
                                                        kiln::v1::PutParameterResponse* resp) {
  return Unary(ctx, controller_->PutParameter(*req), [&](int64_t v) { resp->set_version(v); });
}

grpc::ServerUnaryReactor* KilnServiceImpl::ListParameters(grpc::CallbackServerContext* ctx,
                                                          const kiln::v1::ListParametersRequest* req,
                                                          kiln::v1::ListParametersResponse* resp) {
  return Unary(ctx, controller_->ListParameters(), [&](auto ps) {
    for (auto& p : ps) *resp->add_parameters() = std::move(p);
  });
}

grpc::ServerUnaryReactor* KilnServiceImpl::ListWebhookDeliveries(
    grpc::CallbackServerContext* ctx, const kiln::v1::ListWebhookDeliveriesRequest* req,
    kiln::v1::ListWebhookDeliveriesResponse* resp) {
  auto list = [&]() -> absl::StatusOr<std::vector<kiln::v1::WebhookDelivery>> {
    if (deliveries_ == nullptr) return absl::FailedPreconditionError("no webhook delivery log");
    if (req->page_size() < 0) return absl::InvalidArgumentError("page_size must not be negative");
    const int limit = req->page_size() == 0 ? 50 : std::min(req->page_size(), 1000);
    return deliveries_->List(req->project_name(), static_cast<size_t>(limit));
  };
  return Unary(ctx, list(), [&](auto ds) {
    for (auto& d : ds) *resp->add_deliveries() = std::move(d);
  });
}

grpc::ServerUnaryReactor* KilnServiceImpl::ListAgents(grpc::CallbackServerContext* ctx,
                                                      const kiln::v1::ListAgentsRequest* req,
                                                      kiln::v1::ListAgentsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  for (auto& a : controller_->ListAgents()) *resp->add_agents() = std::move(a);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kiln::coordinator
