// Buildspec conformance: one small buildspec per behaviour of reference/aws-semantics.md §1, named
// after the §1.14 checklist item it proves (Rule1_ = parsing and shell, Rule2_ = environment, Rule3_ =
// parameter store, Rule4_ = phase transitions, Rule5_ = log masking, Rule7_ = exported variables;
// Rule6_, artifacts, is added with the artifact upload).
//
// Every test pushes its own buildspec to its own git repository and project (both named after the
// test), starts the build with the `kiln` CLI and follows its log to the end, then checks the record of
// `kiln build get --json` (build and phase statuses, phase contexts, exported variables) and the log.
// One real kiln-coordinator and one kiln-agent (tests/e2e/farm.h) serve the whole suite; builds run
// directly on the agent host (no image, so no Docker).
//
// Commands print values as whole output lines "NAME=value", read back with Printed().
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/farm.h"
#include "tests/testing/build_helpers.h"
#include "tests/testing/status_matchers.h"

namespace kiln::e2e {
namespace {

namespace fs = std::filesystem;
using ::kiln::test::FindPhase;
using ::kiln::test::IsOk;
using ::kiln::test::Millis;
using ::kiln::v1::Build;
using ::kiln::v1::BuildPhaseType;
using ::kiln::v1::BuildStatus;
using ::kiln::v1::PhaseContext;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kBuildTimeout = absl::Seconds(60);

// --- Reading a build's log -------------------------------------------------------------------------

constexpr absl::string_view kContainer = "[Container] ";

// The messages of the agent's "[Container] <date> <time> <message>" lines, in order.
std::vector<std::string> ContainerMessages(const std::string& log) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::ConsumePrefix(&line, kContainer)) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    if (parts.size() == 3) out.emplace_back(parts[2]);
  }
  return out;
}

// What the commands printed: every line that is not a "[Container]" line.
std::vector<std::string> OutputLines(const std::string& log) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StartsWith(line, kContainer)) out.emplace_back(line);
  }
  return out;
}

// The value of the last output line "NAME=value", or "<no NAME= line>".
std::string Printed(const std::string& log, const std::string& name) {
  std::string value = absl::StrCat("<no ", name, "= line>");
  for (const std::string& line : OutputLines(log)) {
    if (absl::StartsWith(line, name + "=")) value = line.substr(name.size() + 1);
  }
  return value;
}

// How many output lines are exactly `line`.
int CountOutput(const std::string& log, const std::string& line) {
  int n = 0;
  for (const std::string& l : OutputLines(log)) n += l == line;
  return n;
}

// --- Reading a build record ------------------------------------------------------------------------

// The phase's status name ("SUCCEEDED", "FAILED", ...), or "ABSENT" if the phase is not in the record.
std::string PhaseStatus(const Build& b, BuildPhaseType::Value t) {
  const auto* p = FindPhase(b, t);
  return p == nullptr ? "ABSENT" : BuildStatus::Value_Name(p->phase_status());
}

// The phases' types, in record order.
std::vector<std::string> PhaseTypes(const Build& b) {
  std::vector<std::string> out;
  for (const auto& p : b.phases()) out.push_back(BuildPhaseType::Value_Name(p.phase_type()));
  return out;
}

// The phase's first context, or an empty one.
PhaseContext FirstContext(const Build& b, BuildPhaseType::Value t) {
  const auto* p = FindPhase(b, t);
  return p == nullptr || p->contexts_size() == 0 ? PhaseContext() : p->contexts(0);
}

// A buildspec 0.2 whose `build` phase runs `commands` (YAML list items, quoted as needed).
std::string BuildOnly(const std::vector<std::string>& commands) {
  std::string s = "version: 0.2\nphases:\n  build:\n    commands:\n";
  for (const auto& c : commands) absl::StrAppend(&s, "      - ", c, "\n");
  return s;
}

// --- The suite's farm ------------------------------------------------------------------------------

class ConformanceTest : public ::testing::Test {
 protected:
  // One coordinator and one agent (1 slot) for every test of the suite.
  static void SetUpTestSuite() {
    std::string t = absl::StrCat(::testing::TempDir(), "kiln-conformance-XXXXXX");
    if (mkdtemp(t.data()) == nullptr) {
      setup_ = new absl::Status(absl::InternalError("mkdtemp failed"));
      return;
    }
    dir_ = new std::string(t);
    // The agent's own environment, the lowest level of §1.14 item 2 (Rule2_Precedence...).
    setenv("CONFORMANCE_BASE_ONLY", "agent", 1);
    setenv("CONFORMANCE_BASE_SPEC", "agent", 1);
    setenv("CONFORMANCE_BASE_SSM", "agent", 1);
    farm_ = new Farm(*dir_, Farm::Options{});
    absl::Status s = farm_->StartCoordinator();
    if (s.ok()) s = farm_->StartAgent(1).status();
    setup_ = new absl::Status(s);
  }

  static void TearDownTestSuite() {
    delete farm_;  // SIGTERM agent and coordinator
    farm_ = nullptr;
    if (dir_ != nullptr) {
      if (any_failure_ || !setup_->ok()) {
        std::cerr << "conformance: the farm's files are kept in " << *dir_ << "\n";
      } else {
        fs::remove_all(*dir_);
      }
    }
    delete dir_;
    dir_ = nullptr;
    delete setup_;
    setup_ = nullptr;
  }

