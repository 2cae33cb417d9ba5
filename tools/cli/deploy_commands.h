// The `kiln deploy ...` commands: thin calls of kiln.v1.DeployService that print their result, with
// the conventions of tools/cli/commands.h (results to `out`, errors and progress to `err`; exit 0
// success, 1 failure with "kiln: <GRPC_CODE_NAME>: <message>", 2 usage; a deadline on every unary
// call and on a log stream without --follow).
//
// DeployCommandLine registers the whole `deploy` subcommand tree on a CLI11 app, so that main.cc
// needs three lines (see its comment).
// Thread-safety: the functions share no state.
#ifndef KILN_TOOLS_CLI_DEPLOY_COMMANDS_H_
#define KILN_TOOLS_CLI_DEPLOY_COMMANDS_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiln/v1/deploy.grpc.pb.h"
#include "tools/cli/commands.h"

namespace CLI {
class App;
}

namespace kiln::cli {

using DeployStub = kiln::v1::DeployService::StubInterface;

// `kiln deploy app create NAME`: prints "application NAME created".
struct DeployAppCreateOptions : CommandOptions {
  std::string name;
};
int DeployAppCreate(DeployStub& stub, const DeployAppCreateOptions& opts, std::ostream& out,
                    std::ostream& err);

// `kiln deploy group apply -f FILE`: parses FILE (ParseDeploymentGroupYaml) and sends
// PutDeploymentGroup; prints "deployment group APP/NAME applied (dg-...)". A read or parse error
// prints "kiln: <file>:<line>:<col>: ..." and returns 1 without calling the server.
struct DeployGroupApplyOptions : CommandOptions {
  std::string file;
};
int DeployGroupApply(DeployStub& stub, const DeployGroupApplyOptions& opts, std::ostream& out,
                     std::ostream& err);

// `kiln deploy group list [--application A]`: table APPLICATION, NAME, ID, CONFIG, LABELS,
// ROLLBACK (yes/no), LAST SUCCESSFUL ("-" = none).
struct DeployGroupListOptions : CommandOptions {
  std::string application;
};
int DeployGroupList(DeployStub& stub, const DeployGroupListOptions& opts, std::ostream& out,
                    std::ostream& err);

// `kiln deploy create --application A --group G (--build ID [--artifact NAME] | --project P
// --commit C) [--config NAME] [--wait]`: prints the new deployment's id alone on a line of `out`.
// Exactly one of --build and --project (with --commit) is required, else 2. With --wait, polls
// GetDeployment every `poll_interval` until the deployment ends, printing one progress line per
// host status change to `err` ("==> host a1 InProgress", "==> host a1 Failed: BeforeInstall
// failed: ...", "==> deployment d-X Succeeded"), and returns 0 iff it Succeeded.
struct DeployCreateOptions : CommandOptions {
  std::string application;
  std::string group;
  std::string build_id;
  std::string artifact;
  std::string project;
  std::string commit;
  std::string config;
  bool wait = false;
  absl::Duration poll_interval = absl::Seconds(1);
};
int DeployCreate(DeployStub& stub, const DeployCreateOptions& opts, std::ostream& out,
                 std::ostream& err);

// `kiln deploy get ID [--json]`: a summary (id, application/group, status, creator, config,
// revision, created/completed, error, rollback links), then per host its status and a table of its
// lifecycle events: EVENT, STATUS, DURATION, ERROR ("<ScriptError>: <message>" for failed events).
// --json prints the Deployment in protobuf's JSON mapping.
struct DeployGetOptions : CommandOptions {
  std::string id;
  bool json = false;
};
int DeployGet(DeployStub& stub, const DeployGetOptions& opts, std::ostream& out, std::ostream& err);

// `kiln deploy list [--application A] [--group G]`: table ID, APPLICATION, GROUP, STATUS, CREATOR,
// REVISION, HOSTS ("succeeded/total"), CREATED (UTC). Newest first.
struct DeployListOptions : CommandOptions {
  std::string application;
  std::string group;
};
int DeployList(DeployStub& stub, const DeployListOptions& opts, std::ostream& out,
               std::ostream& err);

// `kiln deploy logs ID --host H [--follow]`: writes the host's log raw to `out`. With follow,
// streams until the host is done and returns 0 iff it Succeeded.
struct DeployLogsOptions : CommandOptions {
  std::string id;
  std::string host;
  bool follow = false;
};
int DeployLogs(DeployStub& stub, const DeployLogsOptions& opts, std::ostream& out,
               std::ostream& err);

// `kiln deploy stop ID`: prints "deployment <id> <Status>".
struct DeployStopOptions : CommandOptions {
  std::string id;
};
int DeployStop(DeployStub& stub, const DeployStopOptions& opts, std::ostream& out,
               std::ostream& err);

// Registers `deploy` and its subcommands on a CLI11 app and owns the options they parse into:
// when one is parsed, `*run` is set to run it with `out`/`err`. Keep this object, `run`, `out` and
// `err` alive until *run has run. In main.cc:
//   std::function<int(kiln::cli::DeployStub&)> deploy_run;
//   kiln::cli::DeployCommandLine deploy_cli(app, &deploy_run, out, err);
//   ... after parsing: if (deploy_run) return deploy_run(*kiln::v1::DeployService::NewStub(channel));
class DeployCommandLine {
 public:
  DeployCommandLine(CLI::App& app, std::function<int(DeployStub&)>* run, std::ostream& out,
                    std::ostream& err);
  ~DeployCommandLine();
  DeployCommandLine(const DeployCommandLine&) = delete;
  DeployCommandLine& operator=(const DeployCommandLine&) = delete;

 private:
  struct Parsed;
  std::unique_ptr<Parsed> parsed_;
};

// --- pure helpers, exposed for tests ---

// Parses a deployment group file:
//   application: web                        # required
//   name: prod                              # required
//   agent_labels: {role: web}
//   deployment_config: CodeDeployDefault.HalfAtATime   # or {name: ...}; default OneAtATime,
//                                           # "Custom" when minimum_healthy_hosts is given
//   minimum_healthy_hosts: {type: FLEET_PERCENT, value: 40}   # HOST_COUNT n >= 0 | FLEET_PERCENT 0..99
//   auto_rollback: true
//   ignore_application_stop_failures: false
//   file_exists_behavior: DISALLOW          # DISALLOW | OVERWRITE | RETAIN
// Unknown keys and wrong types are rejected. Errors: INVALID_ARGUMENT
// "<file>:<line>:<col>: <key path>: <problem>".
absl::StatusOr<kiln::v1::DeploymentGroup> ParseDeploymentGroupYaml(std::string_view yaml_text,
                                                                   std::string_view file_name);

// "artifact of build app:1 (sha256 0123456789ab)", "artifact docs of build app:1 (...)",
// "git app@main".
std::string FormatRevision(const kiln::v1::Revision& revision);

}  // namespace kiln::cli

#endif  // KILN_TOOLS_CLI_DEPLOY_COMMANDS_H_
