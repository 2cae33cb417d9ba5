#include "agent/reports/junit_report.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "pugixml.hpp"

namespace kiln::agent {
namespace {

using kiln::v1::TestCase;
using kiln::v1::TestReport;

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as protobuf's validator says).
size_t Utf8SequenceLength(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// `s` as valid UTF-8 (each invalid byte becomes U+FFFD), cut on a character boundary so that it
// is at most `max_bytes` long.
std::string ValidUtf8(std::string_view s, size_t max_bytes = std::numeric_limits<size_t>::max()) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  while (!s.empty()) {
    const size_t n = Utf8SequenceLength(s);
    const std::string_view piece = n == 0 ? kReplacement : s.substr(0, n);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    s.remove_prefix(n == 0 ? 1 : n);
  }
  return out;
}

// "<line>:<col>" (1-based, columns in bytes) of byte `offset` of `text`.
std::string Position(std::string_view text, ptrdiff_t offset) {
  const size_t off = std::min(static_cast<size_t>(std::max<ptrdiff_t>(offset, 0)), text.size());
  const std::string_view before = text.substr(0, off);
  const size_t line = 1 + static_cast<size_t>(std::count(before.begin(), before.end(), '\n'));
  const size_t last_newline = before.rfind('\n');
  const size_t col = last_newline == std::string_view::npos ? off + 1 : off - last_newline;
  return absl::StrCat(line, ":", col);
}

// Seconds as written in a JUnit `time` attribute ("1.25", "1,25", "1,234.5") in nanoseconds;
// 0 for anything unparsable, negative or not finite. Saturates at the int64 maximum.
int64_t SecondsToNanos(std::string_view text) {
  std::string s(absl::StripAsciiWhitespace(AbslView(text)));
  if (s.find('.') != std::string::npos) {
    s.erase(std::remove(s.begin(), s.end(), ','), s.end());  // thousands separators
  } else {
    std::replace(s.begin(), s.end(), ',', '.');  // decimal comma
  }
  double seconds = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(seconds) || seconds <= 0) {
    return 0;
  }
  const double nanos = seconds * 1e9;
  if (nanos >= static_cast<double>(std::numeric_limits<int64_t>::max())) {
    return std::numeric_limits<int64_t>::max();
  }
  return static_cast<int64_t>(std::llround(nanos));
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b ? std::numeric_limits<int64_t>::max() : a + b;
}

int32_t ClampToInt32(int64_t v) {
  return static_cast<int32_t>(std::min<int64_t>(v, std::numeric_limits<int32_t>::max()));
}

// The text and CDATA directly inside `node`, concatenated.
std::string NodeText(const pugi::xml_node& node) {
  std::string text;
  for (const pugi::xml_node& child : node.children()) {
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) {
      text += child.value();
    }
  }
  return text;
}

TestCase MakeTestCase(const pugi::xml_node& testcase, std::string_view suite_name) {
  TestCase tc;
  tc.set_name(ValidUtf8(testcase.attribute("name").value()));
  const std::string_view classname = testcase.attribute("classname").value();
  tc.set_prefix(ValidUtf8(classname.empty() ? suite_name : classname));
  tc.set_duration_in_nano_seconds(SecondsToNanos(testcase.attribute("time").value()));
  // Precedence failure > error > skipped, whatever the children's order.
  static constexpr std::pair<const char*, const char*> kOutcomes[] = {
      {"failure", "FAILED"}, {"error", "ERROR"}, {"skipped", "SKIPPED"}};
  tc.set_status("SUCCEEDED");
  for (const auto& [element, status] : kOutcomes) {
    const pugi::xml_node outcome = testcase.child(element);
    if (!outcome) continue;
    tc.set_status(status);
    std::string message = outcome.attribute("message").value();
    if (message.empty()) message = NodeText(outcome);
    const absl::string_view trimmed = absl::StripAsciiWhitespace(message);
    tc.set_message(
        ValidUtf8(std::string_view(trimmed.data(), trimmed.size()), kMaxTestCaseMessageBytes));
    break;
  }
  return tc;
}

bool IsFailed(const TestCase& tc) { return tc.status() == "FAILED" || tc.status() == "ERROR"; }

}  // namespace