  void SetUp() override {
    ASSERT_THAT(*setup_, IsOk()) << (farm_ != nullptr ? farm_->DaemonLogs() : "");
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  void TearDown() override {
    if (!HasFailure()) return;
    any_failure_ = true;
    if (!last_log_.empty()) std::cerr << "---- log of the last build of " << name_ << "\n" << last_log_;
  }

  // Pushes `buildspec` as buildspec.yml to the repository <test name> (created on first use) and
  // applies the project <test name> building it, with `project_extra` YAML lines appended. Returns
  // the new commit.
  absl::StatusOr<std::string> Push(const std::string& buildspec, const std::string& project_extra = "") {
    if (!repo_) {
      auto repo = Repo::Create(*dir_, name_);
      if (!repo.ok()) return repo.status();
      repo_ = std::make_unique<Repo>(*std::move(repo));
    }
    auto sha = repo_->Commit({{"buildspec.yml", buildspec}}, "buildspec for " + name_);
    if (!sha.ok()) return sha.status();
    if (auto r = repo_->Push(); !r.ok()) return r.status();
    absl::Status s = farm_->ApplyProject(
        name_, absl::StrCat("name: ", name_, "\nsource: {type: git, location: \"", repo_->bare_path(),
                            "\", branch: main, buildspec: buildspec.yml}\n", project_extra));
    if (!s.ok()) return s;
    return sha;
  }

  // `kiln build start <test name> start_args...`: the exit code, stdout and stderr.
  absl::StatusOr<RunResult> Start(const std::vector<std::string>& start_args) {
    std::vector<std::string> argv = {"build", "start", name_};
    argv.insert(argv.end(), start_args.begin(), start_args.end());
    return farm_->Kiln(argv);
  }

  // Starts a build of the project <test name> and follows its log until it completes (60 s).
  absl::StatusOr<Farm::Followed> RunBuild(const std::vector<std::string>& start_args = {}) {
    auto r = Start(start_args);
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError(absl::StrCat("`kiln build start` exited ", r->exit_code, ": ", r->err));
    }
    auto f = farm_->FollowBuild(std::string(absl::StripAsciiWhitespace(r->out)), kBuildTimeout);
    if (f.ok()) last_log_ = f->log;
    return f;
  }

  // Push(buildspec, project_extra), then RunBuild(start_args).
  absl::StatusOr<Farm::Followed> Run(const std::string& buildspec, const std::string& project_extra = "",
                                     const std::vector<std::string>& start_args = {}) {
    if (auto sha = Push(buildspec, project_extra); !sha.ok()) return sha.status();
    return RunBuild(start_args);
  }

  // Checks that the build failed in DOWNLOAD_SOURCE with a YAML_FILE_ERROR whose message holds every
  // one of `parts`, and that no command phase ran (§1.8: DOWNLOAD_SOURCE fails → FINALIZING).
  static void ExpectYamlFileError(const Farm::Followed& f, const std::vector<std::string>& parts) {
    EXPECT_EQ(BuildStatus::Value_Name(f.build.build_status()), "FAILED");
    EXPECT_EQ(PhaseStatus(f.build, BuildPhaseType::DOWNLOAD_SOURCE), "FAILED");
    const PhaseContext c = FirstContext(f.build, BuildPhaseType::DOWNLOAD_SOURCE);
    EXPECT_EQ(c.status_code(), "YAML_FILE_ERROR");
    for (const std::string& part : parts) EXPECT_THAT(c.message(), HasSubstr(part));
    for (auto t : {BuildPhaseType::INSTALL, BuildPhaseType::PRE_BUILD, BuildPhaseType::BUILD,
                   BuildPhaseType::POST_BUILD, BuildPhaseType::UPLOAD_ARTIFACTS}) {
      EXPECT_EQ(PhaseStatus(f.build, t), "ABSENT") << BuildPhaseType::Value_Name(t);
    }
    EXPECT_NE(PhaseStatus(f.build, BuildPhaseType::FINALIZING), "ABSENT");
    EXPECT_THAT(ContainerMessages(f.log),
                Contains(absl::StrCat("Phase context status code: YAML_FILE_ERROR Message: ", c.message())));
  }

  static Farm* farm_;
  static std::string* dir_;
  static absl::Status* setup_;
  static bool any_failure_;

  std::string name_;
  std::unique_ptr<Repo> repo_;
  std::string last_log_;
};

Farm* ConformanceTest::farm_ = nullptr;
std::string* ConformanceTest::dir_ = nullptr;
absl::Status* ConformanceTest::setup_ = nullptr;
bool ConformanceTest::any_failure_ = false;

// ===== §1.14 item 1: YAML, version, phase names; §1.7 shell and state ================================

TEST_F(ConformanceTest, Rule1_Version02SharesOneShellAcrossCommandsAndPhases) {
  // §1.7: in 0.2 a cd, an export and a plain assignment carry to later commands and later phases.
  auto f = Run(R"yaml(version: 0.2
phases:
  install:
    commands:
      - echo "SRC=$CODEBUILD_SRC_DIR"
      - echo "START=$(pwd)"
      - mkdir -p carried/dir && cd carried/dir
      - export EXPORTED=from-install
      - PLAIN=plain-from-install
      - echo "SAME_PHASE_CWD=$(pwd)"
  build:
    commands:
      - echo "BUILD_CWD=$(pwd)"
      - echo "EXPORTED=$EXPORTED"
      - echo "PLAIN=$PLAIN"
      - cd ..
      - PLAIN=changed-in-build
  post_build:
    commands:
      - echo "POST_BUILD_CWD=$(pwd)"
      - echo "POST_BUILD_PLAIN=$PLAIN"
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  const std::string src = Printed(f->log, "SRC");
  ASSERT_TRUE(absl::StartsWith(src, "/")) << src;
  EXPECT_EQ(Printed(f->log, "START"), src);  // §1.7 item 5: the build starts in CODEBUILD_SRC_DIR
  EXPECT_THAT(ContainerMessages(f->log), Contains("Moving to directory " + src));
  EXPECT_EQ(Printed(f->log, "SAME_PHASE_CWD"), src + "/carried/dir");
  EXPECT_EQ(Printed(f->log, "BUILD_CWD"), src + "/carried/dir");
  EXPECT_EQ(Printed(f->log, "EXPORTED"), "from-install");
  EXPECT_EQ(Printed(f->log, "PLAIN"), "plain-from-install");
  EXPECT_EQ(Printed(f->log, "POST_BUILD_CWD"), src + "/carried");
  EXPECT_EQ(Printed(f->log, "POST_BUILD_PLAIN"), "changed-in-build");
}

TEST_F(ConformanceTest, Rule1_Version01RunsEachCommandInAFreshShell) {
  auto f = Run(R"yaml(version: 0.1
phases:
  build:
    commands:
      - mkdir -p sub && cd sub
      - export EXPORTED=set
      - PLAIN=set
      - echo "CWD=$(pwd)"
      - echo "EXPORTED=$EXPORTED"
      - echo "PLAIN=$PLAIN"
      - echo "SRC=$CODEBUILD_SRC_DIR"
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "CWD"), Printed(f->log, "SRC"));
  EXPECT_EQ(Printed(f->log, "EXPORTED"), "");
  EXPECT_EQ(Printed(f->log, "PLAIN"), "");
}

