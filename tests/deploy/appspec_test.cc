// One test per appspec rule of reference/aws-semantics.md §4.1-§4.4, named after the rule.
#include "deploy/appspec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::deploy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

std::string ErrorOf(std::string_view yaml, const AppSpecParseOptions& options = {}) {
  absl::StatusOr<AppSpec> spec = ParseAppSpec(yaml, "appspec.yml", options);
  if (spec.ok()) return "<parsed OK>";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

AppSpec ParseOk(std::string_view yaml, const AppSpecParseOptions& options = {}) {
  absl::StatusOr<AppSpec> spec = ParseAppSpec(yaml, "appspec.yml", options);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *std::move(spec) : AppSpec{};
}

std::string WithMode(std::string_view mode) {
  return "version: 0.0\nos: linux\npermissions:\n  - object: /srv/app\n    mode: " +
         std::string(mode) + "\n";
}

std::string WithTimeout(std::string_view timeout) {
  return "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: " +
         std::string(timeout) + "\n";
}

constexpr char kFlaskAppSpec[] = R"(version: 0.0
os: linux
files:
  - source: /
    destination: /home/ec2-user/app
    overwrite: yes
file_exists_behavior: OVERWRITE
permissions:
  - object: /home/ec2-user/app
    pattern: "*.sh"
    except: [keep.sh]
    owner: ec2-user
    group: ec2-user
    mode: 755
    type:
      - file
hooks:
  ApplicationStop:
    - location: scripts/stop_container.sh
      timeout: 300
      runas: root
  AfterInstall:
  ApplicationStart:
    - location: scripts/start_container.sh
      timeout: "120"
      runas: "  ec2-user  "
)";

TEST(AppSpecTest, AcceptsACompleteAppSpec) {
  AppSpec spec = ParseOk(kFlaskAppSpec);
  EXPECT_EQ(spec.os, "linux");
  ASSERT_EQ(spec.files.size(), 1u);
  EXPECT_EQ(spec.files[0].source, "/");
  EXPECT_EQ(spec.files[0].destination, "/home/ec2-user/app");
  EXPECT_EQ(spec.file_exists_behavior, "OVERWRITE");
  ASSERT_EQ(spec.permissions.size(), 1u);
  const AppSpecPermission& p = spec.permissions[0];
  EXPECT_EQ(p.pattern, "*.sh");
  EXPECT_THAT(p.except, ElementsAre("keep.sh"));
  EXPECT_EQ(p.owner, "ec2-user");
  EXPECT_EQ(p.mode, "755");
  EXPECT_TRUE(p.files);
  EXPECT_FALSE(p.directories);
  ASSERT_EQ(spec.hooks.count("ApplicationStop"), 1u);
  EXPECT_EQ(spec.hooks["ApplicationStop"][0].timeout_seconds, 300);
  EXPECT_EQ(spec.hooks["ApplicationStop"][0].runas, "root");
  EXPECT_EQ(spec.hooks["ApplicationStart"][0].timeout_seconds, 120);
  EXPECT_EQ(spec.hooks["ApplicationStart"][0].runas, "ec2-user");  // stripped
  EXPECT_THAT(spec.warnings, IsEmpty());
}

// ---- §4.1 version ----

TEST(AppSpecTest, VersionUnquotedZeroPointZeroIsAccepted) {
  ParseOk("version: 0.0\nos: linux\n");
}

TEST(AppSpecTest, VersionQuotedStringIsRejectedAsByTheAgent) {
  std::string e = ErrorOf("version: \"0.0\"\nos: linux\n");
  EXPECT_THAT(e, StartsWith("appspec.yml:1:10: version: The deployment failed because an invalid "
                            "version value (0.0) was entered"));
  EXPECT_THAT(e, HasSubstr("quoted"));
}

TEST(AppSpecTest, VersionIntegerZeroIsAcceptedLikeRubyFloatEquality) {
  ParseOk("version: 0\nos: linux\n");
}

TEST(AppSpecTest, VersionOtherValueIsRejected) {
  EXPECT_THAT(ErrorOf("version: 0.2\nos: linux\n"), HasSubstr("invalid version value (0.2)"));
}

TEST(AppSpecTest, VersionMissingIsRejected) {
  EXPECT_THAT(ErrorOf("os: linux\n"),
              StartsWith("appspec.yml:1:1: version: The deployment failed because an invalid "
                         "version value () was entered"));
}

// ---- §4.1 os ----

