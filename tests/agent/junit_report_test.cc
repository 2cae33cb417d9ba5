// JUnit XML parsing and per-group TestReport summaries (agent/reports/junit_report.h).
#include "agent/reports/junit_report.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiln::agent {
namespace {

using ::kiln::test::IsOk;
using ::kiln::test::StatusIs;
using ::kiln::v1::TestCase;
using ::kiln::v1::TestReport;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<TestCase> ParseOk(const std::string& xml) {
  absl::StatusOr<std::vector<TestCase>> cases = ParseJUnitXml(xml);
  EXPECT_THAT(cases, IsOk());
  return cases.ok() ? *cases : std::vector<TestCase>{};
}

std::vector<std::string> Names(const std::vector<TestCase>& cases) {
  std::vector<std::string> names;
  for (const TestCase& tc : cases) names.push_back(tc.name());
  return names;
}

std::vector<std::string> Names(const TestReport& report) {
  return Names(std::vector<TestCase>(report.test_cases().begin(), report.test_cases().end()));
}

common::BuildspecReportGroup Group(const std::string& format = "JUNITXML") {
  common::BuildspecReportGroup g;
  g.name = "unit";
  g.files = {"reports/*.xml"};
  g.file_format = format;
  return g;
}

// A suite of `passed` passing and `failed` failing cases named <prefix>0, <prefix>1, ...
std::string Suite(const std::string& prefix, int passed, int failed) {
  std::string xml = "<testsuite name=\"s\">";
  for (int i = 0; i < passed + failed; ++i) {
    absl::StrAppend(&xml, "<testcase name=\"", prefix, i, "\" time=\"0.5\">",
                    i < passed ? "" : "<failure message=\"no\"/>", "</testcase>");
  }
  return xml + "</testsuite>";
}

// --- ParseJUnitXml ---

TEST(ParseJUnitXmlTest, TestsuitesRootYieldsCasesOfEverySuiteInOrder) {
  const std::vector<TestCase> cases = ParseOk(R"(<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="a"><testcase name="a1" classname="pkg.A"/><testcase name="a2" classname="pkg.A"/></testsuite>
  <testsuite name="b"><testcase name="b1" classname="pkg.B"/></testsuite>
</testsuites>)");
  EXPECT_THAT(Names(cases), ElementsAre("a1", "a2", "b1"));
  EXPECT_EQ(cases[2].prefix(), "pkg.B");
  EXPECT_EQ(cases[2].status(), "SUCCEEDED");
}

TEST(ParseJUnitXmlTest, TestsuiteRootIsAccepted) {
  EXPECT_THAT(Names(ParseOk(R"(<testsuite name="s"><testcase name="t"/></testsuite>)")),
              ElementsAre("t"));
}

TEST(ParseJUnitXmlTest, NestedSuitesAreWalkedInDocumentOrder) {
  const std::vector<TestCase> cases = ParseOk(R"(<testsuites><testsuite name="outer">
    <testcase name="1"/>
    <testsuite name="inner"><testcase name="2"/><testsuite name="deep"><testcase name="3"/></testsuite></testsuite>
    <testcase name="4"/>
  </testsuite></testsuites>)");
  EXPECT_THAT(Names(cases), ElementsAre("1", "2", "3", "4"));
  EXPECT_EQ(cases[1].prefix(), "inner");
  EXPECT_EQ(cases[2].prefix(), "deep");
  EXPECT_EQ(cases[3].prefix(), "outer");
}

TEST(ParseJUnitXmlTest, PrefixIsClassnameElseEnclosingSuiteName) {
  const std::vector<TestCase> cases = ParseOk(
      R"(<testsuite name="suite"><testcase name="a" classname="C"/><testcase name="b"/></testsuite>)");
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].prefix(), "C");
  EXPECT_EQ(cases[1].prefix(), "suite");
}