TEST_F(ConformanceTest, Rule1_UnknownPhaseNameFailsInDownloadSourceWithFileLineAndKey) {
  auto f = Run("version: 0.2\nphases:\n  biuld:\n    commands:\n      - echo typo\n");
  ASSERT_THAT(f, IsOk());
  ExpectYamlFileError(*f, {"buildspec.yml:3:", "biuld"});
  EXPECT_EQ(CountOutput(f->log, "typo"), 0);
}

TEST_F(ConformanceTest, Rule1_UnquotedColonSpaceGivesQuotingHint) {
  // §1.1: `- echo key: value` is the map {"echo key": "value"}, not a command.
  auto f = Run(BuildOnly({"echo fine", "echo key: value"}));
  ASSERT_THAT(f, IsOk());
  ExpectYamlFileError(*f, {"buildspec.yml:6:", "echo key: value", "quoted"});
  EXPECT_EQ(CountOutput(f->log, "fine"), 0);
}

TEST_F(ConformanceTest, Rule1_UndefinedVersionIsRejected) {
  // §1.1 / §1.14 item 1: only 0.1 and 0.2 are defined.
  auto f = Run("version: 0.3\nphases:\n  build:\n    commands:\n      - echo ran\n");
  ASSERT_THAT(f, IsOk());
  ExpectYamlFileError(*f, {"buildspec.yml:1:", "version", "0.3"});
  EXPECT_EQ(CountOutput(f->log, "ran"), 0);
}

TEST_F(ConformanceTest, Rule1_PhaseWithoutCommandsIsRejected) {
  // §1.6: a phase other than install that is present must have `commands`.
  auto f = Run("version: 0.2\nphases:\n  build:\n    finally:\n      - echo only-finally\n");
  ASSERT_THAT(f, IsOk());
  ExpectYamlFileError(*f, {"buildspec.yml:", "commands"});
  EXPECT_EQ(CountOutput(f->log, "only-finally"), 0);
}

TEST_F(ConformanceTest, Rule1_SetEIsNotCarriedButEndsItsOwnItem) {
  // §1.7: shell options such as `set -e` do not carry to the next command; inside one `|` item that
  // sets it, it stops the item at the first failing line.
  auto f = Run(R"yaml(version: 0.2
phases:
  install:
    commands:
      - set -e
      - false; echo after-false-in-next-command
  build:
    commands:
      - |
        set -e
        false
        echo not-after-set-e
  post_build:
    commands:
      - echo "POST_BUILD_SUCCEEDING=$CODEBUILD_BUILD_SUCCEEDING"
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::INSTALL), "SUCCEEDED");
  EXPECT_EQ(CountOutput(f->log, "after-false-in-next-command"), 1);
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(CountOutput(f->log, "not-after-set-e"), 0);
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::POST_BUILD), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "POST_BUILD_SUCCEEDING"), "0");
}

TEST_F(ConformanceTest, Rule1_ExitEndsOnlyItsOwnCommand) {
  // §1.7: each item runs as its own script, whose exit status decides; the carried state survives.
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - export KEEP=kept && mkdir -p sub && cd sub
      - exit 0
      - echo "KEEP=$KEEP"
      - echo "CWD=$(pwd)"
      - echo "SRC=$CODEBUILD_SRC_DIR"
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "KEEP"), "kept");
  EXPECT_EQ(Printed(f->log, "CWD"), Printed(f->log, "SRC") + "/sub");
}

TEST_F(ConformanceTest, Rule1_RuntimeVersionsNeverFailTheBuild) {
  // §1.6: install/commands is optional; runtime-versions on an image without runtime selection logs
  // the warning and carries on.
  auto f = Run(R"yaml(version: 0.2
phases:
  install:
    runtime-versions:
      python: 3.11
  build:
    commands:
      - echo build-ran
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::INSTALL), "SUCCEEDED");
  EXPECT_EQ(CountOutput(f->log, "build-ran"), 1);
  EXPECT_THAT(ContainerMessages(f->log),
              Contains(
                  "Skipping install of runtimes. Runtime version selection is not supported by this build image."));
}

// ===== §1.14 item 2: the environment ===============================================================

TEST_F(ConformanceTest, Rule2_VariablesAreLiteralNotExpanded) {
  // §1.4: `PATH: $PATH:/x` makes PATH the literal text `$PATH:/x` (only shell builtins used below).
  auto f = Run(R"yaml(version: 0.2
env:
  variables:
    PATH: $PATH:/x
    GREETING: "$HOME ${HOME} $(echo cmd) `echo tick`"
phases:
  build:
    commands:
      - echo "PATH=$PATH"
      - echo "GREETING=$GREETING"
      - echo "FROM_PROJECT=$FROM_PROJECT"
      - echo "FROM_OVERRIDE=$FROM_OVERRIDE"
)yaml",
               "environment:\n  variables: {FROM_PROJECT: \"$HOME/p\"}\n", {"--env", "FROM_OVERRIDE=${HOME}/o"});
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "PATH"), "$PATH:/x");
  EXPECT_EQ(Printed(f->log, "GREETING"), "$HOME ${HOME} $(echo cmd) `echo tick`");
  EXPECT_EQ(Printed(f->log, "FROM_PROJECT"), "$HOME/p");
  EXPECT_EQ(Printed(f->log, "FROM_OVERRIDE"), "${HOME}/o");
}