TEST(AppSpecTest, OsWindowsIsRejectedByALinuxAgent) {
  std::string e = ErrorOf("version: 0.0\nos: windows\n");
  EXPECT_THAT(e, StartsWith("appspec.yml:2:5: os: The deployment failed because the application "
                            "specification file specifies an unsupported operating system "
                            "(windows)."));
  EXPECT_THAT(e, HasSubstr("this agent runs linux"));
}

TEST(AppSpecTest, OsMissingIsRejected) {
  EXPECT_THAT(ErrorOf("version: 0.0\n"), HasSubstr("unsupported operating system ()"));
}

// ---- §4.1 check order and other quirks ----

TEST(AppSpecTest, CheckOrderVersionBeforeOs) {
  EXPECT_THAT(ErrorOf("os: windows\nversion: 1\n"), HasSubstr("invalid version value (1)"));
}

TEST(AppSpecTest, CheckOrderOsBeforeHooks) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: mac\nhooks:\n  AfterInstall:\n    - timeout: 5\n"),
              HasSubstr("unsupported operating system (mac)"));
}

TEST(AppSpecTest, CheckOrderHooksBeforeFiles) {
  std::string e = ErrorOf(
      "version: 0.0\nos: linux\nfiles:\n  - source: a\nhooks:\n  AfterInstall:\n    - runas: x\n");
  EXPECT_THAT(e, HasSubstr("script with no location value"));
}

TEST(AppSpecTest, CheckOrderFilesBeforePermissions) {
  std::string e = ErrorOf(
      "version: 0.0\nos: linux\npermissions:\n  - mode: 644\nfiles:\n  - destination: /a\n");
  EXPECT_THAT(e, HasSubstr("specifies a destination file, but no source file"));
}

TEST(AppSpecTest, CheckOrderPermissionsBeforeFileExistsBehavior) {
  std::string e = ErrorOf(
      "version: 0.0\nos: linux\nfile_exists_behavior: MERGE\npermissions:\n  - mode: 644\n");
  EXPECT_THAT(e, HasSubstr("has no object value"));
}

TEST(AppSpecTest, UnknownKeysAreIgnored) {
  AppSpec spec = ParseOk(
      "version: 0.0\nos: linux\nresources: []\nfiles:\n  - source: a\n    destination: /b\n"
      "    overwrite: yes\n");
  EXPECT_EQ(spec.files.size(), 1u);
}

TEST(AppSpecTest, DuplicateKeysAreRejectedWithBothLines) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nos: linux\n"),
              StartsWith("appspec.yml:3:1: os: duplicate key 'os' (first on line 2)"));
}

TEST(AppSpecTest, YamlSyntaxErrorHasPosition) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: [linux\n"), StartsWith("appspec.yml:"));
}

// ---- §4.2 files ----

TEST(AppSpecTest, FilesSourceIsRequired) {
  EXPECT_THAT(
      ErrorOf("version: 0.0\nos: linux\nfiles:\n  - destination: /srv\n"),
      StartsWith("appspec.yml:4:5: files[0].source: The deployment failed because the application "
                 "specification file specifies a destination file, but no source file."));
}

TEST(AppSpecTest, FilesDestinationIsRequired) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nfiles:\n  - source: app.py\n"),
              HasSubstr("specifies only a source file (app.py). Add the name of the destination "
                        "file"));
}

TEST(AppSpecTest, FilesDestinationMustBeAbsolute) {
  EXPECT_THAT(
      ErrorOf("version: 0.0\nos: linux\nfiles:\n  - source: a\n    destination: srv/app\n"),
      StartsWith("appspec.yml:5:18: files[0].destination: destination 'srv/app' must be an "
                 "absolute path"));
}

TEST(AppSpecTest, FilesMustBeAList) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nfiles:\n  source: a\n"),
              HasSubstr("files: expected a list"));
}

TEST(AppSpecTest, FileExistsBehaviorAcceptsTheThreeOptions) {
  for (const char* v : {"DISALLOW", "OVERWRITE", "RETAIN"}) {
    EXPECT_EQ(ParseOk(std::string("version: 0.0\nos: linux\nfile_exists_behavior: ") + v + "\n")
                  .file_exists_behavior,
              v);
  }
}

TEST(AppSpecTest, FileExistsBehaviorInvalidIsRejected) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nfile_exists_behavior: MERGE\n"),
              StartsWith("appspec.yml:3:23: file_exists_behavior: The deployment failed because "
                         "an invalid option was specified for fileExistsBehavior: MERGE. Valid "
                         "options include OVERWRITE, RETAIN, and DISALLOW."));
}

// ---- §4.3 permissions ----