TEST(ParseJUnitXmlTest, ChildElementsSetStatus) {
  const std::vector<TestCase> cases = ParseOk(R"(<testsuite>
    <testcase name="ok"><system-out>hi</system-out></testcase>
    <testcase name="f"><failure message="expected 1"/></testcase>
    <testcase name="e"><error message="NullPointerException"/></testcase>
    <testcase name="s"><skipped/></testcase>
  </testsuite>)");
  ASSERT_EQ(cases.size(), 4u);
  EXPECT_EQ(cases[0].status(), "SUCCEEDED");
  EXPECT_EQ(cases[1].status(), "FAILED");
  EXPECT_EQ(cases[2].status(), "ERROR");
  EXPECT_EQ(cases[3].status(), "SKIPPED");
}

TEST(ParseJUnitXmlTest, FailureWinsOverErrorAndSkipped) {
  const std::vector<TestCase> cases = ParseOk(
      R"(<testsuite><testcase name="x"><skipped/><error/><failure message="f"/></testcase></testsuite>)");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].status(), "FAILED");
  EXPECT_EQ(cases[0].message(), "f");
}

TEST(ParseJUnitXmlTest, MessageIsAttributeElseTrimmedText) {
  const std::vector<TestCase> cases = ParseOk(R"(<testsuite>
    <testcase name="attr"><failure message="from attribute">stack trace</failure></testcase>
    <testcase name="text"><error>
       Traceback: <![CDATA[a < b]]>
    </error></testcase>
  </testsuite>)");
  ASSERT_EQ(cases.size(), 2u);
  EXPECT_EQ(cases[0].message(), "from attribute");
  EXPECT_EQ(cases[1].message(), "Traceback: a < b");
}

TEST(ParseJUnitXmlTest, MessageIsCutTo1024BytesOnCharacterBoundary) {
  // 1023 ASCII bytes then a 2-byte character: the character does not fit.
  const std::string text = std::string(1023, 'x') + "\xC3\xA9" + std::string(100, 'y');
  const std::vector<TestCase> cases = ParseOk("<testsuite><testcase name=\"t\"><failure>" + text +
                                              "</failure></testcase></testsuite>");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].message(), std::string(1023, 'x'));
}

TEST(ParseJUnitXmlTest, InvalidUtf8IsReplaced) {
  const std::vector<TestCase> cases = ParseOk(
      "<testsuite><testcase name=\"caf\xE9\"><failure>bad \xFF "
      "byte</failure></testcase></testsuite>");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].name(), "caf\xEF\xBF\xBD");
  EXPECT_EQ(cases[0].message(), "bad \xEF\xBF\xBD byte");
}