// Commands printing each variable as "NAME=<value upper-cased>": parameter values are masked in
// the log (§1.4), their upper-cased form is not.
std::string PrintUpperCased(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) {
    absl::StrAppend(&s, "      - echo \"", n, "=$(printf '%s' \"$", n, "\" | tr a-z A-Z)\"\n");
  }
  return s;
}

TEST_F(ConformanceTest, Rule2_PrecedenceBuildspecThenParameterStoreThenProjectThenOverride) {
  // §1.14 item 2: agent environment < buildspec variables < parameter-store values < project
  // environment < start-build override. (The agent was started with CONFORMANCE_BASE_* set.)
  ASSERT_THAT(farm_->PutParameter("/conformance/precedence", "vAlUe-from-ssm", /*secure=*/false), IsOk());
  auto f = Run(absl::StrCat(R"yaml(version: 0.2
env:
  variables:
    CONFORMANCE_BASE_SPEC: spec
    ONLY_SPEC: spec
    SPEC_PROJECT: spec
    SPEC_OVERRIDE: spec
  parameter-store:
    CONFORMANCE_BASE_SSM: /conformance/precedence
    ONLY_SSM: /conformance/precedence
    SSM_PROJECT: /conformance/precedence
    SSM_PROJECT_OVERRIDE: /conformance/precedence
phases:
  build:
    commands:
)yaml",
                            PrintUpperCased({"CONFORMANCE_BASE_ONLY", "CONFORMANCE_BASE_SPEC", "CONFORMANCE_BASE_SSM",
                                             "ONLY_SPEC", "SPEC_PROJECT", "SPEC_OVERRIDE", "ONLY_SSM", "SSM_PROJECT",
                                             "SSM_PROJECT_OVERRIDE"})),
               "environment:\n  variables: {SPEC_PROJECT: project, SSM_PROJECT: project, SSM_PROJECT_OVERRIDE: project}\n",
               {"--env", "SPEC_OVERRIDE=override", "--env", "SSM_PROJECT_OVERRIDE=override"});
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "CONFORMANCE_BASE_ONLY"), "AGENT");
  EXPECT_EQ(Printed(f->log, "CONFORMANCE_BASE_SPEC"), "SPEC");
  EXPECT_EQ(Printed(f->log, "CONFORMANCE_BASE_SSM"), "VALUE-FROM-SSM");
  EXPECT_EQ(Printed(f->log, "ONLY_SPEC"), "SPEC");
  EXPECT_EQ(Printed(f->log, "SPEC_PROJECT"), "PROJECT");
  EXPECT_EQ(Printed(f->log, "SPEC_OVERRIDE"), "OVERRIDE");
  EXPECT_EQ(Printed(f->log, "ONLY_SSM"), "VALUE-FROM-SSM");
  EXPECT_EQ(Printed(f->log, "SSM_PROJECT"), "PROJECT");
  EXPECT_EQ(Printed(f->log, "SSM_PROJECT_OVERRIDE"), "OVERRIDE");
}

TEST_F(ConformanceTest, Rule2_ParameterStoreReplacesABuildspecVariableOfTheSameName) {
  // §1.4: a parameter-store entry "replaces an existing variable of the same name"; §1.14 item 2 puts
  // the parameter-store values right after the buildspec variables.
  ASSERT_THAT(farm_->PutParameter("/conformance/precedence", "vAlUe-from-ssm", /*secure=*/false), IsOk());
  auto f = Run(absl::StrCat(R"yaml(version: 0.2
env:
  variables:
    SAME: spec
  parameter-store:
    SAME: /conformance/precedence
phases:
  build:
    commands:
)yaml",
                            PrintUpperCased({"SAME"})));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED")
      << "DOWNLOAD_SOURCE: " << FirstContext(f->build, BuildPhaseType::DOWNLOAD_SOURCE).ShortDebugString();
  EXPECT_EQ(Printed(f->log, "SAME"), "VALUE-FROM-SSM");
}

TEST_F(ConformanceTest, Rule2_CodebuildVariablesAreSetForEachBuild) {
  // §1.12, with a KILN_* twin for each.
  const std::vector<std::string> suffixes = {"BUILD_ID",       "BUILD_NUMBER",           "SRC_DIR",
                                             "SOURCE_VERSION", "RESOLVED_SOURCE_VERSION", "START_TIME",
                                             "INITIATOR",      "BUILD_SUCCEEDING",        "SOURCE_REPO_URL"};
  std::vector<std::string> commands = {"echo \"PWD=$(pwd)\"",
                                       "test -f \"$CODEBUILD_SRC_DIR/buildspec.yml\" && echo SRC_HAS_BUILDSPEC=yes"};
  for (const std::string& s : suffixes) {
    for (const char* prefix : {"CODEBUILD_", "KILN_"}) {
      commands.push_back(absl::StrCat("echo \"", prefix, s, "=$", prefix, s, "\""));
    }
  }
  auto first_sha = Push(BuildOnly(commands));
  ASSERT_THAT(first_sha, IsOk());
  // Build 1 asks for the commit, build 2 (after another push) for the branch.
  auto first = RunBuild({"--source-version", *first_sha});
  ASSERT_THAT(first, IsOk());
  commands.push_back("echo second-commit");
  auto second_sha = Push(BuildOnly(commands));
  ASSERT_THAT(second_sha, IsOk());
  auto second = RunBuild({"--source-version", "main"});
  ASSERT_THAT(second, IsOk());

  struct Expected {
    const Farm::Followed* f;
    int64_t number;
    std::string source_version;
    std::string commit;
  };
  for (const Expected& e : {Expected{&*first, 1, *first_sha, *first_sha}, Expected{&*second, 2, "main", *second_sha}}) {
    SCOPED_TRACE(absl::StrCat("build ", e.number));
    const Build& b = e.f->build;
    const std::string& log = e.f->log;
    EXPECT_EQ(BuildStatus::Value_Name(b.build_status()), "SUCCEEDED");
    EXPECT_EQ(Printed(log, "CODEBUILD_BUILD_ID"), b.id());
    EXPECT_TRUE(absl::StartsWith(b.id(), name_ + ":")) << b.id();
    EXPECT_EQ(b.build_number(), e.number);
    EXPECT_EQ(Printed(log, "CODEBUILD_BUILD_NUMBER"), absl::StrCat(e.number));
    EXPECT_EQ(Printed(log, "CODEBUILD_SRC_DIR"), Printed(log, "PWD"));
    EXPECT_EQ(Printed(log, "SRC_HAS_BUILDSPEC"), "yes");
    EXPECT_EQ(Printed(log, "CODEBUILD_SOURCE_VERSION"), e.source_version);
    EXPECT_EQ(Printed(log, "CODEBUILD_RESOLVED_SOURCE_VERSION"), e.commit);
    EXPECT_EQ(b.resolved_source_version(), e.commit);
    int64_t start_millis = 0;
    EXPECT_TRUE(absl::SimpleAtoi(Printed(log, "CODEBUILD_START_TIME"), &start_millis));
    EXPECT_EQ(start_millis, Millis(b.start_time()));  // Unix epoch milliseconds
    EXPECT_FALSE(b.initiator().empty());
    EXPECT_EQ(Printed(log, "CODEBUILD_INITIATOR"), b.initiator());
    EXPECT_EQ(Printed(log, "CODEBUILD_BUILD_SUCCEEDING"), "1");
    EXPECT_EQ(Printed(log, "CODEBUILD_SOURCE_REPO_URL"), repo_->bare_path());
    for (const std::string& s : suffixes) {
      EXPECT_EQ(Printed(log, "KILN_" + s), Printed(log, "CODEBUILD_" + s)) << s;
    }
  }
}

