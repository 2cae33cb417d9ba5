// The `kiln` command-line client's commands: each is a thin call of kiln.v1.KilnService that prints
// its result. main.cc only parses the command line (CLI11) and makes the channel; everything that can
// be tested lives here.
//
// Conventions shared by every command:
//   - Results go to `out`; errors and progress go to `err`.
//   - Returns the process exit code: 0 success, 1 failure (an RPC error prints
//     "kiln: <GRPC_CODE_NAME>: <message>", e.g. "kiln: NOT_FOUND: build x not found"), 2 usage error.
//   - Every unary call, and a log stream without --follow, has a deadline (`CommandOptions::deadline`,
//     default 10 s). A followed log stream has none: it lasts as long as the build.
//   - Secret values (parameters) are never printed.
// Thread-safety: the functions share no state; one stub may be used from several threads at once.
#ifndef KILN_TOOLS_CLI_COMMANDS_H_
#define KILN_TOOLS_CLI_COMMANDS_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "kiln/v1/build.pb.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cli {

using Stub = kiln::v1::KilnService::StubInterface;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct CommandOptions {
  // Deadline of each unary call.
  absl::Duration deadline = absl::Seconds(10);
};

// `kiln project apply -f FILE`: parses FILE with common::ParseProjectYaml and sends PutProject.
// Prints "project <name> applied". A read or parse error prints "kiln: <message>" (the parser's
// message starts with "<file>:<line>:<col>:") and returns 1 without calling the server.
struct ProjectApplyOptions : CommandOptions {
  std::string file;
};
int ProjectApply(Stub& stub, const ProjectApplyOptions& opts, std::ostream& out, std::ostream& err);

// `kiln project list`: table NAME, SOURCE, BRANCH, LIMIT ("-" = none; " reject" appended for
// on_limit REJECT), LABELS (k=v, sorted, comma-separated).
int ProjectList(Stub& stub, const CommandOptions& opts, std::ostream& out, std::ostream& err);

// Behaviour of `kiln build logs ID [--follow]`, shared with `build start --follow`.
struct BuildLogsOptions : CommandOptions {
  std::string build_id;
  bool follow = false;
};
// Writes the log bytes raw to `out` as they arrive. With follow, also prints phase progress lines to
// `err` (see FormatProgressEvent) and returns 0 iff the build ended SUCCEEDED, else 1. Without
// follow returns 0 once the stored log was written.
int BuildLogs(Stub& stub, const BuildLogsOptions& opts, std::ostream& out, std::ostream& err);

// `kiln build start PROJECT [--source-version REF] [--env NAME=VALUE ...] [--timeout-minutes N]
// [--follow]`: prints the new build's id alone on a line of `out`. With follow, then behaves as
// BuildLogs with follow (its exit code). A malformed --env (no '=' or empty name) returns 2.
struct BuildStartOptions : CommandOptions {
  std::string project;
  std::string source_version;
  std::vector<std::string> env;  // "NAME=VALUE", PLAINTEXT overrides
  int32_t timeout_minutes = 0;   // 0 = the project's timeout
  bool follow = false;
};
int BuildStart(Stub& stub, const BuildStartOptions& opts, std::ostream& out, std::ostream& err);

// `kiln build get ID [--json]`: a human summary, or the Build message in protobuf's JSON mapping
// (camelCase names such as "buildStatus", enums as names, 2-space indented).
struct BuildGetOptions : CommandOptions {
  std::string build_id;
  bool json = false;
};
int BuildGet(Stub& stub, const BuildGetOptions& opts, std::ostream& out, std::ostream& err);

// `kiln build list [PROJECT]`: table ID, NUMBER, STATUS, PHASE, SOURCE (resolved commit, 7 chars),
// STARTED (UTC), DURATION ("-" while running). Newest first, as the server returns them.
struct BuildListOptions : CommandOptions {
  std::string project;  // empty = all projects
};
int BuildList(Stub& stub, const BuildListOptions& opts, std::ostream& out, std::ostream& err);

// `kiln build stop ID`: prints "build <id> <STATUS>", plus " (stop requested)" while it still runs.
struct BuildStopOptions : CommandOptions {
  std::string build_id;
};
int BuildStop(Stub& stub, const BuildStopOptions& opts, std::ostream& out, std::ostream& err);

