#include "tools/cli/cli_util.h"

#include <algorithm>
#include <ostream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace kiln::cli {

void SetDeadline(grpc::ClientContext& ctx, const CommandOptions& opts) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + opts.deadline));
}

int RpcError(const grpc::Status& s, std::ostream& err) {
  err << "kiln: " << absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())) << ": "
      << s.error_message() << "\n";
  return kExitFailure;
}

void PrintTable(const std::vector<Row>& rows, std::ostream& out, const std::string& indent) {
  std::vector<size_t> widths;
  for (const Row& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const Row& row : rows) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << "\n";
  }
}

bool IsSet(const google::protobuf::Timestamp& ts) { return ts.seconds() != 0 || ts.nanos() != 0; }

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  return IsSet(ts) ? FormatUtc(ToTime(ts)) : "-";
}

std::string FormatLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::pair<std::string, std::string>> sorted(labels.begin(), labels.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

int PrintJson(const google::protobuf::Message& m, std::ostream& out, std::ostream& err) {
  google::protobuf::util::JsonPrintOptions json_opts;
  json_opts.add_whitespace = true;
  std::string json;
  if (auto s = google::protobuf::util::MessageToJsonString(m, &json, json_opts); !s.ok()) {
    err << "kiln: INTERNAL: " << s.message() << "\n";
    return kExitFailure;
  }
  out << json;
  if (json.empty() || json.back() != '\n') out << "\n";
  return kExitOk;
}

}  // namespace kiln::cli
