#include "tools/cli/deploy_commands.h"

#include "tools/cli/cli_util.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "yaml-cpp/yaml.h"

namespace kiln::cli {
namespace {

using kiln::v1::Deployment;
using kiln::v1::DeploymentGroup;
using kiln::v1::DeploymentTarget;
using kiln::v1::LifecycleEvent;
using kiln::v1::MinimumHealthyHosts;
using common::yaml::Describe;
using common::yaml::Entry;
using common::yaml::Ref;

bool IsTerminal(const std::string& status) {
  return status == "Succeeded" || status == "Failed" || status == "Stopped";
}
bool IsHostDone(const std::string& status) {
  return status == "Succeeded" || status == "Failed" || status == "Skipped";
}

std::string ScriptErrorName(int code) {
  static const char* const kNames[] = {"Success",       "ScriptMissing",   "ScriptNotExecutable",
                                       "ScriptTimedOut", "ScriptFailed",    "UnknownError",
                                       "OutputsLeftOpen", "FailedAfterRestart"};
  if (code >= 0 && code < 8) return kNames[code];
  return absl::StrCat("error ", code);
}

// "<ScriptError>: <message>" of a failed event, else its message (may be empty).
std::string EventError(const LifecycleEvent& e) {
  if (e.status() != "Failed") return e.message();
  return e.message().empty() ? ScriptErrorName(e.error_code())
                             : absl::StrCat(ScriptErrorName(e.error_code()), ": ", e.message());
}

// "BeforeInstall failed (ScriptFailed: exit 1)" for a host's first failed event, or "".
std::string FirstFailure(const DeploymentTarget& t) {
  for (const LifecycleEvent& e : t.lifecycle_events()) {
    if (e.status() == "Failed") return absl::StrCat(e.name(), " failed (", EventError(e), ")");
  }
  return "";
}

grpc::Status GetDeployment(DeployStub& stub, const CommandOptions& opts, const std::string& id,
                           Deployment* d) {
  kiln::v1::GetDeploymentRequest req;
  req.set_id(id);
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  return stub.GetDeployment(&ctx, req, d);
}

// Polls until the deployment ends, printing host and deployment progress to `err`.
int WaitForDeployment(DeployStub& stub, const DeployCreateOptions& opts, const std::string& id,
                      std::ostream& err) {
  std::map<std::string, std::string> seen;  // agent id -> last printed status
  while (true) {
    Deployment d;
    if (grpc::Status s = GetDeployment(stub, opts, id, &d); !s.ok()) return RpcError(s, err);
    for (const DeploymentTarget& t : d.targets()) {
      if (t.status() == "Pending" || seen[t.agent_id()] == t.status()) continue;
      seen[t.agent_id()] = t.status();
      std::string line = absl::StrCat("==> host ", t.agent_id(), " ", t.status());
      if (std::string f = FirstFailure(t); t.status() == "Failed" && !f.empty()) {
        absl::StrAppend(&line, ": ", f);
      }
      err << line << "\n";
    }
    if (IsTerminal(d.status())) {
      err << "==> deployment " << d.id() << " " << d.status();
      if (!d.error_message().empty()) err << ": " << d.error_message();
      err << "\n";
      if (!d.rolled_back_by().empty()) err << "==> rolled back by " << d.rolled_back_by() << "\n";
      err.flush();
      return d.status() == "Succeeded" ? kExitOk : kExitFailure;
    }
    err.flush();
    absl::SleepFor(opts.poll_interval);
  }
}

// ---- group YAML ----

std::string CheckName(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 100 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
                  });
  return ok ? "" : absl::StrCat("'", name, "' must be 1..100 characters of [A-Za-z0-9_.-]");
}

class GroupParser : public common::yaml::ErrorReporter {
 public:
  explicit GroupParser(std::string_view file) : ErrorReporter(file) {}