TEST_F(ConformanceTest, Rule2_CodebuildVariablesCannotBeSetByBuildspecProjectOrOverride) {
  // §1.4 / §1.12: names starting with CODEBUILD_ are reserved. Kiln refuses them wherever a user sets
  // variables, naming the variable.
  ASSERT_THAT(Push(BuildOnly({"echo \"NUMBER=$CODEBUILD_BUILD_NUMBER\""})), IsOk());
  auto start = Start({"--env", "CODEBUILD_BUILD_NUMBER=99"});
  ASSERT_THAT(start, IsOk());
  EXPECT_NE(start->exit_code, 0) << start->out;
  EXPECT_THAT(start->err, HasSubstr("CODEBUILD_BUILD_NUMBER"));

  EXPECT_THAT(Push(BuildOnly({"echo ok"}), "environment:\n  variables: {CODEBUILD_BUILD_NUMBER: \"99\"}\n"),
              Not(IsOk()));

  auto f = Run("version: 0.2\nenv:\n  variables:\n    CODEBUILD_BUILD_NUMBER: \"99\"\nphases:\n  build:\n"
               "    commands:\n      - echo \"NUMBER=$CODEBUILD_BUILD_NUMBER\"\n");
  ASSERT_THAT(f, IsOk());
  ExpectYamlFileError(*f, {"buildspec.yml:4:", "CODEBUILD_BUILD_NUMBER"});
}

// ===== §1.14 item 3: parameter store in DOWNLOAD_SOURCE ============================================

TEST_F(ConformanceTest, Rule3_MissingParameterFailsDownloadSourceWithDecryptedVariablesError) {
  auto f = Run(R"yaml(version: 0.2
env:
  parameter-store:
    MISSING: /conformance/does-not-exist
phases:
  install:
    commands:
      - echo install-ran
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::DOWNLOAD_SOURCE), "FAILED");
  const PhaseContext c = FirstContext(f->build, BuildPhaseType::DOWNLOAD_SOURCE);
  EXPECT_EQ(c.status_code(), "Decrypted Variables Error");
  EXPECT_EQ(c.message(), "parameter does not exist: /conformance/does-not-exist");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::INSTALL), "ABSENT");
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::FINALIZING), "ABSENT");
  EXPECT_EQ(CountOutput(f->log, "install-ran"), 0);
  EXPECT_THAT(ContainerMessages(f->log),
              IsSupersetOf({"Processing environment variables", "Decrypting parameter store environment variables",
                            "Phase context status code: Decrypted Variables Error Message: parameter does not "
                            "exist: /conformance/does-not-exist"}));
}

TEST_F(ConformanceTest, Rule3_MissingProjectParameterFailsDownloadSourceToo) {
  auto f = Run(BuildOnly({"echo build-ran"}),
               "environment:\n  parameter_store: {FROM_PROJECT: /conformance/also-missing}\n");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::DOWNLOAD_SOURCE), "FAILED");
  const PhaseContext c = FirstContext(f->build, BuildPhaseType::DOWNLOAD_SOURCE);
  EXPECT_EQ(c.status_code(), "Decrypted Variables Error");
  EXPECT_EQ(c.message(), "parameter does not exist: /conformance/also-missing");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "ABSENT");
  EXPECT_EQ(CountOutput(f->log, "build-ran"), 0);
}

// ===== §1.14 item 4: phase transitions, finally, on-failure ========================================