TEST(AppSpecTest, PermissionObjectIsRequired) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\npermissions:\n  - owner: app\n"),
              HasSubstr("permissions[0].object: The deployment failed because a permission listed "
                        "in the application specification file has no object value."));
}

TEST(AppSpecTest, PermissionDefaultsArePatternAllAndBothTypes) {
  AppSpec spec = ParseOk("version: 0.0\nos: linux\npermissions:\n  - object: /srv\n");
  ASSERT_EQ(spec.permissions.size(), 1u);
  EXPECT_EQ(spec.permissions[0].pattern, "**");
  EXPECT_TRUE(spec.permissions[0].files);
  EXPECT_TRUE(spec.permissions[0].directories);
  EXPECT_FALSE(spec.permissions[0].mode.has_value());
}

TEST(AppSpecTest, PermissionTypeOnlyFileOrDirectory) {
  EXPECT_THAT(
      ErrorOf("version: 0.0\nos: linux\npermissions:\n  - object: /srv\n    type: [socket]\n"),
      HasSubstr("specifies a permission for an object type not supported for permissions "
                "(socket)"));
}

TEST(AppSpecTest, ModeUnquotedWithLeadingZeroAndDigitsAbove7IsRejectedAsOctal) {
  std::string e = ErrorOf(WithMode("0755"));
  EXPECT_THAT(e, HasSubstr("The deployment failed because the permissions mode (493) in the "
                           "application specification file contains an invalid character (9)."));
  EXPECT_THAT(e, HasSubstr("octal number 493"));
}

TEST(AppSpecTest, ModeUnquoted0644IsSilentlyAcceptedAs420) {
  AppSpec spec = ParseOk(WithMode("0644"));
  EXPECT_EQ(spec.permissions[0].mode, "420");
  ASSERT_EQ(spec.warnings.size(), 1u);
  EXPECT_THAT(spec.warnings[0], HasSubstr("applied as mode 420"));
}

TEST(AppSpecTest, ModeQuotedKeepsItsDigits) {
  EXPECT_EQ(ParseOk(WithMode("\"0755\"")).permissions[0].mode, "0755");
  EXPECT_EQ(ParseOk(WithMode("'644'")).permissions[0].mode, "644");
}

TEST(AppSpecTest, ModeWithoutLeadingZeroIsTakenAsWritten) {
  EXPECT_EQ(ParseOk(WithMode("644")).permissions[0].mode, "644");
  EXPECT_EQ(ParseOk(WithMode("4755")).permissions[0].mode, "4755");
}

TEST(AppSpecTest, ModeShortIsLeftPaddedToThreeDigits) {
  EXPECT_EQ(ParseOk(WithMode("7")).permissions[0].mode, "007");
}

TEST(AppSpecTest, ModeLongerThanFourDigitsIsRejected) {
  EXPECT_THAT(ErrorOf(WithMode("12345")),
              HasSubstr("the length of a permissions mode (12345) in the application "
                        "specification file is invalid"));
}

TEST(AppSpecTest, ModeWithInvalidCharacterIsRejected) {
  EXPECT_THAT(ErrorOf(WithMode("rwx")), HasSubstr("contains an invalid character (r)"));
}

TEST(AppSpecTest, AclsAndContextAreParsed) {
  AppSpec spec = ParseOk(
      "version: 0.0\nos: linux\npermissions:\n  - object: /srv\n    acls:\n      - u:app:rw\n"
      "    context:\n      name: unconfined_u\n      type: httpd_sys_content_t\n"
      "      range: s0\n");
  const AppSpecPermission& p = spec.permissions[0];
  ASSERT_TRUE(p.acls.has_value());
  EXPECT_THAT(*p.acls, ElementsAre("u:app:rw"));
  ASSERT_TRUE(p.context.has_value());
  EXPECT_EQ(p.context->type, "httpd_sys_content_t");
  EXPECT_EQ(p.context->user, "unconfined_u");
  EXPECT_EQ(p.context->range, "s0");
}

TEST(AppSpecTest, ContextNeedsAType) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\npermissions:\n  - object: /srv\n    context:\n"
                      "      range: s0\n"),
              HasSubstr("an SELinux context needs a type"));
}

// ---- §4.4 hooks ----

TEST(AppSpecTest, HookLocationIsRequired) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - timeout: 5\n"),
              StartsWith("appspec.yml:5:7: hooks.AfterInstall[0].location: The deployment failed "
                         "because the application specification file specifies a script with no "
                         "location value."));
}

