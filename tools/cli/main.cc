// `kiln`: the command-line client of a Kiln coordinator. Parses the command line (CLI11), dials the
// coordinator and runs one command of tools/cli/commands.h. Exit codes: 0 ok, 1 failure, 2 usage.
//
//   kiln [--coordinator HOST:PORT] project apply -f project.yaml
//   kiln build start flask-app --follow
//   printf %s "$TOKEN" | kiln param put /ci/token - --secure
#include <functional>
#include <iostream>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tools/cli/commands.h"
#include "tools/cli/deploy_commands.h"
#include "tools/cli/pipeline_commands.h"

using kiln::cli::Stub;

int main(int argc, char** argv) {
  CLI::App app{"kiln: command-line client of a Kiln build coordinator", "kiln"};
  app.require_subcommand(1);
  std::string coordinator = "127.0.0.1:7070";
  app.add_option("--coordinator", coordinator, "Coordinator address HOST:PORT")
      ->envname("KILN_COORDINATOR")
      ->capture_default_str();

  // The chosen command; run after parsing, once the channel exists.
  std::function<int(Stub&)> run;
  std::ostream& out = std::cout;
  std::ostream& err = std::cerr;

  CLI::App* project = app.add_subcommand("project", "Manage projects")->require_subcommand(1);
  kiln::cli::ProjectApplyOptions apply;
  CLI::App* apply_cmd = project->add_subcommand("apply", "Create or replace a project from YAML");
  apply_cmd->add_option("-f,--file", apply.file, "project.yaml")->required();
  apply_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::ProjectApply(s, apply, out, err); }; });
  kiln::cli::CommandOptions common;
  project->add_subcommand("list", "List projects")->callback([&] {
    run = [&](Stub& s) { return kiln::cli::ProjectList(s, common, out, err); };
  });

  CLI::App* build = app.add_subcommand("build", "Start and inspect builds")->require_subcommand(1);
  kiln::cli::BuildStartOptions start;
  CLI::App* start_cmd = build->add_subcommand("start", "Start a build; prints its id");
  start_cmd->add_option("PROJECT", start.project, "Project name")->required();
  start_cmd->add_option("--source-version", start.source_version, "Commit, branch or tag");
  start_cmd->add_option("--env", start.env, "Variable override NAME=VALUE (repeatable)");
  start_cmd->add_option("--timeout-minutes", start.timeout_minutes, "Build timeout override")
      ->check(CLI::Range(5, 2160));  // CodeBuild timeoutInMinutesOverride
  start_cmd->add_flag("--follow", start.follow, "Stream logs; exit 0 only if the build succeeds");
  start_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::BuildStart(s, start, out, err); }; });

  kiln::cli::BuildGetOptions get;
  CLI::App* get_cmd = build->add_subcommand("get", "Show one build");
  get_cmd->add_option("ID", get.build_id, "Build id")->required();
  get_cmd->add_flag("--json", get.json, "Print the build as JSON");
  get_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::BuildGet(s, get, out, err); }; });

  kiln::cli::BuildListOptions list;
  CLI::App* list_cmd = build->add_subcommand("list", "List builds, newest first");
  list_cmd->add_option("PROJECT", list.project, "Only this project's builds");
  list_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::BuildList(s, list, out, err); }; });

  kiln::cli::BuildLogsOptions logs;
  CLI::App* logs_cmd = build->add_subcommand("logs", "Print a build's log");
  logs_cmd->add_option("ID", logs.build_id, "Build id")->required();
  logs_cmd->add_flag("--follow", logs.follow, "Follow until the build completes; exit 0 only if it succeeded");
  logs_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::BuildLogs(s, logs, out, err); }; });

  kiln::cli::BuildStopOptions stop;
  CLI::App* stop_cmd = build->add_subcommand("stop", "Stop a build");
  stop_cmd->add_option("ID", stop.build_id, "Build id")->required();
  stop_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::BuildStop(s, stop, out, err); }; });

  CLI::App* param = app.add_subcommand("param", "Manage parameters")->require_subcommand(1);
  kiln::cli::ParamPutOptions put;
  CLI::App* put_cmd = param->add_subcommand(
      "put", "Create or update a parameter. VALUE '-' reads it from stdin (keeps secrets out of argv; "
             "one trailing newline is dropped)");
  put_cmd->add_option("NAME", put.name, "Parameter name")->required();
  put_cmd->add_option("VALUE", put.value, "Value, or - to read stdin")->required();
  put_cmd->add_flag("--secure", put.secure, "Store as SECURE_STRING (encrypted, never listed)");
  put_cmd->add_flag("--overwrite", put.overwrite, "Replace an existing parameter");
  put_cmd->callback([&] { run = [&](Stub& s) { return kiln::cli::ParamPut(s, put, out, err); }; });
  param->add_subcommand("list", "List parameters (secure values hidden)")->callback([&] {
    run = [&](Stub& s) { return kiln::cli::ParamList(s, common, out, err); };
  });

  CLI::App* agent = app.add_subcommand("agent", "Inspect agents")->require_subcommand(1);
  agent->add_subcommand("list", "List agents")->callback([&] {
    run = [&](Stub& s) { return kiln::cli::AgentList(s, common, out, err); };
  });

  CLI::App* artifact = app.add_subcommand("artifact", "Fetch build artifacts")->require_subcommand(1);
  kiln::cli::ArtifactGetOptions artifact_get;
  CLI::App* artifact_get_cmd = artifact->add_subcommand("get", "Download a build's artifact zip");
  artifact_get_cmd->add_option("build", artifact_get.build_id, "Build id")->required();
  artifact_get_cmd->add_option("--name", artifact_get.name,
                               "Secondary artifact identifier or artifact name (default: primary)");
  artifact_get_cmd->add_option("-o,--output", artifact_get.output, "Where to write the zip")
      ->required();
  artifact_get_cmd->callback([&] {
    run = [&](Stub& s) { return kiln::cli::ArtifactGet(s, artifact_get, out, err); };
  });

  CLI::App* webhook = app.add_subcommand("webhook", "Inspect webhook deliveries")->require_subcommand(1);
  kiln::cli::WebhookDeliveriesOptions deliveries;
  CLI::App* deliveries_cmd = webhook->add_subcommand(
      "deliveries", "Recorded webhook deliveries and source polls, newest first");
  deliveries_cmd->add_option("--project", deliveries.project, "Only deliveries evaluated for PROJECT");
  deliveries_cmd->add_option("--limit", deliveries.limit, "At most N deliveries")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  deliveries_cmd->add_flag("--json", deliveries.json, "Print the deliveries as JSON");
  deliveries_cmd->callback([&] {
    run = [&](Stub& s) { return kiln::cli::WebhookDeliveries(s, deliveries, out, err); };
  });

  // kiln deploy ... (DeployService).
  std::function<int(kiln::cli::DeployStub&)> deploy_run;
  kiln::cli::DeployCommandLine deploy_cli(app, &deploy_run, out, err);

  // kiln pipeline ... (PipelineService).
  std::function<int(kiln::cli::PipelineStub&)> run_pipeline;
  CLI::App* pl = app.add_subcommand("pipeline", "Manage pipelines")->require_subcommand(1);
  kiln::cli::PipelineApplyOptions pa;
  CLI::App* c = pl->add_subcommand("apply", "Create or replace a pipeline from YAML");
  c->add_option("-f,--file", pa.file, "pipeline.yaml")->required();
  c->callback([&] {
    run_pipeline = [&](auto& s) { return kiln::cli::PipelineApply(s, pa, out, err); };
  });
  kiln::cli::PipelineGetOptions pg;
  c = pl->add_subcommand("get", "Show a pipeline and its executions");
  c->add_option("NAME", pg.name)->required();
  c->add_flag("--json", pg.json, "Print the pipeline and executions as JSON");
  c->add_option("--limit", pg.limit, "At most N executions")->check(CLI::Range(1, 1000));
  c->callback([&] {
    run_pipeline = [&](auto& s) { return kiln::cli::PipelineGet(s, pg, out, err); };
  });
  kiln::cli::PipelineStartOptions ps;
  c = pl->add_subcommand("start", "Start an execution; prints its id");
  c->add_option("NAME", ps.name)->required();
  c->add_option("--commit", ps.commit, "Source commit (default: the branch head)");
  c->callback([&] {
    run_pipeline = [&](auto& s) { return kiln::cli::PipelineStart(s, ps, out, err); };
  });
  kiln::cli::PipelineApprovalOptions pv;
  for (const char* verb : {"approve", "reject"}) {
    c = pl->add_subcommand(verb, std::string(verb) == "approve" ? "Approve a manual approval"
                                                                : "Reject a manual approval");
    c->add_option("NAME", pv.name)->required();
    c->add_option("--execution", pv.execution, "Execution id")->required();
    c->add_option("--stage", pv.stage, "Stage name")->required();
    c->add_option("--action", pv.action, "Action name")->required();
    c->add_option("--summary", pv.summary, "Comment recorded with the answer");
    const bool approve = std::string(verb) == "approve";
    c->callback([&, approve] {
      pv.approve = approve;
      run_pipeline = [&](auto& s) { return kiln::cli::PipelineApproval(s, pv, out, err); };
    });
  }
  kiln::cli::PipelineRetryOptions pr;
  c = pl->add_subcommand("retry", "Re-run the failed actions of a failed stage");
  c->add_option("NAME", pr.name)->required();
  c->add_option("--execution", pr.execution, "Execution id")->required();
  c->add_option("--stage", pr.stage, "Stage name")->required();
  c->callback([&] {
    run_pipeline = [&](auto& s) { return kiln::cli::PipelineRetry(s, pr, out, err); };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help or the error
    return code == 0 ? kiln::cli::kExitOk : kiln::cli::kExitUsage;
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(coordinator, grpc::InsecureChannelCredentials());
  if (deploy_run) return deploy_run(*kiln::v1::DeployService::NewStub(channel));
  if (run_pipeline) return run_pipeline(*kiln::v1::PipelineService::NewStub(channel));
  std::unique_ptr<kiln::v1::KilnService::Stub> stub = kiln::v1::KilnService::NewStub(channel);
  return run(*stub);
}
