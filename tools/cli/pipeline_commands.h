// The `kiln pipeline ...` commands: thin calls of kiln.v1.PipelineService that print their result.
// Same conventions as commands.h: results to `out`, errors to `err`; exit 0 ok, 1 failure (an RPC
// error prints "kiln: <GRPC_CODE_NAME>: <message>"), 2 usage; every call has
// CommandOptions::deadline. Thread-safety: no shared state.
#ifndef KILN_TOOLS_CLI_PIPELINE_COMMANDS_H_
#define KILN_TOOLS_CLI_PIPELINE_COMMANDS_H_

#include <cstdint>
#include <iosfwd>
#include <string>

#include "kiln/v1/deploy.grpc.pb.h"
#include "kiln/v1/deploy.pb.h"
#include "tools/cli/commands.h"

namespace kiln::cli {

using PipelineStub = kiln::v1::PipelineService::StubInterface;

// `kiln pipeline apply -f FILE`: parses FILE (coordinator/pipelines/pipeline_yaml.h) and sends
// PutPipeline. Prints "pipeline <name> applied (version <n>)". A read or parse error prints
// "kiln: <message>" (the parser's starts with "<file>:<line>:<col>:") and returns 1 without a call.
struct PipelineApplyOptions : CommandOptions {
  std::string file;
};
int PipelineApply(PipelineStub& stub, const PipelineApplyOptions& opts, std::ostream& out,
                  std::ostream& err);

// `kiln pipeline get NAME [--json] [--limit N]`: the pipeline ("pipeline NAME version N mode M" and
// its stages), then each execution newest first: a line "execution ID  STATUS  trigger T  commit C
// (12 chars)  started UTC  DURATION", each stage "  STAGE  STATUS  DURATION" ("-" not reached or
// running) and each of its actions "    ACTION  STATUS  EXTERNAL_ID  SUMMARY" ("-" when empty).
// --json prints the GetPipelineResponse in protobuf's JSON mapping.
struct PipelineGetOptions : CommandOptions {
  std::string name;
  bool json = false;
  int32_t limit = 0;  // 0 = the server's default (20)
};
int PipelineGet(PipelineStub& stub, const PipelineGetOptions& opts, std::ostream& out,
                std::ostream& err);

// `kiln pipeline start NAME [--commit C]`: prints the new execution's id alone on a line of `out`,
// then "status <STATUS>" on `err`.
struct PipelineStartOptions : CommandOptions {
  std::string name;
  std::string commit;  // empty = the source's branch head
};
int PipelineStart(PipelineStub& stub, const PipelineStartOptions& opts, std::ostream& out,
                  std::ostream& err);

// `kiln pipeline approve|reject NAME --execution ID --stage S --action A [--summary T]`: prints
// "<stage>/<action> approved|rejected; execution <id> <STATUS>".
struct PipelineApprovalOptions : CommandOptions {
  std::string name;
  std::string execution;
  std::string stage;
  std::string action;
  std::string summary;
  bool approve = true;
};
int PipelineApproval(PipelineStub& stub, const PipelineApprovalOptions& opts, std::ostream& out,
                     std::ostream& err);

// `kiln pipeline retry NAME --execution ID --stage S`: prints "stage <S> retried; execution <id>
// <STATUS>".
struct PipelineRetryOptions : CommandOptions {
  std::string name;
  std::string execution;
  std::string stage;
};
int PipelineRetry(PipelineStub& stub, const PipelineRetryOptions& opts, std::ostream& out,
                  std::ostream& err);

// The text `kiln pipeline get` prints for `resp` (exposed for tests).
std::string FormatPipeline(const kiln::v1::GetPipelineResponse& resp);

}  // namespace kiln::cli

#endif  // KILN_TOOLS_CLI_PIPELINE_COMMANDS_H_
