// Test reports from buildspec `reports` groups (reference/aws-semantics.md §1.9): parsing JUnit XML
// files into TestCase messages and summing a group's files into one TestReport. Pure functions over
// in-memory data (the caller reads the files); thread-safe.
//
// Every string placed in a message (names, prefixes, messages) is valid UTF-8: invalid bytes in the
// input are replaced by U+FFFD, because proto3 `string` fields with invalid UTF-8 fail to parse.
#ifndef KILN_AGENT_REPORTS_JUNIT_REPORT_H_
#define KILN_AGENT_REPORTS_JUNIT_REPORT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/buildspec.h"
#include "kiln/v1/build.pb.h"

namespace kiln::agent {

// CodeBuild keeps at most 500 test cases per report (reference §1.9).
inline constexpr int kMaxTestCasesPerReport = 500;
// A case's message is cut to at most this many bytes (on a UTF-8 character boundary).
inline constexpr size_t kMaxTestCaseMessageBytes = 1024;

// Parses one JUnit XML document. Accepted shapes: a root <testsuites> holding <testsuite> elements
// (which may nest), or a root <testsuite>; every <testcase> directly inside one of them is a case,
// in document order. For each case:
//   name     = the `name` attribute;
//   prefix   = the `classname` attribute, else the `name` of the nearest enclosing <testsuite>;
//   status   = "FAILED" if it has a <failure> child, else "ERROR" for <error>, else "SKIPPED" for
//              <skipped>, else "SUCCEEDED";
//   message  = that child's `message` attribute, else its text, trimmed, at most 1024 bytes;
//   duration_in_nano_seconds = the `time` attribute in seconds ("1.5"; "1,5" is accepted as a
//              decimal comma); missing, unparsable, negative or non-finite gives 0.
// DOCTYPE declarations are skipped and never expanded (no entity expansion beyond the five
// predefined entities and character references; nothing external is read).
// Errors: INVALID_ARGUMENT "<line>:<col>: <what>", 1-based, for malformed XML (e.g.
// "3:7: Start-end tags mismatch") or a root element other than testsuites/testsuite (e.g.
// "1:1: root element is <html>; a JUnit report has <testsuites> or <testsuite>").
absl::StatusOr<std::vector<kiln::v1::TestCase>> ParseJUnitXml(std::string_view xml);

// One matched report file.
struct ReportFileInput {
  // As shown in messages: relative to the build's source directory, e.g. "reports/junit.xml".
  std::string path;
  // The file's bytes, or why it could not be read.
  absl::StatusOr<std::string> contents;
};

// The TestReport of `group` for a build of `project` from its matched `files` (in match order):
//   name = "<project>-<group.name>", file_format = group.file_format;
//   total/passed/failed/skipped and duration_in_nano_seconds summed over every case of every file
//   (failed counts FAILED and ERROR cases);
//   test_cases: at most kMaxTestCasesPerReport, FAILED/ERROR cases first, each part in file and
//   document order;
//   status: INCOMPLETE when the format is not JUNITXML (message "file-format <F> is not supported
//   by Kiln; only JUNITXML is parsed", no file is parsed), when no file matched (message "no report
//   files matched"), or when a file could not be read or parsed (message of the first such file:
//   "<path>:<line>:<col>: <what>" for XML errors, "<path>: <status message>" for read errors; the
//   other files are still counted); else FAILED if any case failed, else SUCCEEDED.
kiln::v1::TestReport BuildTestReport(const std::string& project,
                                     const common::BuildspecReportGroup& group,
                                     const std::vector<ReportFileInput>& files);

}  // namespace kiln::agent

#endif  // KILN_AGENT_REPORTS_JUNIT_REPORT_H_