  absl::StatusOr<DeploymentGroup> Run(const YAML::Node& root) {
    static const std::vector<std::string> kKeys = {
        "application",   "name",          "agent_labels", "deployment_config",
        "minimum_healthy_hosts", "auto_rollback", "ignore_application_stop_failures",
        "file_exists_behavior"};
    DeploymentGroup g;
    KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                          Map(Ref{root, root.Mark(), "(top level)"}, "a map with application and name"));
    const Ref* config = nullptr;
    const Ref* minimum = nullptr;
    for (const Entry& e : entries) {
      const Ref& v = e.value;
      if (e.key == "application" || e.key == "name") {
        KILN_ASSIGN_OR_RETURN(std::string name, Str(v, "a name"));
        KILN_RETURN_IF_ERROR(Check(v, CheckName(name)));
        (e.key == "application" ? *g.mutable_application() : *g.mutable_name()) = name;
      } else if (e.key == "agent_labels") {
        KILN_ASSIGN_OR_RETURN(std::vector<Entry> labels, Map(v, "a map of label: value"));
        for (const Entry& l : labels) {
          KILN_ASSIGN_OR_RETURN(std::string value, Str(l.value, "a label value"));
          if (l.key.size() > 128 || value.size() > 128) {
            return Error(l.value, "label keys and values must be at most 128 bytes");
          }
          (*g.mutable_agent_labels())[l.key] = value;
        }
      } else if (e.key == "deployment_config") {
        config = &v;
        std::string name;
        if (v.node.IsMap()) {
          KILN_ASSIGN_OR_RETURN(std::vector<Entry> c, Map(v, "a map"));
          for (const Entry& ce : c) {
            if (ce.key != "name") return Unknown(ce, {"name"});
            KILN_ASSIGN_OR_RETURN(name, Str(ce.value, "a deployment configuration name"));
          }
        } else {
          KILN_ASSIGN_OR_RETURN(name, Str(v, "a deployment configuration name"));
        }
        if (name != "CodeDeployDefault.OneAtATime" && name != "CodeDeployDefault.HalfAtATime" &&
            name != "CodeDeployDefault.AllAtOnce" && name != "Custom") {
          return Error(v, absl::StrCat("unknown deployment configuration '", name,
                                       "'; use CodeDeployDefault.OneAtATime, "
                                       "CodeDeployDefault.HalfAtATime, CodeDeployDefault.AllAtOnce "
                                       "or Custom (with minimum_healthy_hosts)"));
        }
        g.set_deployment_config_name(name);
      } else if (e.key == "minimum_healthy_hosts") {
        minimum = &v;
        KILN_RETURN_IF_ERROR(ParseMinimum(v, g.mutable_minimum_healthy_hosts()));
      } else if (e.key == "auto_rollback") {
        KILN_ASSIGN_OR_RETURN(bool b, Bool(v));
        g.set_auto_rollback_on_failure(b);
      } else if (e.key == "ignore_application_stop_failures") {
        KILN_ASSIGN_OR_RETURN(bool b, Bool(v));
        g.set_ignore_application_stop_failures(b);
      } else if (e.key == "file_exists_behavior") {
        KILN_ASSIGN_OR_RETURN(std::string b, Str(v, "DISALLOW, OVERWRITE or RETAIN"));
        if (b != "DISALLOW" && b != "OVERWRITE" && b != "RETAIN") {
          return Error(v, absl::StrCat("expected DISALLOW, OVERWRITE or RETAIN, got '", b, "'"));
        }
        g.set_file_exists_behavior(b);
      } else {
        return Unknown(e, kKeys);
      }
    }
    if (g.application().empty()) return Error(root.Mark(), "application", "missing");
    if (g.name().empty()) return Error(root.Mark(), "name", "missing");
    if (minimum != nullptr && g.deployment_config_name().empty()) g.set_deployment_config_name("Custom");
    if (g.deployment_config_name() == "Custom" && minimum == nullptr) {
      return Error(*config, "Custom needs minimum_healthy_hosts {type, value}");
    }
    if (minimum != nullptr && g.deployment_config_name() != "Custom") {
      return Error(*minimum, absl::StrCat("only a Custom configuration takes minimum_healthy_hosts; ",
                                          g.deployment_config_name(), " has its own"));
    }
    return g;
  }

 private:
  absl::Status Check(const Ref& r, const std::string& problem) const {
    return problem.empty() ? absl::OkStatus() : Error(r, problem);
  }

  absl::StatusOr<std::vector<Entry>> Map(const Ref& r, std::string_view expected) const {
    if (!r.node.IsMap()) {
      return Error(r, absl::StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
    }
    std::vector<Entry> entries;
    std::map<std::string, int> seen;
    const std::string prefix = r.path == "(top level)" ? "" : r.path;
    for (auto it = r.node.begin(); it != r.node.end(); ++it) {
      YAML::Node k = it->first;
      YAML::Node v = it->second;
      if (!k.IsScalar()) return Error(k.Mark(), r.path, absl::StrCat("expected a key, got ", Describe(k)));
      const std::string key = k.Scalar();
      const std::string path = prefix.empty() ? key : absl::StrCat(prefix, ".", key);
      auto [pos, inserted] = seen.emplace(key, k.Mark().line + 1);
      if (!inserted) {
        return Error(k.Mark(), path,
                     absl::StrCat("duplicate key '", key, "' (first on line ", pos->second, ")"));
      }
      entries.push_back(Entry{key, k.Mark(), Ref{v, v.IsNull() ? k.Mark() : v.Mark(), path}});
    }
    return entries;
  }

  absl::StatusOr<std::string> Str(const Ref& r, std::string_view expected) const {
    if (!r.node.IsScalar()) {
      return Error(r, absl::StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
    }
    return r.node.Scalar();
  }

  absl::StatusOr<int32_t> Int(const Ref& r) const {
    KILN_ASSIGN_OR_RETURN(std::string text, Str(r, "a whole number"));
    int32_t value = 0;
    if (!absl::SimpleAtoi(text, &value)) {
      return Error(r, absl::StrCat("expected a whole number, got '", text, "'"));
    }
    return value;
  }

  absl::StatusOr<bool> Bool(const Ref& r) const {
    KILN_ASSIGN_OR_RETURN(std::string text, Str(r, "true or false"));
    const std::string lower = absl::AsciiStrToLower(text);
    if (lower == "true") return true;
    if (lower == "false") return false;
    return Error(r, absl::StrCat("expected true or false, got '", text, "'"));
  }

  absl::Status Unknown(const Entry& e, const std::vector<std::string>& allowed) const {
    return Error(e.key_mark, e.value.path,
                 absl::StrCat("unknown key '", e.key, "'; allowed keys are ",
                              absl::StrJoin(allowed, ", ")));
  }

  absl::Status ParseMinimum(const Ref& r, MinimumHealthyHosts* m) const {
    KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(r, "a map {type, value}"));
    bool have_type = false, have_value = false;
    const Ref* value_ref = nullptr;
    for (const Entry& e : entries) {
      if (e.key == "type") {
        KILN_ASSIGN_OR_RETURN(std::string t, Str(e.value, "HOST_COUNT or FLEET_PERCENT"));
        MinimumHealthyHosts::Type type;
        if (!MinimumHealthyHosts::Type_Parse(t, &type)) {
          return Error(e.value, absl::StrCat("expected HOST_COUNT or FLEET_PERCENT, got '", t, "'"));
        }
        m->set_type(type);
        have_type = true;
      } else if (e.key == "value") {
        KILN_ASSIGN_OR_RETURN(int32_t v, Int(e.value));
        m->set_value(v);
        have_value = true;
        value_ref = &e.value;
      } else {
        return Unknown(e, {"type", "value"});
      }
    }
    if (!have_type) return Error(r, "type missing (HOST_COUNT or FLEET_PERCENT)");
    if (!have_value) return Error(r, "value missing");
    if (m->type() == MinimumHealthyHosts::HOST_COUNT && m->value() < 0) {
      return Error(*value_ref, "a HOST_COUNT must be at least 0");
    }
    if (m->type() == MinimumHealthyHosts::FLEET_PERCENT && (m->value() < 0 || m->value() > 99)) {
      return Error(*value_ref, "a FLEET_PERCENT must be within 0..99");
    }
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<DeploymentGroup> ParseDeploymentGroupYaml(std::string_view yaml_text,
                                                         std::string_view file_name) {
  GroupParser parser(file_name);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(parser.Where(e.mark), ": YAML syntax error: ", e.msg));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return absl::InvalidArgumentError(absl::StrCat(
        parser.Where(YAML::Mark()), ": the file is empty; it needs at least application and name"));
  }
  if (docs.size() > 1) {
    return parser.Error(docs[1].Mark(), "(document 2)",
                        "a deployment group file is one YAML document; remove the second '---'");
  }
  try {
    return parser.Run(docs[0]);
  } catch (const YAML::Exception& e) {  // not expected: node types are checked before access
    return absl::InvalidArgumentError(absl::StrCat(parser.Where(e.mark), ": ", e.msg));
  }
}

