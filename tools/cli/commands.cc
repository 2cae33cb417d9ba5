#include "tools/cli/commands.h"

#include "tools/cli/cli_util.h"

#include <map>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/project_yaml.h"
#include "grpcpp/client_context.h"
#include "openssl/evp.h"

namespace kiln::cli {
namespace {

using kiln::v1::Build;
using kiln::v1::BuildPhase;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;

const std::string& StatusName(BuildStatus::Value v) { return BuildStatus::Value_Name(v); }
const std::string& PhaseName(BuildPhaseType::Value v) { return BuildPhaseType::Value_Name(v); }

bool IsFinal(BuildStatus::Value v) {
  return v != BuildStatus::UNKNOWN && v != BuildStatus::IN_PROGRESS;
}

// end - start in milliseconds, or -1 if either is unset.
int64_t ElapsedMillis(const google::protobuf::Timestamp& start, const google::protobuf::Timestamp& end) {
  if (!IsSet(start) || !IsSet(end)) return -1;
  return absl::ToInt64Milliseconds(ToTime(end) - ToTime(start));
}

int64_t PhaseMillis(const BuildPhase& p) {
  if (p.duration_in_millis() != 0) return p.duration_in_millis();
  return std::max<int64_t>(0, ElapsedMillis(p.start_time(), p.end_time()));
}

// "CODE: message; message2" of a phase's contexts, skipping empty ones.
std::string ContextText(const BuildPhase& p) {
  std::vector<std::string> parts;
  for (const auto& c : p.contexts()) {
    if (c.status_code().empty() && c.message().empty()) continue;
    if (c.status_code().empty()) {
      parts.push_back(c.message());
    } else if (c.message().empty()) {
      parts.push_back(c.status_code());
    } else {
      parts.push_back(absl::StrCat(c.status_code(), ": ", c.message()));
    }
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace

std::string FormatDuration(int64_t millis) {
  if (millis < 0) millis = 0;
  if (millis < 60'000) return absl::StrFormat("%d.%ds", millis / 1000, (millis % 1000) / 100);
  const int64_t secs = millis / 1000;
  if (secs < 3600) return absl::StrFormat("%dm%02ds", secs / 60, secs % 60);
  return absl::StrFormat("%dh%02dm", secs / 3600, (secs % 3600) / 60);
}

std::vector<ProgressEvent> DiffBuilds(const Build& before, const Build& after) {
  std::vector<ProgressEvent> events;
  for (int i = 0; i < after.phases_size(); ++i) {
    const BuildPhase& p = after.phases(i);
    if (p.phase_type() == BuildPhaseType::COMPLETED) continue;
    // Phases are only ever appended, so the same index holds the same phase.
    const bool existed = i < before.phases_size() && before.phases(i).phase_type() == p.phase_type();
    if (!existed) {
      events.push_back({.kind = ProgressEvent::Kind::kPhaseStarted, .phase = p.phase_type()});
    }
    if (IsFinal(p.phase_status()) && !(existed && IsFinal(before.phases(i).phase_status()))) {
      events.push_back({.kind = ProgressEvent::Kind::kPhaseEnded,
                        .phase = p.phase_type(),
                        .status = p.phase_status(),
                        .duration_millis = PhaseMillis(p),
                        .detail = ContextText(p)});
    }
  }
  if (after.build_complete() && !before.build_complete()) {
    events.push_back({.kind = ProgressEvent::Kind::kBuildCompleted,
                      .status = after.build_status(),
                      .duration_millis = std::max<int64_t>(0, ElapsedMillis(after.start_time(), after.end_time())),
                      .detail = after.id()});
  }
  return events;
}

std::string FormatProgressEvent(const ProgressEvent& e) {
  switch (e.kind) {
    case ProgressEvent::Kind::kPhaseStarted:
      return absl::StrCat("==> ", PhaseName(e.phase), " started");
    case ProgressEvent::Kind::kPhaseEnded: {
      std::string line = absl::StrCat("==> ", PhaseName(e.phase), " ", StatusName(e.status), " in ",
                                      FormatDuration(e.duration_millis));
      if (e.status != BuildStatus::SUCCEEDED && !e.detail.empty()) absl::StrAppend(&line, ": ", e.detail);
      return line;
    }
    case ProgressEvent::Kind::kBuildCompleted:
      return absl::StrCat("==> build ", e.detail, " ", StatusName(e.status), " in ",
                          FormatDuration(e.duration_millis));
  }
  return "";
}

int ProjectApply(Stub& stub, const ProjectApplyOptions& opts, std::ostream& out, std::ostream& err) {
  std::ifstream file(opts.file, std::ios::binary);
  if (!file) {
    err << "kiln: cannot read " << opts.file << ": " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  absl::StatusOr<kiln::v1::Project> project = common::ParseProjectYaml(text, opts.file);
  if (!project.ok()) {
    err << "kiln: " << project.status().message() << "\n";
    return kExitFailure;
  }
  kiln::v1::PutProjectRequest req;
  *req.mutable_project() = *std::move(project);
  kiln::v1::PutProjectResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.PutProject(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "project " << req.project().name() << " applied\n";
  return kExitOk;
}

int ProjectList(Stub& stub, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::ListProjectsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListProjects(&ctx, {}, &resp); !s.ok()) return RpcError(s, err);
  std::vector<Row> rows = {{"NAME", "SOURCE", "BRANCH", "LIMIT", "LABELS"}};
  for (const auto& p : resp.projects()) {
    std::string limit = p.concurrent_build_limit() == 0 ? "-" : absl::StrCat(p.concurrent_build_limit());
    if (p.on_limit() == kiln::v1::OnLimit::REJECT) limit += " reject";
    rows.push_back({p.name(), p.source().location(), p.source().branch(), limit, FormatLabels(p.agent_labels())});
  }
  PrintTable(rows, out);
  return kExitOk;
}

int BuildLogs(Stub& stub, const BuildLogsOptions& opts, std::ostream& out, std::ostream& err) {
  grpc::ClientContext ctx;
  if (!opts.follow) SetDeadline(ctx, opts);
  kiln::v1::StreamBuildLogsRequest req;
  req.set_build_id(opts.build_id);
  req.set_follow(opts.follow);
  std::unique_ptr<grpc::ClientReaderInterface<kiln::v1::StreamBuildLogsResponse>> reader =
      stub.StreamBuildLogs(&ctx, req);
  Build last;
  kiln::v1::StreamBuildLogsResponse resp;
  while (reader->Read(&resp)) {
    if (resp.kind_case() == kiln::v1::StreamBuildLogsResponse::kData) {
      out.write(resp.data().data(), static_cast<std::streamsize>(resp.data().size()));
      out.flush();
    } else if (resp.kind_case() == kiln::v1::StreamBuildLogsResponse::kBuild) {
      if (opts.follow) {
        for (const ProgressEvent& e : DiffBuilds(last, resp.build())) err << FormatProgressEvent(e) << "\n";
        err.flush();
      }
      last = std::move(*resp.mutable_build());
    }
  }
  if (grpc::Status s = reader->Finish(); !s.ok()) return RpcError(s, err);
  if (!opts.follow) return kExitOk;
  if (!last.build_complete()) {
    err << "kiln: log stream ended before build " << opts.build_id << " completed\n";
    return kExitFailure;
  }
  return last.build_status() == BuildStatus::SUCCEEDED ? kExitOk : kExitFailure;
}

int BuildStart(Stub& stub, const BuildStartOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::StartBuildRequest req;
  req.set_project_name(opts.project);
  req.set_source_version(opts.source_version);
  req.set_timeout_in_minutes_override(opts.timeout_minutes);
  req.set_initiator("kiln-cli");
  for (const std::string& kv : opts.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      err << "kiln: --env wants NAME=VALUE, got \"" << kv << "\"\n";
      return kExitUsage;
    }
    kiln::v1::EnvironmentVariable* var = req.add_environment_variables_override();
    var->set_name(kv.substr(0, eq));
    var->set_value(kv.substr(eq + 1));
    var->set_type(kiln::v1::EnvironmentVariable::PLAINTEXT);
  }
  kiln::v1::StartBuildResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.StartBuild(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << resp.build().id() << "\n";
  out.flush();
  if (!opts.follow) return kExitOk;
  BuildLogsOptions logs;
  logs.deadline = opts.deadline;
  logs.build_id = resp.build().id();
  logs.follow = true;
  return BuildLogs(stub, logs, out, err);
}

namespace {

// BuildGet's "Artifacts:" and "Reports:" sections, each printed only when the build has some:
//   "  (primary)  app  0123456789ab  2048 bytes  3 files"
//   "  app-unit  FAILED  12 total, 9 passed, 2 failed, 1 skipped"   (+ the message if INCOMPLETE)
void PrintArtifactsAndReports(const Build& b, std::ostream& out) {
  if (!b.artifacts().empty()) {
    out << "Artifacts:\n";
    std::vector<Row> rows;
    for (const kiln::v1::BuildArtifact& a : b.artifacts()) {
      rows.push_back({a.identifier().empty() ? "(primary)" : a.identifier(), a.name(),
                      a.sha256().substr(0, 12), absl::StrCat(a.size_bytes(), " bytes"),
                      absl::StrCat(a.file_count(), a.file_count() == 1 ? " file" : " files")});
    }
    PrintTable(rows, out, "  ");
  }
  if (!b.reports().empty()) {
    out << "Reports:\n";
    std::vector<Row> rows;
    for (const kiln::v1::TestReport& r : b.reports()) {
      rows.push_back({r.name(), r.status(),
                      absl::StrFormat("%d total, %d passed, %d failed, %d skipped", r.total(),
                                      r.passed(), r.failed(), r.skipped()),
                      r.status() == "INCOMPLETE" ? r.message() : ""});
    }
    PrintTable(rows, out, "  ");
  }
}

}  // namespace

int BuildGet(Stub& stub, const BuildGetOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::GetBuildRequest req;
  req.set_id(opts.build_id);
  kiln::v1::GetBuildResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.GetBuild(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  const Build& b = resp.build();
  if (opts.json) {
    return PrintJson(b, out, err);
  }
  const int64_t elapsed = ElapsedMillis(b.start_time(), b.end_time());
  std::vector<Row> summary = {
      {"Build:", b.id()},
      {"Number:", absl::StrCat(b.build_number())},
      {"Project:", b.project_name()},
      {"Status:", StatusName(b.build_status())},
      {"Current phase:", PhaseName(b.current_phase())},
      {"Source version:", b.source_version().empty() ? "-" : b.source_version()},
      {"Resolved:", b.resolved_source_version().empty() ? "-" : b.resolved_source_version()},
      {"Initiator:", b.initiator().empty() ? "-" : b.initiator()},
      {"Started:", FormatTimestamp(b.start_time())},
      {"Ended:", FormatTimestamp(b.end_time())},
      {"Duration:", elapsed < 0 ? "-" : FormatDuration(elapsed)},
      {"Phases:"},
  };
  PrintTable(summary, out);
  std::vector<Row> phases;
  for (const BuildPhase& p : b.phases()) {
    const bool ended = IsFinal(p.phase_status()) || IsSet(p.end_time());
    phases.push_back({PhaseName(p.phase_type()),
                      p.phase_status() == BuildStatus::UNKNOWN ? "-" : StatusName(p.phase_status()),
                      ended ? FormatDuration(PhaseMillis(p)) : "-", ContextText(p)});
  }
  PrintTable(phases, out, "  ");
  PrintArtifactsAndReports(b, out);
  if (!b.exported_variables().empty()) {
    out << "Exported variables:\n";
    std::vector<Row> vars;
    std::map<std::string, std::string> sorted(b.exported_variables().begin(), b.exported_variables().end());
    for (const auto& [name, value] : sorted) vars.push_back({name, value});
    PrintTable(vars, out, "  ");
  }
  return kExitOk;
}

int BuildList(Stub& stub, const BuildListOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::ListBuildsRequest req;
  req.set_project_name(opts.project);
  kiln::v1::ListBuildsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListBuilds(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  std::vector<Row> rows = {{"ID", "NUMBER", "STATUS", "PHASE", "SOURCE", "STARTED", "DURATION"}};
  for (const Build& b : resp.builds()) {
    const int64_t elapsed = ElapsedMillis(b.start_time(), b.end_time());
    const std::string& sha = b.resolved_source_version();
    rows.push_back({b.id(), absl::StrCat(b.build_number()), StatusName(b.build_status()),
                    PhaseName(b.current_phase()), sha.empty() ? "-" : sha.substr(0, 7),
                    FormatTimestamp(b.start_time()), elapsed < 0 ? "-" : FormatDuration(elapsed)});
  }
  PrintTable(rows, out);
  return kExitOk;
}

int BuildStop(Stub& stub, const BuildStopOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::StopBuildRequest req;
  req.set_id(opts.build_id);
  kiln::v1::StopBuildResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.StopBuild(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "build " << resp.build().id() << " " << StatusName(resp.build().build_status());
  if (!resp.build().build_complete()) out << " (stop requested)";
  out << "\n";
  return kExitOk;
}

int ParamPut(Stub& stub, const ParamPutOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::PutParameterRequest req;
  req.set_name(opts.name);
  if (opts.value == "-") {
    std::istream& in = opts.in != nullptr ? *opts.in : std::cin;
    std::string value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!value.empty() && value.back() == '\n') value.pop_back();
    if (!value.empty() && value.back() == '\r') value.pop_back();
    req.set_value(std::move(value));
  } else {
    req.set_value(opts.value);
  }
  req.set_type(opts.secure ? kiln::v1::Parameter::SECURE_STRING : kiln::v1::Parameter::STRING);
  req.set_overwrite(opts.overwrite);
  kiln::v1::PutParameterResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.PutParameter(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "parameter " << opts.name << " version " << resp.version() << "\n";
  return kExitOk;
}

int ParamList(Stub& stub, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::ListParametersResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListParameters(&ctx, {}, &resp); !s.ok()) return RpcError(s, err);
  std::vector<Row> rows = {{"NAME", "TYPE", "VERSION", "VALUE"}};
  for (const auto& p : resp.parameters()) {
    const bool secure = p.type() == kiln::v1::Parameter::SECURE_STRING;
    rows.push_back({p.name(), kiln::v1::Parameter::Type_Name(p.type()), absl::StrCat(p.version()),
                    secure ? "" : p.value()});
  }
  PrintTable(rows, out);
  return kExitOk;
}

int AgentList(Stub& stub, const CommandOptions& opts, std::ostream& out, std::ostream& err) {
  kiln::v1::ListAgentsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListAgents(&ctx, {}, &resp); !s.ok()) return RpcError(s, err);
  std::vector<Row> rows = {{"ID", "HOSTNAME", "CONNECTED", "SLOTS", "RUNNING", "LABELS", "LAST SEEN"}};
  for (const auto& a : resp.agents()) {
    rows.push_back({a.agent_id(), a.hostname(), a.connected() ? "yes" : "no", absl::StrCat(a.slots()),
                    absl::StrCat(a.running_builds()), FormatLabels(a.labels()),
                    a.last_seen_unix_millis() == 0 ? "-"
                                                   : FormatUtc(absl::FromUnixMillis(a.last_seen_unix_millis()))});
  }
  PrintTable(rows, out);
  return kExitOk;
}

int ArtifactGet(Stub& stub, const ArtifactGetOptions& opts, std::ostream& out, std::ostream& err) {
  if (opts.output.empty()) {
    err << "kiln: artifact get needs -o FILE\n";
    return kExitUsage;
  }
  kiln::v1::GetArtifactRequest req;
  req.set_build_id(opts.build_id);
  req.set_name(opts.name);
  grpc::ClientContext ctx;
  auto reader = stub.GetArtifact(&ctx, req);
  const std::string part = opts.output + ".part";
  std::ofstream file;
  kiln::v1::GetArtifactResponse resp;
  kiln::v1::BuildArtifact artifact;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  bool write_failed = false;
  while (reader->Read(&resp)) {
    if (resp.has_artifact()) {
      artifact = resp.artifact();
      file.open(part, std::ios::binary | std::ios::trunc);
      write_failed = !file;
    } else if (file.is_open() && !write_failed) {
      EVP_DigestUpdate(md, resp.data().data(), resp.data().size());
      file.write(resp.data().data(), static_cast<std::streamsize>(resp.data().size()));
      write_failed = !file;
    }
  }
  grpc::Status s = reader->Finish();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(md, digest, &len);
  EVP_MD_CTX_free(md);
  if (file.is_open()) file.close();
  auto fail = [&](const std::string& message) {
    std::remove(part.c_str());
    err << "kiln: " << message << "\n";
    return kExitFailure;
  };
  if (!s.ok()) {
    std::remove(part.c_str());
    return RpcError(s, err);
  }
  if (write_failed) return fail(absl::StrCat("cannot write ", part, ": ", std::strerror(errno)));
  const std::string hex =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), len));
  if (hex != artifact.sha256()) {
    return fail(absl::StrCat("artifact digest mismatch: got sha256 ", hex, ", expected ",
                             artifact.sha256()));
  }
  if (std::rename(part.c_str(), opts.output.c_str()) != 0) {
    return fail(absl::StrCat("cannot rename ", part, " to ", opts.output, ": ",
                             std::strerror(errno)));
  }
  out << "artifact " << artifact.name() << ": " << artifact.file_count() << " files, "
      << artifact.size_bytes() << " bytes, sha256 " << artifact.sha256() << " -> " << opts.output
      << "\n";
  return kExitOk;
}

int WebhookDeliveries(Stub& stub, const WebhookDeliveriesOptions& opts, std::ostream& out,
                      std::ostream& err) {
  kiln::v1::ListWebhookDeliveriesRequest req;
  req.set_project_name(opts.project);
  req.set_page_size(opts.limit);
  kiln::v1::ListWebhookDeliveriesResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListWebhookDeliveries(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  if (opts.json) {
    return PrintJson(resp, out, err);
  }
  const auto cell = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  std::vector<Row> rows = {
      {"TIME", "DELIVERY", "EVENT", "STATUS", "REF", "COMMIT", "MATCHED", "BUILDS", "REASON"}};
  for (const kiln::v1::WebhookDelivery& d : resp.deliveries()) {
    rows.push_back({FormatTimestamp(d.received()), cell(d.delivery_id()),
                    cell(d.event_type().empty() ? d.github_event() : d.event_type()),
                    d.http_status() == 0 ? "-" : absl::StrCat(d.http_status()), cell(d.head_ref()),
                    cell(d.commit().substr(0, 12)), cell(absl::StrJoin(d.matched_projects(), ",")),
                    cell(absl::StrJoin(d.build_ids(), ",")), cell(d.reason())});
  }
  PrintTable(rows, out);
  return kExitOk;
}

}  // namespace kiln::cli