TEST_F(ConformanceTest, Rule4_SuccessfulBuildRunsEveryPhaseInOrder) {
  auto f = Run(R"yaml(version: 0.2
phases:
  install:
    commands:
      - echo in-install
  pre_build:
    commands:
      - echo in-pre-build
  build:
    commands:
      - echo in-build
    finally:
      - echo in-build-finally
  post_build:
    commands:
      - echo in-post-build
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(f->exit_code, 0);
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_THAT(PhaseTypes(f->build),
              ElementsAre("SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD", "BUILD",
                          "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED"));
  for (auto t : {BuildPhaseType::PROVISIONING, BuildPhaseType::DOWNLOAD_SOURCE, BuildPhaseType::INSTALL,
                 BuildPhaseType::PRE_BUILD, BuildPhaseType::BUILD, BuildPhaseType::POST_BUILD,
                 BuildPhaseType::UPLOAD_ARTIFACTS, BuildPhaseType::FINALIZING}) {
    EXPECT_EQ(PhaseStatus(f->build, t), "SUCCEEDED") << BuildPhaseType::Value_Name(t);
  }
  std::vector<std::string> markers;
  for (const std::string& l : OutputLines(f->log)) {
    if (absl::StartsWith(l, "in-")) markers.push_back(l);
  }
  EXPECT_THAT(markers, ElementsAre("in-install", "in-pre-build", "in-build", "in-build-finally", "in-post-build"));
}

// A buildspec with all four phases, each printing "<phase>-ran"; `phase` gets `body` instead.
std::string FourPhases(const std::string& phase, const std::string& body) {
  std::string s = "version: 0.2\nphases:\n";
  for (const char* p : {"install", "pre_build", "build", "post_build"}) {
    absl::StrAppend(&s, "  ", p, ":\n", p == phase ? body : absl::StrCat("    commands:\n      - echo ", p, "-ran\n"));
  }
  return s;
}

TEST_F(ConformanceTest, Rule4_InstallFailureSkipsToFinalizing) {
  auto f = Run(FourPhases("install", "    commands:\n      - echo install-ran\n      - 'false'\n"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::INSTALL), "FAILED");
  for (auto t : {BuildPhaseType::PRE_BUILD, BuildPhaseType::BUILD, BuildPhaseType::POST_BUILD,
                 BuildPhaseType::UPLOAD_ARTIFACTS}) {
    EXPECT_EQ(PhaseStatus(f->build, t), "ABSENT") << BuildPhaseType::Value_Name(t);
  }
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::FINALIZING), "ABSENT");
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::COMPLETED), "ABSENT");
  EXPECT_EQ(CountOutput(f->log, "install-ran"), 1);
  for (const char* m : {"pre_build-ran", "build-ran", "post_build-ran"}) EXPECT_EQ(CountOutput(f->log, m), 0) << m;
}

TEST_F(ConformanceTest, Rule4_PreBuildFailureSkipsToFinalizing) {
  auto f = Run(FourPhases("pre_build", "    commands:\n      - 'false'\n"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::INSTALL), "SUCCEEDED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::PRE_BUILD), "FAILED");
  for (auto t : {BuildPhaseType::BUILD, BuildPhaseType::POST_BUILD, BuildPhaseType::UPLOAD_ARTIFACTS}) {
    EXPECT_EQ(PhaseStatus(f->build, t), "ABSENT") << BuildPhaseType::Value_Name(t);
  }
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::FINALIZING), "ABSENT");
  EXPECT_EQ(CountOutput(f->log, "build-ran"), 0);
  EXPECT_EQ(CountOutput(f->log, "post_build-ran"), 0);
}

TEST_F(ConformanceTest, Rule4_BuildFailureStillRunsPostBuildWithSucceedingZero) {
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - echo "IN_BUILD=$CODEBUILD_BUILD_SUCCEEDING"
      - 'false'
  post_build:
    commands:
      - echo "IN_POST_BUILD=$CODEBUILD_BUILD_SUCCEEDING"
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::POST_BUILD), "SUCCEEDED");
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::UPLOAD_ARTIFACTS), "ABSENT");  // always attempted
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::FINALIZING), "ABSENT");
  EXPECT_EQ(Printed(f->log, "IN_BUILD"), "1");
  EXPECT_EQ(Printed(f->log, "IN_POST_BUILD"), "0");
}

TEST_F(ConformanceTest, Rule4_PostBuildFailureStillAttemptsUploadArtifacts) {
  auto f = Run(FourPhases("post_build", "    commands:\n      - 'false'\n"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "SUCCEEDED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::POST_BUILD), "FAILED");
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::UPLOAD_ARTIFACTS), "ABSENT");
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::FINALIZING), "ABSENT");
}

TEST_F(ConformanceTest, Rule4_FinallyRunsAfterAFailedCommandAndSkipsTheRest) {
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - echo first-command
      - sh -c 'exit 4'
      - echo skipped-command
    finally:
      - echo finally-one
      - echo finally-two
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(FirstContext(f->build, BuildPhaseType::BUILD).message(),
            "Error while executing command: sh -c 'exit 4'. Reason: exit status 4");
  EXPECT_EQ(CountOutput(f->log, "first-command"), 1);
  EXPECT_EQ(CountOutput(f->log, "skipped-command"), 0);
  EXPECT_EQ(CountOutput(f->log, "finally-one"), 1);
  EXPECT_EQ(CountOutput(f->log, "finally-two"), 1);
}

TEST_F(ConformanceTest, Rule4_FailedFinallyFailsThePhase) {
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - echo commands-ok
    finally:
      - sh -c 'exit 5'
      - echo after-failed-finally
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  const PhaseContext c = FirstContext(f->build, BuildPhaseType::BUILD);
  EXPECT_EQ(c.status_code(), "COMMAND_EXECUTION_ERROR");
  EXPECT_EQ(c.message(), "Error while executing command: sh -c 'exit 5'. Reason: exit status 5");
  EXPECT_EQ(CountOutput(f->log, "commands-ok"), 1);
  // §1.6 [INFER]: a failed finally command skips the rest of finally too.
  EXPECT_EQ(CountOutput(f->log, "after-failed-finally"), 0);
}

TEST_F(ConformanceTest, Rule4_OnFailureAbortSkipsPostBuild) {
  auto f = Run(FourPhases("build", "    on-failure: ABORT\n    commands:\n      - 'false'\n"));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::POST_BUILD), "ABSENT");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::UPLOAD_ARTIFACTS), "ABSENT");  // [INFER] §1.6
  EXPECT_NE(PhaseStatus(f->build, BuildPhaseType::FINALIZING), "ABSENT");
  EXPECT_EQ(CountOutput(f->log, "post_build-ran"), 0);
}

TEST_F(ConformanceTest, Rule4_OnFailureContinueRunsNextPhaseButBuildFails) {
  auto f = Run(R"yaml(version: 0.2
phases:
  pre_build:
    on-failure: CONTINUE
    commands:
      - 'false'
  build:
    commands:
      - echo "IN_BUILD=$CODEBUILD_BUILD_SUCCEEDING"
  post_build:
    commands:
      - echo post_build-ran
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::PRE_BUILD), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "SUCCEEDED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::POST_BUILD), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "IN_BUILD"), "0");
  EXPECT_EQ(CountOutput(f->log, "post_build-ran"), 1);
}