std::string FormatRevision(const kiln::v1::Revision& r) {
  if (r.has_build_artifact()) {
    const auto& a = r.build_artifact();
    return absl::StrCat("artifact ", a.artifact().empty() ? "" : absl::StrCat(a.artifact(), " "),
                        "of build ", a.build_id(),
                        a.sha256().empty() ? "" : absl::StrCat(" (sha256 ", a.sha256().substr(0, 12), ")"));
  }
  if (r.has_git()) return absl::StrCat("git ", r.git().project(), "@", r.git().commit());
  return "-";
}

int DeployAppCreate(DeployStub& stub, const DeployAppCreateOptions& opts, std::ostream& out,
                    std::ostream& err) {
  kiln::v1::CreateApplicationRequest req;
  req.set_name(opts.name);
  kiln::v1::Application resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.CreateApplication(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "application " << resp.name() << " created\n";
  return kExitOk;
}

int DeployGroupApply(DeployStub& stub, const DeployGroupApplyOptions& opts, std::ostream& out,
                     std::ostream& err) {
  std::ifstream file(opts.file, std::ios::binary);
  if (!file) {
    err << "kiln: cannot read " << opts.file << ": " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  absl::StatusOr<DeploymentGroup> group = ParseDeploymentGroupYaml(text, opts.file);
  if (!group.ok()) {
    err << "kiln: " << group.status().message() << "\n";
    return kExitFailure;
  }
  kiln::v1::PutDeploymentGroupRequest req;
  *req.mutable_group() = *std::move(group);
  DeploymentGroup resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.PutDeploymentGroup(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "deployment group " << resp.application() << "/" << resp.name() << " applied (" << resp.id()
      << ")\n";
  return kExitOk;
}

int DeployGroupList(DeployStub& stub, const DeployGroupListOptions& opts, std::ostream& out,
                    std::ostream& err) {
  kiln::v1::ListDeploymentGroupsRequest req;
  req.set_application(opts.application);
  kiln::v1::ListDeploymentGroupsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListDeploymentGroups(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  std::vector<Row> rows = {{"APPLICATION", "NAME", "ID", "CONFIG", "LABELS", "ROLLBACK", "LAST SUCCESSFUL"}};
  for (const DeploymentGroup& g : resp.groups()) {
    std::string config = g.deployment_config_name();
    if (config == "Custom") {
      absl::StrAppend(&config, " (", MinimumHealthyHosts::Type_Name(g.minimum_healthy_hosts().type()),
                      " ", g.minimum_healthy_hosts().value(), ")");
    }
    rows.push_back({g.application(), g.name(), g.id(), config, FormatLabels(g.agent_labels()),
                    g.auto_rollback_on_failure() ? "yes" : "no",
                    g.last_successful_deployment_id().empty() ? "-" : g.last_successful_deployment_id()});
  }
  PrintTable(rows, out);
  return kExitOk;
}

int DeployCreate(DeployStub& stub, const DeployCreateOptions& opts, std::ostream& out,
                 std::ostream& err) {
  const bool build = !opts.build_id.empty();
  const bool git = !opts.project.empty() || !opts.commit.empty();
  if (build == git || (git && (opts.project.empty() || opts.commit.empty())) ||
      (!opts.artifact.empty() && !build)) {
    err << "kiln: give either --build ID [--artifact NAME] or --project P --commit C\n";
    return kExitUsage;
  }
  kiln::v1::CreateDeploymentRequest req;
  req.set_application(opts.application);
  req.set_deployment_group(opts.group);
  req.set_deployment_config_name(opts.config);
  req.set_creator("user");
  if (build) {
    req.mutable_revision()->mutable_build_artifact()->set_build_id(opts.build_id);
    req.mutable_revision()->mutable_build_artifact()->set_artifact(opts.artifact);
  } else {
    req.mutable_revision()->mutable_git()->set_project(opts.project);
    req.mutable_revision()->mutable_git()->set_commit(opts.commit);
  }
  Deployment resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.CreateDeployment(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << resp.id() << "\n";
  out.flush();
  if (!opts.wait) return kExitOk;
  return WaitForDeployment(stub, opts, resp.id(), err);
}

int DeployGet(DeployStub& stub, const DeployGetOptions& opts, std::ostream& out, std::ostream& err) {
  Deployment d;
  if (grpc::Status s = GetDeployment(stub, opts, opts.id, &d); !s.ok()) return RpcError(s, err);
  if (opts.json) return PrintJson(d, out, err);
  std::string config = d.deployment_config_name();
  if (config == "Custom") {
    absl::StrAppend(&config, " (", MinimumHealthyHosts::Type_Name(d.minimum_healthy_hosts().type()),
                    " ", d.minimum_healthy_hosts().value(), ")");
  }
  std::string completed = FormatTimestamp(d.complete_time());
  if (IsSet(d.create_time()) && IsSet(d.complete_time())) {
    absl::StrAppend(&completed, " (",
                    FormatDuration(absl::ToInt64Milliseconds(ToTime(d.complete_time()) -
                                                             ToTime(d.create_time()))),
                    ")");
  }
  std::vector<Row> summary = {
      {"Deployment:", d.id()},
      {"Application:", d.application()},
      {"Group:", absl::StrCat(d.deployment_group(), " (", d.deployment_group_id(), ")")},
      {"Status:", d.status()},
      {"Creator:", d.creator()},
      {"Config:", config},
      {"Revision:", FormatRevision(d.revision())},
      {"Created:", FormatTimestamp(d.create_time())},
      {"Completed:", completed},
  };
  if (!d.error_message().empty()) summary.push_back({"Error:", d.error_message()});
  if (!d.rollback_of().empty()) summary.push_back({"Rollback of:", d.rollback_of()});
  if (!d.rolled_back_by().empty()) summary.push_back({"Rolled back by:", d.rolled_back_by()});
  PrintTable(summary, out);
  out << "Hosts:\n";
  for (const DeploymentTarget& t : d.targets()) {
    out << "  " << t.agent_id();
    if (!t.hostname().empty() && t.hostname() != t.agent_id()) out << " (" << t.hostname() << ")";
    out << "  " << t.status() << "\n";
    if (t.lifecycle_events().empty()) continue;
    std::vector<Row> rows = {{"EVENT", "STATUS", "DURATION", "ERROR"}};
    for (const LifecycleEvent& e : t.lifecycle_events()) {
      rows.push_back({e.name(), e.status(),
                      e.status() == "Skipped" || e.status() == "Pending" ? "-"
                                                                       : FormatDuration(e.duration_millis()),
                      EventError(e)});
    }
    PrintTable(rows, out, "    ");
  }
  return kExitOk;
}

int DeployList(DeployStub& stub, const DeployListOptions& opts, std::ostream& out,
               std::ostream& err) {
  kiln::v1::ListDeploymentsRequest req;
  req.set_application(opts.application);
  req.set_deployment_group(opts.group);
  kiln::v1::ListDeploymentsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.ListDeployments(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  std::vector<Row> rows = {{"ID", "APPLICATION", "GROUP", "STATUS", "CREATOR", "REVISION", "HOSTS", "CREATED"}};
  for (const Deployment& d : resp.deployments()) {
    int succeeded = 0;
    for (const auto& t : d.targets()) succeeded += t.status() == "Succeeded";
    rows.push_back({d.id(), d.application(), d.deployment_group(), d.status(), d.creator(),
                    FormatRevision(d.revision()), absl::StrCat(succeeded, "/", d.targets_size()),
                    FormatTimestamp(d.create_time())});
  }
  PrintTable(rows, out);
  return kExitOk;
}

int DeployLogs(DeployStub& stub, const DeployLogsOptions& opts, std::ostream& out,
               std::ostream& err) {
  grpc::ClientContext ctx;
  if (!opts.follow) SetDeadline(ctx, opts);
  kiln::v1::StreamDeploymentLogsRequest req;
  req.set_deployment_id(opts.id);
  req.set_host(opts.host);
  req.set_follow(opts.follow);
  auto reader = stub.StreamDeploymentLogs(&ctx, req);
  Deployment last;
  kiln::v1::StreamDeploymentLogsResponse resp;
  while (reader->Read(&resp)) {
    if (resp.kind_case() == kiln::v1::StreamDeploymentLogsResponse::kData) {
      out.write(resp.data().data(), static_cast<std::streamsize>(resp.data().size()));
      out.flush();
    } else if (resp.kind_case() == kiln::v1::StreamDeploymentLogsResponse::kDeployment) {
      last = std::move(*resp.mutable_deployment());
    }
  }
  if (grpc::Status s = reader->Finish(); !s.ok()) return RpcError(s, err);
  if (!opts.follow) return kExitOk;
  for (const DeploymentTarget& t : last.targets()) {
    if (t.agent_id() != opts.host && t.hostname() != opts.host) continue;
    if (!IsHostDone(t.status())) break;
    err << "==> host " << t.agent_id() << " " << t.status();
    if (std::string f = FirstFailure(t); !f.empty()) err << ": " << f;
    err << "\n";
    return t.status() == "Succeeded" ? kExitOk : kExitFailure;
  }
  err << "kiln: log stream ended before host " << opts.host << " was done\n";
  return kExitFailure;
}

int DeployStop(DeployStub& stub, const DeployStopOptions& opts, std::ostream& out,
               std::ostream& err) {
  kiln::v1::StopDeploymentRequest req;
  req.set_id(opts.id);
  Deployment resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, opts);
  if (grpc::Status s = stub.StopDeployment(&ctx, req, &resp); !s.ok()) return RpcError(s, err);
  out << "deployment " << resp.id() << " " << resp.status() << "\n";
  return kExitOk;
}

// ---- command line ----

struct DeployCommandLine::Parsed {
  DeployAppCreateOptions app_create;
  DeployGroupApplyOptions group_apply;
  DeployGroupListOptions group_list;
  DeployCreateOptions create;
  DeployGetOptions get;
  DeployListOptions list;
  DeployLogsOptions logs;
  DeployStopOptions stop;
};

DeployCommandLine::~DeployCommandLine() = default;

DeployCommandLine::DeployCommandLine(CLI::App& app, std::function<int(DeployStub&)>* run,
                                     std::ostream& out, std::ostream& err)
    : parsed_(std::make_unique<Parsed>()) {
  Parsed* p = parsed_.get();
  std::ostream* o = &out;
  std::ostream* e = &err;
  CLI::App* deploy =
      app.add_subcommand("deploy", "CodeDeploy-style deployments to agents")->require_subcommand(1);

  CLI::App* application = deploy->add_subcommand("app", "Manage applications")->require_subcommand(1);
  CLI::App* app_create = application->add_subcommand("create", "Create an application");
  app_create->add_option("NAME", p->app_create.name, "Application name")->required();
  app_create->callback([=] { *run = [=](DeployStub& s) { return DeployAppCreate(s, p->app_create, *o, *e); }; });

  CLI::App* group = deploy->add_subcommand("group", "Manage deployment groups")->require_subcommand(1);
  CLI::App* apply = group->add_subcommand("apply", "Create or replace a deployment group from YAML");
  apply->add_option("-f,--file", p->group_apply.file, "group.yaml")->required();
  apply->callback([=] { *run = [=](DeployStub& s) { return DeployGroupApply(s, p->group_apply, *o, *e); }; });
  CLI::App* group_list = group->add_subcommand("list", "List deployment groups");
  group_list->add_option("--application", p->group_list.application, "Only this application's groups");
  group_list->callback([=] { *run = [=](DeployStub& s) { return DeployGroupList(s, p->group_list, *o, *e); }; });

  CLI::App* create = deploy->add_subcommand("create", "Start a deployment; prints its id");
  create->add_option("--application", p->create.application, "Application")->required();
  create->add_option("--group", p->create.group, "Deployment group")->required();
  CLI::Option* build = create->add_option("--build", p->create.build_id, "Deploy this build's artifact");
  create->add_option("--artifact", p->create.artifact, "Secondary artifact identifier or name")
      ->needs(build);
  CLI::Option* project = create->add_option("--project", p->create.project, "Deploy this project's git source");
  CLI::Option* commit = create->add_option("--commit", p->create.commit, "Commit, branch or tag")->needs(project);
  project->needs(commit)->excludes(build);
  create->add_option("--config", p->create.config, "Deployment configuration (default: the group's)");
  create->add_flag("--wait", p->create.wait, "Follow until done; exit 0 only if it succeeded");
  create->callback([=] { *run = [=](DeployStub& s) { return DeployCreate(s, p->create, *o, *e); }; });

  CLI::App* get = deploy->add_subcommand("get", "Show one deployment, per host and event");
  get->add_option("ID", p->get.id, "Deployment id")->required();
  get->add_flag("--json", p->get.json, "Print the deployment as JSON");
  get->callback([=] { *run = [=](DeployStub& s) { return DeployGet(s, p->get, *o, *e); }; });

  CLI::App* list = deploy->add_subcommand("list", "List deployments, newest first");
  list->add_option("--application", p->list.application, "Only this application");
  list->add_option("--group", p->list.group, "Only this deployment group");
  list->callback([=] { *run = [=](DeployStub& s) { return DeployList(s, p->list, *o, *e); }; });

  CLI::App* logs = deploy->add_subcommand("logs", "Print one host's deployment log");
  logs->add_option("ID", p->logs.id, "Deployment id")->required();
  logs->add_option("--host", p->logs.host, "Agent id or hostname")->required();
  logs->add_flag("--follow", p->logs.follow, "Follow until the host is done; exit 0 only if it succeeded");
  logs->callback([=] { *run = [=](DeployStub& s) { return DeployLogs(s, p->logs, *o, *e); }; });

  CLI::App* stop = deploy->add_subcommand("stop", "Stop a deployment");
  stop->add_option("ID", p->stop.id, "Deployment id")->required();
  stop->callback([=] { *run = [=](DeployStub& s) { return DeployStop(s, p->stop, *o, *e); }; });
}

}  // namespace kiln::cli
