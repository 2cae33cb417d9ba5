// Helpers shared by the `kiln` command families (commands.h, deploy_commands.h, pipeline_commands.h):
// deadlines, RPC error printing, tables, timestamps, JSON. Pure functions; thread-safe.
#ifndef KILN_TOOLS_CLI_CLI_UTIL_H_
#define KILN_TOOLS_CLI_CLI_UTIL_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/map.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "tools/cli/commands.h"

namespace kiln::cli {

using Row = std::vector<std::string>;

// Sets the context's deadline `opts.deadline` from now (unary calls).
void SetDeadline(grpc::ClientContext& ctx, const CommandOptions& opts);
// Prints "kiln: NOT_FOUND: <message>" to `err` and returns kExitFailure.
int RpcError(const grpc::Status& s, std::ostream& err);
// Columns separated by two spaces, each as wide as its widest cell; trailing spaces trimmed. Each
// line starts with `indent`.
void PrintTable(const std::vector<Row>& rows, std::ostream& out, const std::string& indent = "");
// True unless the timestamp is the zero value.
bool IsSet(const google::protobuf::Timestamp& ts);
absl::Time ToTime(const google::protobuf::Timestamp& ts);
// "2026-11-21T15:04:05Z".
std::string FormatUtc(absl::Time t);
// FormatUtc of the timestamp, or "-" if unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);
// "k1=v1,k2=v2" sorted by key.
std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels);
// `m` in protobuf's JSON mapping, 2-space indented and newline-terminated, to `out`; kExitOk, or kExitFailure with
// "kiln: INTERNAL: ..." on `err`.
int PrintJson(const google::protobuf::Message& m, std::ostream& out, std::ostream& err);

}  // namespace kiln::cli

#endif  // KILN_TOOLS_CLI_CLI_UTIL_H_