TEST_F(ConformanceTest, Rule4_OnFailureRetryReRunsThePhase) {
  // A counter file makes the first run fail and the second pass.
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    on-failure: RETRY-2
    commands:
      - echo run >> "$CODEBUILD_SRC_DIR/.runs"
      - echo "RUN=$(wc -l < "$CODEBUILD_SRC_DIR/.runs")"
      - test "$(wc -l < "$CODEBUILD_SRC_DIR/.runs")" -ge 2
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "SUCCEEDED");
  EXPECT_EQ(CountOutput(f->log, "RUN=1"), 1);
  EXPECT_EQ(CountOutput(f->log, "RUN=2"), 1);
  EXPECT_EQ(CountOutput(f->log, "RUN=3"), 0);
}

TEST_F(ConformanceTest, Rule4_OnFailureRetryStopsAfterItsCount) {
  // RETRY-<count>: at most <count> retries, so 1 + 2 runs here.
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    on-failure: RETRY-2
    commands:
      - echo attempt
      - 'false'
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(CountOutput(f->log, "attempt"), 3);
}

TEST_F(ConformanceTest, Rule4_OnFailureRetryRegexRetriesOnlyMatchingErrors) {
  // RETRY-<count>-<regex>: the error message "... Reason: exit status 4" does not match.
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    on-failure: "RETRY-2-exit status 7"
    commands:
      - echo attempt
      - sh -c 'exit 4'
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(CountOutput(f->log, "attempt"), 1);
}

TEST_F(ConformanceTest, Rule4_MultiLineCommandJudgedByItsLastLine) {
  // §1.7: only the exit status of a `|` item's last line counts.
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - |
        false
        echo survived-a-failed-first-line
      - |
        echo second-item
        false
      - echo never-reached
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::BUILD), "FAILED");
  EXPECT_EQ(CountOutput(f->log, "survived-a-failed-first-line"), 1);
  EXPECT_EQ(CountOutput(f->log, "second-item"), 1);
  EXPECT_EQ(CountOutput(f->log, "never-reached"), 0);
  const PhaseContext c = FirstContext(f->build, BuildPhaseType::BUILD);
  EXPECT_EQ(c.status_code(), "COMMAND_EXECUTION_ERROR");
  EXPECT_THAT(c.message(), AllOf(HasSubstr("echo second-item"), HasSubstr("Reason: exit status 1")));
}

TEST_F(ConformanceTest, Rule4_CommandContextMessage) {
  // §1.7: the context and the log lines CodeBuild writes for a failed command.
  auto f = Run(BuildOnly({"sh -c 'exit 3'"}));
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  const auto* build = FindPhase(f->build, BuildPhaseType::BUILD);
  ASSERT_NE(build, nullptr);
  EXPECT_EQ(BuildStatus::Value_Name(build->phase_status()), "FAILED");
  ASSERT_EQ(build->contexts_size(), 1);
  EXPECT_EQ(build->contexts(0).status_code(), "COMMAND_EXECUTION_ERROR");
  EXPECT_EQ(build->contexts(0).message(), "Error while executing command: sh -c 'exit 3'. Reason: exit status 3");
  EXPECT_THAT(ContainerMessages(f->log),
              IsSupersetOf({"Entering phase BUILD", "Running command sh -c 'exit 3'",
                            "Command did not exit successfully sh -c 'exit 3' exit status 3",
                            "Phase complete: BUILD State: FAILED",
                            "Phase context status code: COMMAND_EXECUTION_ERROR Message: Error while executing "
                            "command: sh -c 'exit 3'. Reason: exit status 3"}));
}

// ===== §1.14 item 5: masking =======================================================================

TEST_F(ConformanceTest, Rule5_ParameterStoreValuesAreMaskedInTheLog) {
  // Secure parameters from the buildspec and from the project, printed whole, to stderr, in two writes
  // (split across output chunks) and, for a multi-line value, across output lines.
  ASSERT_THAT(farm_->PutParameter("/conformance/mask/secure", "s3cr3t-Value-ab12", /*secure=*/true), IsOk());
  ASSERT_THAT(farm_->PutParameter("/conformance/mask/project", "pr0ject-Secret-cd34", /*secure=*/true), IsOk());
  ASSERT_THAT(farm_->PutParameter("/conformance/mask/multiline", "first-Line-ef56\nsecond-Line-gh78", true), IsOk());
  auto f = Run(R"yaml(version: 0.2
env:
  parameter-store:
    SECURE: /conformance/mask/secure
    MULTI: /conformance/mask/multiline
phases:
  build:
    commands:
      - echo "WHOLE=$SECURE"
      - echo "STDERR=$SECURE" >&2
      - echo "PROJECT=$PROJECT_SECRET"
      - printf 'SPLIT=%s' "$(printf '%s' "$SECURE" | head -c 6)"; sleep 0.2; printf '%s\n' "$(printf '%s' "$SECURE" | tail -c +7)"
      - printf 'MULTI=%s\n' "$MULTI"
      - echo "LENGTH=${#SECURE}"
)yaml",
               "environment:\n  parameter_store: {PROJECT_SECRET: /conformance/mask/project}\n");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "LENGTH"), "17");  // the value really was there
  EXPECT_EQ(Printed(f->log, "WHOLE"), "***");
  EXPECT_EQ(Printed(f->log, "STDERR"), "***");
  EXPECT_EQ(Printed(f->log, "PROJECT"), "***");
  EXPECT_EQ(Printed(f->log, "SPLIT"), "***");
  EXPECT_EQ(Printed(f->log, "MULTI"), "***");
  for (const char* piece : {"s3cr3t", "Value-ab12", "pr0ject-Secret", "first-Line", "second-Line"}) {
    EXPECT_THAT(f->log, Not(HasSubstr(piece)));
  }
}