TEST(AppSpecTest, HookTimeoutDefaultsTo3600) {
  AppSpec spec = ParseOk("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a\n");
  EXPECT_EQ(spec.hooks["AfterInstall"][0].timeout_seconds, 3600);
}

TEST(AppSpecTest, HookTimeoutStringUsesRubyToI) {
  EXPECT_EQ(ParseOk(WithTimeout("\"30\"")).hooks["AfterInstall"][0].timeout_seconds, 30);
  EXPECT_EQ(ParseOk(WithTimeout("30s")).hooks["AfterInstall"][0].timeout_seconds, 30);
  EXPECT_EQ(ParseOk(WithTimeout("1_0")).hooks["AfterInstall"][0].timeout_seconds, 10);
}

TEST(AppSpecTest, HookTimeoutFloatIsTruncated) {
  EXPECT_EQ(ParseOk(WithTimeout("30.9")).hooks["AfterInstall"][0].timeout_seconds, 30);
}

TEST(AppSpecTest, HookTimeoutNotANumberIsRejected) {
  EXPECT_THAT(ErrorOf(WithTimeout("foo")),
              HasSubstr("hooks.AfterInstall[0].timeout: The deployment failed because an invalid "
                        "timeout value was provided for a script"));
}

TEST(AppSpecTest, HookTimeoutZeroIsRejected) {
  EXPECT_THAT(ErrorOf(WithTimeout("0")), HasSubstr("invalid timeout value"));
}

TEST(AppSpecTest, HookTimeoutOver3600IsRejected) {
  EXPECT_THAT(ErrorOf(WithTimeout("3601")), HasSubstr("timeout 3601 s is over the 3600-second"));
  EXPECT_EQ(ParseOk(WithTimeout("3600")).hooks["AfterInstall"][0].timeout_seconds, 3600);
}

TEST(AppSpecTest, HookRunasAndSudoAreParsed) {
  AppSpec spec = ParseOk(
      "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a\n      runas: app\n"
      "      sudo: yes\n    - location: b\n      sudo: no\n");
  EXPECT_EQ(spec.hooks["AfterInstall"][0].runas, "app");
  EXPECT_TRUE(spec.hooks["AfterInstall"][0].sudo);
  EXPECT_FALSE(spec.hooks["AfterInstall"][1].sudo);
  EXPECT_FALSE(spec.hooks["AfterInstall"][1].runas.has_value());
}

TEST(AppSpecTest, HookWithNullOrEmptyValueIsIgnored) {
  AppSpec spec = ParseOk("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n  BeforeInstall: []\n");
  EXPECT_THAT(spec.hooks, IsEmpty());
}

TEST(AppSpecTest, HookUnderReservedEventIsRejected) {
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nhooks:\n  Install:\n    - location: a.sh\n"),
              StartsWith("appspec.yml:4:3: hooks.Install: lifecycle event Install is run by the "
                         "agent itself and cannot have scripts"));
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nhooks:\n  DownloadBundle:\n    - location: a\n"),
              HasSubstr("DownloadBundle is run by the agent itself"));
}

TEST(AppSpecTest, UnknownEventAcceptedWithoutTheDeploymentsEventList) {
  AppSpec spec = ParseOk("version: 0.0\nos: linux\nhooks:\n  Custom:\n    - location: a\n");
  EXPECT_EQ(spec.hooks.count("Custom"), 1u);
}

TEST(AppSpecTest, UnknownEventRejectedWhenTheDeploymentListsItsEvents) {
  AppSpecParseOptions options;
  options.lifecycle_events = DefaultLifecycleEvents();
  EXPECT_THAT(ErrorOf("version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: a\n"
                      "  AfterInstal:\n    - location: b\n",
                      options),
              StartsWith("appspec.yml:6:3: hooks: appspec.yml file contains unknown lifecycle "
                         "events: [\"AfterInstal\"]"));
  ParseOk("version: 0.0\nos: linux\nhooks:\n  ValidateService:\n    - location: a\n", options);
}

TEST(AppSpecTest, ScriptableAndReservedEventsAreClassified) {
  EXPECT_TRUE(IsScriptableEvent("ApplicationStop"));
  EXPECT_TRUE(IsScriptableEvent("AfterAllowTraffic"));
  EXPECT_FALSE(IsScriptableEvent("Install"));
  EXPECT_TRUE(IsReservedEvent("DownloadBundle"));
  EXPECT_TRUE(IsReservedEvent("AllowTraffic"));
  EXPECT_FALSE(IsReservedEvent("ValidateService"));
}

}  // namespace
}  // namespace kiln::deploy