absl::StatusOr<std::vector<TestCase>> ParseJUnitXml(std::string_view xml) {
  pugi::xml_document doc;
  // parse_default leaves out parse_doctype: a DOCTYPE is skipped, its entities never defined.
  const pugi::xml_parse_result result =
      doc.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_auto);
  if (!result) {
    return absl::InvalidArgumentError(
        absl::StrCat(Position(xml, result.offset), ": ", result.description()));
  }
  const pugi::xml_node root = doc.document_element();
  const std::string_view root_name = root.name();
  if (root_name != "testsuites" && root_name != "testsuite") {
    // offset_debug() is the offset of the element's name; point at its '<'.
    const ptrdiff_t offset = root.offset_debug();
    const bool at_name =
        offset > 0 && static_cast<size_t>(offset) <= xml.size() && xml[offset - 1] == '<';
    return absl::InvalidArgumentError(absl::StrCat(
        Position(xml, at_name ? offset - 1 : offset), ": root element is <",
        ValidUtf8(root_name, 256), ">; a JUnit report has <testsuites> or <testsuite>"));
  }
  // Depth-first in document order with an explicit stack, so deep nesting cannot overflow ours.
  // Each entry: the next child to visit in a suite, and the name of the nearest enclosing
  // <testsuite>.
  std::vector<TestCase> cases;
  std::vector<std::pair<pugi::xml_node, std::string_view>> stack = {
      {root.first_child(), root_name == "testsuite" ? root.attribute("name").value() : ""}};
  while (!stack.empty()) {
    const pugi::xml_node node = stack.back().first;
    if (!node) {
      stack.pop_back();
      continue;
    }
    stack.back().first = node.next_sibling();
    const std::string_view name = node.name();
    if (name == "testcase") {
      cases.push_back(MakeTestCase(node, stack.back().second));
    } else if (name == "testsuite") {
      stack.emplace_back(node.first_child(), node.attribute("name").value());
    }
  }
  return cases;
}

TestReport BuildTestReport(const std::string& project, const common::BuildspecReportGroup& group,
                           const std::vector<ReportFileInput>& files) {
  TestReport report;
  report.set_name(ValidUtf8(absl::StrCat(project, "-", group.name)));
  report.set_file_format(ValidUtf8(group.file_format));
  if (group.file_format != "JUNITXML") {
    report.set_status("INCOMPLETE");
    report.set_message(ValidUtf8(absl::StrCat(
        "file-format ", group.file_format, " is not supported by Kiln; only JUNITXML is parsed")));
    return report;
  }
  if (files.empty()) {
    report.set_status("INCOMPLETE");
    report.set_message("no report files matched");
    return report;
  }
  std::string first_error;
  std::vector<TestCase> cases;
  for (const ReportFileInput& file : files) {
    absl::StatusOr<std::vector<TestCase>> parsed =
        file.contents.ok() ? ParseJUnitXml(*file.contents) : file.contents.status();
    if (!parsed.ok()) {
      if (first_error.empty()) {
        // Parse errors start with "<line>:<col>:" and join the path as a compiler would.
        const char* separator = file.contents.ok() ? ":" : ": ";
        first_error = absl::StrCat(file.path, separator, parsed.status().message());
      }
      continue;
    }
    for (TestCase& tc : *parsed) cases.push_back(std::move(tc));
  }
  int64_t passed = 0, failed = 0, skipped = 0, duration = 0;
  for (const TestCase& tc : cases) {
    if (IsFailed(tc)) {
      ++failed;
    } else if (tc.status() == "SKIPPED") {
      ++skipped;
    } else {
      ++passed;
    }
    duration = SaturatingAdd(duration, tc.duration_in_nano_seconds());
  }
  report.set_total(ClampToInt32(static_cast<int64_t>(cases.size())));
  report.set_passed(ClampToInt32(passed));
  report.set_failed(ClampToInt32(failed));
  report.set_skipped(ClampToInt32(skipped));
  report.set_duration_in_nano_seconds(duration);
  if (!first_error.empty()) {
    report.set_status("INCOMPLETE");
    report.set_message(ValidUtf8(first_error));
  } else {
    report.set_status(failed > 0 ? "FAILED" : "SUCCEEDED");
  }
  std::stable_partition(cases.begin(), cases.end(), IsFailed);
  if (cases.size() > static_cast<size_t>(kMaxTestCasesPerReport))
    cases.resize(kMaxTestCasesPerReport);
  for (TestCase& tc : cases) *report.add_test_cases() = std::move(tc);
  return report;
}

}  // namespace kiln::agent