TEST_F(ConformanceTest, Rule5_PlainStringParametersAreMaskedToo) {
  // §1.4: values that came from Parameter Store are hidden, whatever the parameter's type.
  ASSERT_THAT(farm_->PutParameter("/conformance/mask/plain", "plain-Param-ij90", /*secure=*/false), IsOk());
  auto f = Run(R"yaml(version: 0.2
env:
  parameter-store:
    PLAIN: /conformance/mask/plain
phases:
  build:
    commands:
      - echo "PLAIN=$PLAIN"
      - echo "LENGTH=${#PLAIN}"
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "LENGTH"), "16");
  EXPECT_EQ(Printed(f->log, "PLAIN"), "***");
  EXPECT_THAT(f->log, Not(HasSubstr("plain-Param-ij90")));
}

// ===== §1.14 item 6: artifacts, relative to CODEBUILD_SRC_DIR / base-directory (§1.10) ===========

// Lists the members of the build's artifact `name` ("" = primary), fetched with `kiln artifact get`.
std::string ArtifactMembers(Farm* farm, const std::string& dir, const std::string& build_id,
                            const std::string& name) {
  const std::string zip = absl::StrCat(dir, "/", absl::StrReplaceAll(build_id, {{":", "_"}}), "-",
                                       name.empty() ? "primary" : name, ".zip");
  std::vector<std::string> args = {"artifact", "get", build_id, "-o", zip};
  if (!name.empty()) args.insert(args.end(), {"--name", name});
  auto r = farm->Kiln(args);
  if (!r.ok() || r->exit_code != 0) return absl::StrCat("(artifact get failed: ", r.ok() ? r->err : "", ")");
  std::string out;
  FILE* p = popen(("unzip -Z1 " + zip).c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  pclose(p);
  return out;
}

TEST_F(ConformanceTest, Rule6_ArtifactPathsAreRelativeToTheSourceDirNotTheCwd) {
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - mkdir -p out/sub elsewhere && echo a > out/a.txt && echo b > out/sub/b.txt
      - cd elsewhere && echo decoy > a.txt
artifacts:
  files:
    - out/**/*
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::UPLOAD_ARTIFACTS), "SUCCEEDED");
  EXPECT_EQ(ArtifactMembers(farm_, *dir_, f->build.id(), ""), "out/a.txt\nout/sub/b.txt\n");
}

TEST_F(ConformanceTest, Rule6_BaseDirectoryGlobAndDiscardPathsFollowTheWorkedExample) {
  // §1.10's worked example: files ['**/*'] under base-directory 'my-build*' with discard-paths.
  auto f = Run(R"yaml(version: 0.2
phases:
  build:
    commands:
      - mkdir -p my-build-1 my-build-2/my-subdirectory
      - echo 1 > my-build-1/my-file-1.txt && echo 2 > my-build-2/my-file-2.txt
      - echo 3 > my-build-2/my-subdirectory/my-file-3.txt
artifacts:
  files: ['**/*']
  base-directory: 'my-build*'
  discard-paths: yes
  secondary-artifacts:
    sub:
      files: ['*/my-file-3.txt']
      base-directory: my-build-2
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(ArtifactMembers(farm_, *dir_, f->build.id(), ""),
            "my-file-1.txt\nmy-file-2.txt\nmy-file-3.txt\n");
  EXPECT_EQ(ArtifactMembers(farm_, *dir_, f->build.id(), "sub"), "my-subdirectory/my-file-3.txt\n");
}

TEST_F(ConformanceTest, Rule6_ZeroMatchingArtifactPathsFailsTheBuild) {
  auto f = Run(BuildOnly({"echo built"}) + "artifacts:\n  files:\n    - dist/*.whl\n");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "FAILED");
  EXPECT_EQ(PhaseStatus(f->build, BuildPhaseType::UPLOAD_ARTIFACTS), "FAILED");
  const PhaseContext c = FirstContext(f->build, BuildPhaseType::UPLOAD_ARTIFACTS);
  EXPECT_EQ(c.status_code(), "CLIENT_ERROR");
  EXPECT_THAT(c.message(), HasSubstr("no matching artifact paths found"));
}

// ===== §1.14 item 7: exported variables ============================================================

TEST_F(ConformanceTest, Rule7_ExportedVariablesFrozenAtEndOfPostBuild) {
  auto f = Run(R"yaml(version: 0.2
env:
  variables:
    FROM_SPEC: spec-value
  exported-variables:
    - CHANGED
    - UNSET_LATER
    - NEVER_SET
    - FROM_SPEC
    - FROM_BUILD
phases:
  install:
    commands:
      - export CHANGED=install-value
      - export UNSET_LATER=present
  build:
    commands:
      - export FROM_BUILD=build-value
  post_build:
    commands:
      - export CHANGED=post-build-value
      - unset UNSET_LATER
)yaml");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_THAT(f->build.exported_variables(),
              UnorderedElementsAre(Pair("CHANGED", "post-build-value"), Pair("FROM_SPEC", "spec-value"),
                                   Pair("FROM_BUILD", "build-value")));
}

TEST_F(ConformanceTest, Rule7_ProjectParameterStoreVariablesAreNotExported) {
  // §1.4: Parameter Store values defined in the project cannot be exported.
  ASSERT_THAT(farm_->PutParameter("/conformance/export/project", "never-Exported-kl12", /*secure=*/false), IsOk());
  auto f = Run(R"yaml(version: 0.2
env:
  exported-variables:
    - FROM_PROJECT_PARAM
    - FROM_PROJECT_PLAIN
phases:
  build:
    commands:
      - echo "LENGTH=${#FROM_PROJECT_PARAM}"
)yaml",
               "environment:\n  variables: {FROM_PROJECT_PLAIN: plain}\n"
               "  parameter_store: {FROM_PROJECT_PARAM: /conformance/export/project}\n");
  ASSERT_THAT(f, IsOk());
  EXPECT_EQ(BuildStatus::Value_Name(f->build.build_status()), "SUCCEEDED");
  EXPECT_EQ(Printed(f->log, "LENGTH"), "19");
  EXPECT_THAT(f->build.exported_variables(), UnorderedElementsAre(Pair("FROM_PROJECT_PLAIN", "plain")));
}

}  // namespace
}  // namespace kiln::e2e