// `kiln param put NAME VALUE [--secure] [--overwrite]`: prints "parameter NAME version N", never the
// value. VALUE "-" reads the value from `in` (stdin) so secrets stay out of argv and shell history;
// one trailing newline ("\n" or "\r\n") is dropped.
struct ParamPutOptions : CommandOptions {
  std::string name;
  std::string value;
  bool secure = false;
  bool overwrite = false;
  std::istream* in = nullptr;  // used when value == "-"; nullptr = std::cin
};
int ParamPut(Stub& stub, const ParamPutOptions& opts, std::ostream& out, std::ostream& err);

// `kiln param list`: table NAME, TYPE, VERSION, VALUE (always empty for SECURE_STRING).
int ParamList(Stub& stub, const CommandOptions& opts, std::ostream& out, std::ostream& err);

// `kiln agent list`: table ID, HOSTNAME, CONNECTED (yes/no), SLOTS, RUNNING, LABELS, LAST SEEN (UTC).
int AgentList(Stub& stub, const CommandOptions& opts, std::ostream& out, std::ostream& err);

// `kiln artifact get BUILD [--name N] -o FILE`: streams the build's artifact zip (GetArtifact) into
// FILE (written to FILE.part, checked against the artifact's SHA-256, then renamed) and prints
// "artifact <name>: <n> files, <bytes> bytes, sha256 <hex> -> FILE". --name is an identifier of a
// secondary artifact or an artifact name; empty = the primary artifact. The stream has no deadline.
// A digest mismatch or write error removes the partial file and returns 1.
struct ArtifactGetOptions : CommandOptions {
  std::string build_id;
  std::string name;
  std::string output;
};
int ArtifactGet(Stub& stub, const ArtifactGetOptions& opts, std::ostream& out, std::ostream& err);

// `kiln webhook deliveries [--project P] [--limit N] [--json]`: recorded webhook deliveries and
// source polls, newest first (ListWebhookDeliveries; --limit is its page_size, 1..1000). Table TIME
// (UTC), DELIVERY, EVENT (the event type, else X-GitHub-Event), STATUS (HTTP status; "-" for polls),
// REF, COMMIT (12 chars), MATCHED (projects), BUILDS, REASON; "-" for empty cells. --json prints the
// response in protobuf's JSON mapping.
struct WebhookDeliveriesOptions : CommandOptions {
  std::string project;  // empty = all
  int32_t limit = 50;
  bool json = false;
};
int WebhookDeliveries(Stub& stub, const WebhookDeliveriesOptions& opts, std::ostream& out,
                      std::ostream& err);

// --- pure helpers, exposed for tests ---

// One step of a build's progress, derived from two Build snapshots.
struct ProgressEvent {
  enum class Kind { kPhaseStarted, kPhaseEnded, kBuildCompleted };
  Kind kind = Kind::kPhaseStarted;
  kiln::v1::BuildPhaseType::Value phase = kiln::v1::BuildPhaseType::UNKNOWN;  // phase events
  kiln::v1::BuildStatus::Value status = kiln::v1::BuildStatus::UNKNOWN;       // ended/completed
  int64_t duration_millis = 0;                                                // ended/completed
  std::string detail;  // ended: "CODE: message; ..." of the phase contexts; completed: the build id
};

// The events that lead from `before` to `after` (pass a default Build for the first snapshot), in
// phase order: a phase that appeared is "started", a phase whose status became final (not UNKNOWN
// and not IN_PROGRESS) is "ended", and build_complete turning true is "completed". The COMPLETED
// pseudo-phase yields no phase events.
std::vector<ProgressEvent> DiffBuilds(const kiln::v1::Build& before, const kiln::v1::Build& after);

// "==> PRE_BUILD started", "==> PRE_BUILD SUCCEEDED in 1.2s",
// "==> BUILD FAILED in 3.0s: COMMAND_EXECUTION_ERROR: ...", "==> build p:1 SUCCEEDED in 12.3s".
// Context detail is shown only for phases that did not succeed. No trailing newline.
std::string FormatProgressEvent(const ProgressEvent& event);

// "1.2s" below a minute (tenths, rounded down), "2m03s" below an hour, else "1h02m".
std::string FormatDuration(int64_t millis);

}  // namespace kiln::cli

#endif  // KILN_TOOLS_CLI_COMMANDS_H_
