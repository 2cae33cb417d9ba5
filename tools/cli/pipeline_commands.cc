#include "tools/cli/pipeline_commands.h"

#include "tools/cli/cli_util.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/pipelines/pipeline_yaml.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/client_context.h"

namespace kiln::cli {
namespace {

using ::google::protobuf::util::TimeUtil;

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

// "-" unless both ends are set.
std::string Span(const google::protobuf::Timestamp& start, const google::protobuf::Timestamp& end) {
  if (!IsSet(start) || !IsSet(end)) return "-";
  return FormatDuration(TimeUtil::TimestampToMilliseconds(end) -
                        TimeUtil::TimestampToMilliseconds(start));
}

std::string Utc(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                          absl::FromUnixMillis(TimeUtil::TimestampToMilliseconds(t)),
                          absl::UTCTimeZone());
}

// Columns separated by two spaces, each as wide as its widest cell.
void AppendTable(const std::vector<Row>& rows, std::string& text) {
  std::vector<size_t> widths;
  for (const Row& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);
    absl::StrAppend(&text, line, "\n");
  }
}

}  // namespace

std::string FormatPipeline(const kiln::v1::GetPipelineResponse& resp) {
  const kiln::v1::Pipeline& p = resp.pipeline();
  std::vector<std::string> stages;
  for (const auto& s : p.stages()) stages.push_back(s.name());
  std::string text = absl::StrCat("pipeline ", p.name(), "  version ", p.version(), "  mode ",
                                  p.execution_mode(), "\nstages: ", absl::StrJoin(stages, " -> "),
                                  "\n");
  if (resp.executions().empty()) absl::StrAppend(&text, "\nno executions\n");
  for (const kiln::v1::PipelineExecution& e : resp.executions()) {
    absl::StrAppend(&text, "\nexecution ", e.id(), "  ", e.status(), "  trigger ",
                    OrDash(e.trigger()), "  commit ", OrDash(e.source_commit().substr(0, 12)),
                    "  started ", Utc(e.start_time()), "  ", Span(e.start_time(), e.end_time()),
                    "\n");
    std::vector<Row> rows;
    for (const kiln::v1::StageExecution& st : e.stages()) {
      rows.push_back({absl::StrCat("  ", st.stage()), OrDash(st.status()),
                      Span(st.start_time(), st.end_time())});
      for (const kiln::v1::ActionExecution& a : st.actions()) {
        rows.push_back({absl::StrCat("    ", a.action()), a.status(), OrDash(a.external_id()),
                        a.summary()});
      }
    }
    AppendTable(rows, text);
  }
  return text;
}

int PipelineApply(PipelineStub& stub, const PipelineApplyOptions& opts, std::ostream& out,
                  std::ostream& err) {
  std::ifstream file(opts.file, std::ios::binary);
  if (!file) {
    err << "kiln: cannot read " << opts.file << ": " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  absl::StatusOr<kiln::v1::Pipeline> pipeline = coordinator::ParsePipelineYaml(text, opts.file);
  if (!pipeline.ok()) {
    err << "kiln: " << pipeline.status().message() << "\n";
    return kExitFailure;
  }
  kiln::v1::PutPipelineRequest req;
  *req.mutable_pipeline() = *std::move(pipeline);
  kiln::v1::Pipeline resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.PutPipeline(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "pipeline " << resp.name() << " applied (version " << resp.version() << ")\n";
  return kExitOk;
}

int PipelineGet(PipelineStub& stub, const PipelineGetOptions& opts, std::ostream& out,
                std::ostream& err) {
  kiln::v1::GetPipelineRequest req;
  req.set_name(opts.name);
  req.set_max_executions(opts.limit);
  kiln::v1::GetPipelineResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.GetPipeline(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  if (!opts.json) {
    out << FormatPipeline(resp);
    return kExitOk;
  }
  return PrintJson(resp, out, err);
}

int PipelineStart(PipelineStub& stub, const PipelineStartOptions& opts, std::ostream& out,
                  std::ostream& err) {
  kiln::v1::StartPipelineExecutionRequest req;
  req.set_name(opts.name);
  req.set_source_commit(opts.commit);
  kiln::v1::PipelineExecution resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.StartPipelineExecution(&ctx, req, &resp); !s.ok()) {
    return RpcError(s, err);
  }
  out << resp.id() << "\n";
  err << "status " << resp.status() << "\n";
  return kExitOk;
}

int PipelineApproval(PipelineStub& stub, const PipelineApprovalOptions& opts, std::ostream& out,
                     std::ostream& err) {
  kiln::v1::PutApprovalResultRequest req;
  req.set_pipeline(opts.name);
  req.set_execution_id(opts.execution);
  req.set_stage(opts.stage);
  req.set_action(opts.action);
  req.set_approved(opts.approve);
  req.set_summary(opts.summary);
  kiln::v1::PipelineExecution resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.PutApprovalResult(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << opts.stage << "/" << opts.action << (opts.approve ? " approved" : " rejected")
      << "; execution " << resp.id() << " " << resp.status() << "\n";
  return kExitOk;
}

int PipelineRetry(PipelineStub& stub, const PipelineRetryOptions& opts, std::ostream& out,
                  std::ostream& err) {
  kiln::v1::RetryStageExecutionRequest req;
  req.set_pipeline(opts.name);
  req.set_execution_id(opts.execution);
  req.set_stage(opts.stage);
  kiln::v1::PipelineExecution resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.RetryStageExecution(&ctx, req, &resp); !s.ok()) {
    return RpcError(s, err);
  }
  out << "stage " << opts.stage << " retried; execution " << resp.id() << " " << resp.status()
      << "\n";
  return kExitOk;
}

}  // namespace kiln::cli