TEST(ParseJUnitXmlTest, TimeSecondsBecomeNanoseconds) {
  const std::vector<TestCase> cases = ParseOk(R"(<testsuite>
    <testcase name="dot" time="1.25"/>
    <testcase name="comma" time="0,5"/>
    <testcase name="thousands" time="1,000.5"/>
    <testcase name="missing"/>
    <testcase name="garbage" time="fast"/>
    <testcase name="negative" time="-3"/>
    <testcase name="nan" time="nan"/>
    <testcase name="huge" time="1e300"/>
  </testsuite>)");
  ASSERT_EQ(cases.size(), 8u);
  EXPECT_EQ(cases[0].duration_in_nano_seconds(), 1'250'000'000);
  EXPECT_EQ(cases[1].duration_in_nano_seconds(), 500'000'000);
  EXPECT_EQ(cases[2].duration_in_nano_seconds(), 1'000'500'000'000);
  EXPECT_EQ(cases[3].duration_in_nano_seconds(), 0);
  EXPECT_EQ(cases[4].duration_in_nano_seconds(), 0);
  EXPECT_EQ(cases[5].duration_in_nano_seconds(), 0);
  EXPECT_EQ(cases[6].duration_in_nano_seconds(), 0);
  EXPECT_EQ(cases[7].duration_in_nano_seconds(), std::numeric_limits<int64_t>::max());
}

TEST(ParseJUnitXmlTest, MalformedXmlGivesLineAndColumn) {
  EXPECT_THAT(ParseJUnitXml("<testsuite>\n  <testcase name=\"a\">\n</testsuite>"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("3:")));
  EXPECT_THAT(ParseJUnitXml("<testsuite>\n  <testcase name=\"a\">\n</testsuite>"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Start-end tags mismatch")));
  EXPECT_THAT(ParseJUnitXml(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                          StartsWith("1:1: No document element found")));
}

TEST(ParseJUnitXmlTest, OtherRootElementIsRejected) {
  EXPECT_THAT(
      ParseJUnitXml("<?xml version=\"1.0\"?>\n<html><testcase name=\"x\"/></html>"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "2:1: root element is <html>; a JUnit report has <testsuites> or <testsuite>"));
}

TEST(ParseJUnitXmlTest, HostileInputsReturnWithoutCrashing) {
  const std::string valid = Suite("t", 3, 1);
  for (size_t n = 0; n < valid.size(); ++n) (void)ParseJUnitXml(valid.substr(0, n));  // truncated
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 7919) % 256));
  EXPECT_FALSE(ParseJUnitXml(garbage).ok());
  (void)ParseJUnitXml(std::string("\0\0\0<testsuite/>", 15));  // looks like UTF-32
  // A 16 MiB attribute value is kept, a 16 MiB message is cut.
  const std::string big(16 << 20, 'a');
  const std::vector<TestCase> cases =
      ParseOk("<testsuite><testcase name=\"" + big + "\"><failure message=\"" + big +
              "\"/></testcase></testsuite>");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].name().size(), big.size());
  EXPECT_EQ(cases[0].message().size(), kMaxTestCaseMessageBytes);
  // 100k nested suites: no recursion on our side.
  std::string deep;
  for (int i = 0; i < 100'000; ++i) deep += "<testsuite>";
  deep += "<testcase name=\"bottom\"/>";
  for (int i = 0; i < 100'000; ++i) deep += "</testsuite>";
  EXPECT_THAT(Names(ParseOk(deep)), ElementsAre("bottom"));
}

TEST(ParseJUnitXmlTest, EntityDefinitionsAreNeverExpanded) {
  // Billion laughs: were entities expanded, lol9 would be 10^9 "lol"s.
  std::string dtd = "<!DOCTYPE testsuite [\n  <!ENTITY lol \"lol\">\n";
  for (int i = 1; i <= 9; ++i) {
    std::string refs;
    for (int j = 0; j < 10; ++j)
      absl::StrAppend(&refs, "&lol", i == 1 ? "" : absl::StrCat(i - 1), ";");
    absl::StrAppend(&dtd, "  <!ENTITY lol", i, " \"", refs, "\">\n");
  }
  dtd += "  <!ENTITY ext SYSTEM \"file:///etc/passwd\">\n]>\n";
  const std::vector<TestCase> cases = ParseOk(
      dtd + "<testsuite><testcase name=\"&lol9;\"><failure>&ext;</failure></testcase></testsuite>");
  ASSERT_EQ(cases.size(), 1u);
  EXPECT_EQ(cases[0].name(), "&lol9;");    // left as written
  EXPECT_EQ(cases[0].message(), "&ext;");  // no file read
}

// --- BuildTestReport ---

TEST(BuildTestReportTest, NameIsProjectDashGroupAndFormatIsCopied) {
  const TestReport r = BuildTestReport("app", Group(), {{"r.xml", Suite("t", 1, 0)}});
  EXPECT_EQ(r.name(), "app-unit");
  EXPECT_EQ(r.file_format(), "JUNITXML");
}

TEST(BuildTestReportTest, AllPassingIsSucceededWithTotals) {
  const TestReport r =
      BuildTestReport("app", Group(), {{"a.xml", Suite("a", 2, 0)}, {"b.xml", Suite("b", 3, 0)}});
  EXPECT_EQ(r.status(), "SUCCEEDED");
  EXPECT_EQ(r.total(), 5);
  EXPECT_EQ(r.passed(), 5);
  EXPECT_EQ(r.failed(), 0);
  EXPECT_EQ(r.duration_in_nano_seconds(), 2'500'000'000);
  EXPECT_EQ(r.message(), "");
}

TEST(BuildTestReportTest, FailedCountsFailuresAndErrors) {
  const TestReport r = BuildTestReport(
      "app", Group(),
      {{"r.xml", R"(<testsuite><testcase name="ok"/><testcase name="f"><failure/></testcase>
                    <testcase name="e"><error/></testcase><testcase name="s"><skipped/></testcase></testsuite>)"}});
  EXPECT_EQ(r.status(), "FAILED");
  EXPECT_EQ(r.total(), 4);
  EXPECT_EQ(r.passed(), 1);
  EXPECT_EQ(r.failed(), 2);
  EXPECT_EQ(r.skipped(), 1);
}

TEST(BuildTestReportTest, FailedCasesComeFirstInStableOrder) {
  const TestReport r =
      BuildTestReport("app", Group(), {{"a.xml", Suite("a", 2, 1)}, {"b.xml", Suite("b", 1, 1)}});
  EXPECT_THAT(Names(r), ElementsAre("a2", "b1", "a0", "a1", "b0"));
}

TEST(BuildTestReportTest, KeepsAtMost500CasesButCountsAll) {
  const TestReport r = BuildTestReport("app", Group(), {{"r.xml", Suite("t", 600, 3)}});
  EXPECT_EQ(r.total(), 603);
  EXPECT_EQ(r.failed(), 3);
  ASSERT_EQ(r.test_cases_size(), 500);
  EXPECT_EQ(r.test_cases(0).name(), "t600");  // the failures survive the cut
  EXPECT_EQ(r.test_cases(3).name(), "t0");
  EXPECT_EQ(r.duration_in_nano_seconds(), 603 * 500'000'000LL);
}

TEST(BuildTestReportTest, MalformedFileMakesIncompleteWithPathAndPositionButOthersCount) {
  const TestReport r =
      BuildTestReport("app", Group(),
                      {{"reports/a.xml", Suite("a", 1, 1)},
                       {"reports/bad.xml", "<testsuite>\n<testcase>\n</testsuite>"},
                       {"reports/worse.xml", "nonsense"}});
  EXPECT_EQ(r.status(), "INCOMPLETE");
  EXPECT_THAT(r.message(), StartsWith("reports/bad.xml:3:"));
  EXPECT_THAT(r.message(), HasSubstr("Start-end tags mismatch"));
  EXPECT_EQ(r.total(), 2);
  EXPECT_EQ(r.failed(), 1);
}

TEST(BuildTestReportTest, UnreadableFileMakesIncomplete) {
  const TestReport r =
      BuildTestReport("app", Group(),
                      {{"reports/gone.xml", absl::NotFoundError("No such file or directory")},
                       {"reports/a.xml", Suite("a", 2, 0)}});
  EXPECT_EQ(r.status(), "INCOMPLETE");
  EXPECT_EQ(r.message(), "reports/gone.xml: No such file or directory");
  EXPECT_EQ(r.passed(), 2);
}

TEST(BuildTestReportTest, NoFilesIsIncomplete) {
  const TestReport r = BuildTestReport("app", Group(), {});
  EXPECT_EQ(r.status(), "INCOMPLETE");
  EXPECT_EQ(r.message(), "no report files matched");
}

TEST(BuildTestReportTest, OtherFormatsAreIncompleteAndNotParsed) {
  const TestReport r =
      BuildTestReport("app", Group("CUCUMBERJSON"), {{"r.json", Suite("t", 3, 0)}});
  EXPECT_EQ(r.status(), "INCOMPLETE");
  EXPECT_EQ(r.file_format(), "CUCUMBERJSON");
  EXPECT_EQ(r.message(),
            "file-format CUCUMBERJSON is not supported by Kiln; only JUNITXML is parsed");
  EXPECT_EQ(r.total(), 0);
}

}  // namespace
}  // namespace kiln::agent
