#include "agent/executor/build_executor.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "agent/executor/process_tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/test_repo.h"

namespace kiln::agent {
namespace {

using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;
using kiln::v1::PhaseResult;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto INSTALL = BuildPhaseType::INSTALL;
constexpr auto PRE_BUILD = BuildPhaseType::PRE_BUILD;
constexpr auto BUILD = BuildPhaseType::BUILD;
constexpr auto POST_BUILD = BuildPhaseType::POST_BUILD;
constexpr auto FINALIZING = BuildPhaseType::FINALIZING;

// True if process `pid` is gone or a zombie.
bool ProcessDead(int pid) {
  const std::string stat = testing::ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  return stat.empty() || stat.find(") Z ") != std::string::npos;
}

class BuildExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(BecomeChildSubreaper().ok());
    job_.set_build_id("proj:0f8fad5b-d9cb-469f-a165-70867728950e");
    job_.set_build_number(7);
    job_.set_project_name("proj");
    job_.mutable_source()->set_type("git");
    job_.mutable_source()->set_location(repo_.dir());
    job_.mutable_source()->set_branch("main");
    job_.set_initiator("kiln-cli");
    job_.set_start_time_unix_millis(1700000000123);
    options_.work_dir = dir_.path() + "/work";
    options_.output = [this](std::string_view bytes) {
      absl::MutexLock lock(&mu_);
      EXPECT_LE(bytes.size(), 64u * 1024);
      output_.append(bytes);
      if (!wait_for_.empty() && output_.find(wait_for_) != std::string::npos &&
          !seen_.HasBeenNotified()) {
        seen_.Notify();
      }
    };
  }

  // Commits `buildspec` (if not empty) as buildspec.yml, creates the executor and runs PROVISIONING
  // and DOWNLOAD_SOURCE; returns the DOWNLOAD_SOURCE result.
  PhaseResult Prepare(const std::string& buildspec) {
    if (!buildspec.empty()) repo_.Write("buildspec.yml", buildspec);
    commit_ = repo_.Commit("buildspec");
    auto executor = BuildExecutor::Create(job_, options_);
    EXPECT_TRUE(executor.ok()) << executor.status();
    if (!executor.ok()) return PhaseResult();
    executor_ = std::move(*executor);
    EXPECT_EQ(Run(BuildPhaseType::PROVISIONING).status(), BuildStatus::SUCCEEDED);
    return Run(BuildPhaseType::DOWNLOAD_SOURCE);
  }

  // Prepare() that must succeed.
  void PrepareOk(const std::string& buildspec) {
    const PhaseResult r = Prepare(buildspec);
    ASSERT_EQ(r.status(), BuildStatus::SUCCEEDED) << r.DebugString() << Output();
  }

  PhaseResult Run(BuildPhaseType::Value phase, bool succeeding = true) {
    return executor_->RunPhase(phase, succeeding);
  }

  std::string Output() {
    absl::MutexLock lock(&mu_);
    return output_;
  }

  // The output without Kiln's own "[Container] ..." lines.
  std::string UserOutput() {
    std::string out;
    for (absl::string_view line : absl::StrSplit(Output(), '\n')) {
      if (!absl::StartsWith(line, "[Container] ") && !line.empty())
        absl::StrAppend(&out, line, "\n");
    }
    return out;
  }

  testing::TempDir dir_;
  testing::TestRepo repo_{dir_.path() + "/repo"};
  kiln::v1::BuildJob job_;
  BuildExecutor::Options options_;
  std::string commit_;
  std::unique_ptr<BuildExecutor> executor_;
  absl::Mutex mu_;
  std::string output_ ABSL_GUARDED_BY(mu_);
  std::string wait_for_;  // set before the phase starts
  absl::Notification seen_;
};

TEST_F(BuildExecutorTest, CdPersistsAcrossCommandsAndPhases) {
  PrepareOk(R"yaml(version: 0.2
phases:
  install:
    commands:
      - mkdir -p a/b
      - cd a
  pre_build:
    commands:
      - cd b
  build:
    commands:
      - echo "cwd=$(pwd)"
)yaml");
  for (auto phase : {INSTALL, PRE_BUILD, BUILD})
    EXPECT_EQ(Run(phase).status(), BuildStatus::SUCCEEDED);
  EXPECT_THAT(Output(), HasSubstr("cwd=" + executor_->source_dir() + "/a/b\n"));
  EXPECT_THAT(Output(), HasSubstr("Moving to directory " + executor_->source_dir() + "\n"));
}

TEST_F(BuildExecutorTest, ExportsAndPlainAssignmentsPersist) {
  PrepareOk(R"yaml(version: 0.2
phases:
  pre_build:
    commands:
      - export FOO=bar
      - PLAIN=qux
  build:
    commands:
      - echo "$FOO-$PLAIN"
)yaml");
  EXPECT_EQ(Run(PRE_BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "bar-qux\n");
}

TEST_F(BuildExecutorTest, ExitFailsTheCommandAndLaterPhasesKeepCwdAndEnvironment) {
  PrepareOk(R"yaml(version: 0.2
phases:
  pre_build:
    commands:
      - mkdir d && cd d
      - export KEPT=yes
  build:
    commands:
      - exit 3
      - echo skipped
  post_build:
    commands:
      - echo "pwd=$PWD kept=$KEPT succeeding=$CODEBUILD_BUILD_SUCCEEDING"
)yaml");
  EXPECT_EQ(Run(PRE_BUILD).status(), BuildStatus::SUCCEEDED);
  const PhaseResult build = Run(BUILD);
  EXPECT_EQ(build.status(), BuildStatus::FAILED);
  ASSERT_EQ(build.contexts_size(), 1);
  EXPECT_EQ(build.contexts(0).status_code(), "COMMAND_EXECUTION_ERROR");
  EXPECT_EQ(build.contexts(0).message(),
            "Error while executing command: exit 3. Reason: exit status 3");
  EXPECT_FALSE(build.skip_to_finalizing());
  EXPECT_EQ(Run(POST_BUILD, /*succeeding=*/false).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "pwd=" + executor_->source_dir() + "/d kept=yes succeeding=0\n");
  EXPECT_THAT(
      Output(),
      ContainsRegex("\\[Container\\] [0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\."
                    "[0-9]{6} Command did not exit successfully exit 3 exit status 3\n"));
  EXPECT_THAT(Output(), HasSubstr("Phase complete: BUILD State: FAILED\n"));
  EXPECT_THAT(Output(),
              HasSubstr("Phase context status code: COMMAND_EXECUTION_ERROR Message: Error while "
                        "executing command: exit 3. Reason: exit status 3\n"));
}

TEST_F(BuildExecutorTest, SetEDoesNotCarryButKillsItsOwnCommand) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - set -e -o pipefail
      - false; echo survived
  post_build:
    commands:
      - set -e; false; echo never
      - echo after
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  const PhaseResult post = Run(POST_BUILD);
  EXPECT_EQ(post.status(), BuildStatus::FAILED);
  EXPECT_EQ(post.contexts(0).message(),
            "Error while executing command: set -e; false; echo never. Reason: exit status 1");
  EXPECT_EQ(UserOutput(), "survived\n");
}

TEST_F(BuildExecutorTest, MultiLineCommandIsJudgedByItsLastLine) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - |
        false
        echo last-line-wins
  post_build:
    commands:
      - |
        true
        false
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::FAILED);
}

TEST_F(BuildExecutorTest, FailingCommandSkipsTheRestAndFinallyStillRuns) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - echo one
      - sh -c 'exit 4'
      - echo two
    finally:
      - echo cleanup
)yaml");
  const PhaseResult r = Run(BUILD);
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).message(),
            "Error while executing command: sh -c 'exit 4'. Reason: exit status 4");
  EXPECT_EQ(UserOutput(), "one\ncleanup\n");
  EXPECT_THAT(Output(), HasSubstr("Running command echo cleanup\n"));
}

TEST_F(BuildExecutorTest, FailingFinallyFailsThePhase) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - echo ok
    finally:
      - "false"
      - echo not-run
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::FAILED);
  EXPECT_EQ(UserOutput(), "ok\n");
}

TEST_F(BuildExecutorTest, StdinReadingCommandsDoNotHangOrEatCommands) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - cat
      - read line || echo "read got EOF"
      - echo done
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "read got EOF\ndone\n");
}

TEST_F(BuildExecutorTest, OutputIsByteExactAndInOrder) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - printf 'no-newline'
      - printf 'a\tb\n'; printf 'err\n' >&2; printf 'c'
      - head -c 200000 /dev/zero | tr '\0' 'z'
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  const std::string out = Output();
  EXPECT_THAT(out,
              ContainsRegex("Running command printf 'no-newline'\nno-newline\n\\[Container\\] "));
  EXPECT_THAT(out, ContainsRegex("\na\tb\nerr\nc\n\\[Container\\] "));
  EXPECT_THAT(out, HasSubstr("\n" + std::string(200000, 'z') + "\n[Container] "));
}

TEST_F(BuildExecutorTest, ShellKilledBySignalFailsCommandAndNextCommandRuns) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - export A=1; kill -9 $$
  post_build:
    commands:
      - echo "A=${A-unset}"
)yaml");
  const PhaseResult r = Run(BUILD);
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("exit status 137"));
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "A=unset\n");  // the state saved before the killed command
}

TEST_F(BuildExecutorTest, TimeoutKillsTheProcessTreePromptly) {
  job_.set_timeout_millis(1500);
  const absl::Time created = absl::Now();
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - sleep 1000 & echo $! > sleep.pid; wait
)yaml");
  const PhaseResult r = Run(BUILD);
  EXPECT_GE(absl::Now() - created, absl::Milliseconds(1500));
  EXPECT_LT(absl::Now() - created, absl::Milliseconds(1500 + 1000));  // killed within ~1 s
  EXPECT_EQ(r.status(), BuildStatus::TIMED_OUT);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "BUILD_TIMED_OUT");
  EXPECT_EQ(r.contexts(0).message(), "Build has timed out. ");
  EXPECT_THAT(Output(), HasSubstr("Phase complete: BUILD State: TIMED_OUT\n"));
  EXPECT_TRUE(
      ProcessDead(std::stoi(testing::ReadFileOrEmpty(executor_->source_dir() + "/sleep.pid"))));
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::TIMED_OUT);
  EXPECT_EQ(Run(FINALIZING).status(), BuildStatus::SUCCEEDED);
}

TEST_F(BuildExecutorTest, StopKillsTheRunningPhasePromptly) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - sleep 1000 & echo $! > sleep.pid; echo started; wait
)yaml");
  wait_for_ = "started\n";
  PhaseResult r;
  std::thread runner([&] { r = Run(BUILD); });
  seen_.WaitForNotification();
  const absl::Time start = absl::Now();
  executor_->Stop(BuildStatus::STOPPED, "Stopped by user alice");
  runner.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(r.status(), BuildStatus::STOPPED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "BUILD_STOPPED");
  EXPECT_EQ(r.contexts(0).message(), "Stopped by user alice");
  EXPECT_TRUE(
      ProcessDead(std::stoi(testing::ReadFileOrEmpty(executor_->source_dir() + "/sleep.pid"))));
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::STOPPED);
}

TEST_F(BuildExecutorTest, OrphansOfTheBuildAreReaped) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - mkfifo go && (cat go & echo $! > orphan.pid)
      - P=$(cat orphan.pid); echo > go; while [ -e /proc/$P ] && [ "$(cut -d' ' -f3 /proc/$P/stat)" != Z ]; do :; done
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  const std::string pid = testing::ReadFileOrEmpty(executor_->source_dir() + "/orphan.pid");
  ASSERT_FALSE(pid.empty());
  EXPECT_FALSE(std::filesystem::exists("/proc/" + pid.substr(0, pid.size() - 1)));
}

TEST_F(BuildExecutorTest, StopBeforeAPhaseMakesItReturnTheStopStatus) {
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands:\n      - touch ran\n");
  executor_->Stop(BuildStatus::FAULT, "agent shutting down");
  const PhaseResult r = Run(BUILD);
  EXPECT_EQ(r.status(), BuildStatus::FAULT);
  EXPECT_EQ(r.contexts(0).message(), "agent shutting down");
  EXPECT_FALSE(std::filesystem::exists(executor_->source_dir() + "/ran"));
}

TEST_F(BuildExecutorTest, ParameterValuesAreSetAndMaskedAcrossChunks) {
  repo_.Write("secret.txt", "pre-s3cr3t-value-post\n");
  std::vector<std::string> asked;
  int calls = 0;
  options_.resolve_parameters = [&](const std::vector<std::string>& names)
      -> absl::StatusOr<kiln::v1::GetBuildParametersResponse> {
    ++calls;
    asked = names;
    kiln::v1::GetBuildParametersResponse resp;
    auto* p = resp.add_parameters();
    p->set_name("/ci/token");
    p->set_value("s3cr3t-value");
    p->set_mask(true);
    p = resp.add_parameters();
    p->set_name("/ci/region");
    p->set_value("eu-west-1");
    return resp;
  };
  auto* v = job_.add_environment_variables();
  v->set_name("REGION");
  v->set_value("/ci/region");
  v->set_type(kiln::v1::EnvironmentVariable::PARAMETER_STORE);
  PrepareOk(R"yaml(version: 0.2
env:
  parameter-store:
    TOKEN: /ci/token
phases:
  build:
    commands:
      - printf 's3cr3t-'; printf 'value\n'
      - echo "token=$TOKEN region=$REGION"
      - cat secret.txt
      - echo $TOKEN | tr -d '\n' | head -c 6
)yaml");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(asked, (std::vector<std::string>{"/ci/token", "/ci/region"}));
  EXPECT_THAT(Output(), HasSubstr("Decrypting parameter store environment variables\n"));
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_THAT(Output(), Not(HasSubstr("s3cr3t-value")));
  // The log line that echoes the command is masked too; a partial value at a command's end is not.
  EXPECT_EQ(UserOutput(), "***\ntoken=*** region=eu-west-1\npre-***-post\ns3cr3t\n");
}

TEST_F(BuildExecutorTest, MissingParameterFailsDownloadSourceWithCodeBuildsContext) {
  options_.resolve_parameters = [](const std::vector<std::string>& names)
      -> absl::StatusOr<kiln::v1::GetBuildParametersResponse> {
    kiln::v1::GetBuildParametersResponse resp;
    resp.add_missing("/ci/missing");
    return resp;
  };
  const PhaseResult r = Prepare(R"yaml(version: 0.2
env:
  parameter-store:
    X: /ci/missing
phases:
  build:
    commands:
      - echo hi
)yaml");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "Decrypted Variables Error");
  EXPECT_EQ(r.contexts(0).message(), "parameter does not exist: /ci/missing");
  const std::string out = Output();
  EXPECT_THAT(out, ContainsRegex(
                       "Processing environment variables\n.*Decrypting parameter store environment "
                       "variables\n"));
  EXPECT_THAT(out, ContainsRegex(
                       "\\.[0-9]{6} Phase context status code: Decrypted Variables Error Message: "
                       "parameter does not exist: /ci/missing\n"));
}

TEST_F(BuildExecutorTest, ResolverErrorIsAFault) {
  options_.resolve_parameters =
      [](const std::vector<std::string>&) -> absl::StatusOr<kiln::v1::GetBuildParametersResponse> {
    return absl::UnavailableError("down");
  };
  const PhaseResult r = Prepare(
      "version: 0.2\nenv:\n  parameter-store:\n    X: /p\nphases:\n  build:\n    commands:\n      "
      "- echo\n");
  EXPECT_EQ(r.status(), BuildStatus::FAULT);
  EXPECT_EQ(r.contexts(0).status_code(), "Decrypted Variables Error");
}

TEST_F(BuildExecutorTest, ChecksOutTheRequestedOlderCommit) {
  repo_.Write("buildspec.yml",
              "version: 0.2\nphases:\n  build:\n    commands:\n      - cat version.txt\n");
  repo_.Write("version.txt", "old\n");
  const std::string old_commit = repo_.Commit("old");
  repo_.Write("version.txt", "new\n");
  job_.set_source_version(old_commit);
  const PhaseResult r = Prepare("");  // commits "new" on main
  ASSERT_EQ(r.status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_NE(commit_, old_commit);
  EXPECT_EQ(r.resolved_source_version(), old_commit);
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "old\n");
}

TEST_F(BuildExecutorTest, ShortCommitIdResolvesToTheFullId) {
  repo_.Write("buildspec.yml",
              "version: 0.2\nphases:\n  build:\n    commands:\n      - cat v.txt\n");
  repo_.Write("v.txt", "first\n");
  const std::string first = repo_.Commit("first");
  repo_.Write("v.txt", "second\n");
  job_.set_source_version(first.substr(0, 8));
  const PhaseResult r = Prepare("");
  ASSERT_EQ(r.status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(r.resolved_source_version(), first);
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "first\n");
}

TEST_F(BuildExecutorTest, UnknownSourceVersionFailsDownloadSource) {
  job_.set_source_version("no-such-branch");
  const PhaseResult r = Prepare("version: 0.2\nphases:\n  build:\n    commands:\n      - echo\n");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  EXPECT_EQ(r.contexts(0).status_code(), "CLIENT_ERROR");
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("no-such-branch"));
}

TEST_F(BuildExecutorTest, ProvidesCodeBuildAndKilnVariables) {
  auto* w = job_.mutable_webhook();
  w->set_event("PUSH");
  w->set_head_ref("refs/heads/main");
  w->set_trigger("branch/main");
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - env | grep -E '^(CODEBUILD|KILN)_' | sort
)yaml");
  EXPECT_EQ(Run(BUILD, /*succeeding=*/false).status(), BuildStatus::SUCCEEDED);
  const std::string out = UserOutput();
  for (const std::string prefix : {"CODEBUILD_", "KILN_"}) {
    EXPECT_THAT(out, HasSubstr(prefix + "BUILD_ID=proj:0f8fad5b-d9cb-469f-a165-70867728950e\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "BUILD_NUMBER=7\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "SRC_DIR=" + executor_->source_dir() + "\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "SOURCE_VERSION=main\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "RESOLVED_SOURCE_VERSION=" + commit_ + "\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "START_TIME=1700000000123\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "INITIATOR=kiln-cli\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "SOURCE_REPO_URL=" + repo_.dir() + "\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "BUILD_SUCCEEDING=0\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "WEBHOOK_EVENT=PUSH\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "WEBHOOK_HEAD_REF=refs/heads/main\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "WEBHOOK_TRIGGER=branch/main\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "BUILD_ARN=arn:kiln:codebuild:local:000000000000:build/"
                                        "proj:0f8fad5b-d9cb-469f-a165-70867728950e\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "BUILD_IMAGE=kiln/host\n"));
    EXPECT_THAT(out, HasSubstr(prefix + "LOG_PATH=proj:0f8fad5b-d9cb-469f-a165-70867728950e\n"));
  }
  EXPECT_THAT(out, Not(HasSubstr("WEBHOOK_BASE_REF")));
}

TEST_F(BuildExecutorTest, EnvironmentLayersFollowCodeBuildPrecedence) {
  setenv("KILN_TEST_AGENT_ONLY", "agent", 1);
  setenv("KILN_TEST_LAYERED", "agent", 1);
  auto* v = job_.add_environment_variables();
  v->set_name("FROM_JOB");
  v->set_value("job $HOME");
  auto* o = job_.add_environment_variables();
  o->set_name("OVERRIDDEN");
  o->set_value("by-job");
  PrepareOk(R"yaml(version: 0.2
env:
  variables:
    KILN_TEST_LAYERED: buildspec
    OVERRIDDEN: by-buildspec
    LITERAL: "$PATH:/x"
    KILN_BUILD_ID: user-value
phases:
  build:
    commands:
      - echo "$KILN_TEST_AGENT_ONLY|$KILN_TEST_LAYERED|$OVERRIDDEN|$FROM_JOB|$LITERAL|$KILN_BUILD_ID"
)yaml");
  unsetenv("KILN_TEST_AGENT_ONLY");
  unsetenv("KILN_TEST_LAYERED");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "agent|buildspec|by-job|job $HOME|$PATH:/x|" + job_.build_id() + "\n");
}

TEST_F(BuildExecutorTest, AbortSkipsToFinalizingAndContinueDoesNot) {
  PrepareOk(R"yaml(version: 0.2
phases:
  pre_build:
    on-failure: CONTINUE
    commands:
      - "false"
  build:
    on-failure: ABORT
    commands:
      - "false"
)yaml");
  const PhaseResult pre = Run(PRE_BUILD);
  EXPECT_EQ(pre.status(), BuildStatus::FAILED);
  EXPECT_FALSE(pre.skip_to_finalizing());
  const PhaseResult build = Run(BUILD);
  EXPECT_EQ(build.status(), BuildStatus::FAILED);
  EXPECT_TRUE(build.skip_to_finalizing());
}

TEST_F(BuildExecutorTest, RetryRerunsThePhaseWhileTheErrorMatches) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    on-failure: RETRY-3-exit status 9
    commands:
      - echo run >> runs.txt
      - test "$(wc -l < runs.txt)" -ge 3 || exit 9
  post_build:
    on-failure: RETRY-5-exit status 9
    commands:
      - echo run >> post.txt; exit 1
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(testing::ReadFileOrEmpty(executor_->source_dir() + "/runs.txt"), "run\nrun\nrun\n");
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::FAILED);  // exit status 1 does not match
  EXPECT_EQ(testing::ReadFileOrEmpty(executor_->source_dir() + "/post.txt"), "run\n");
}

TEST_F(BuildExecutorTest, RetryGivesUpAfterTheCount) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    on-failure: RETRY-1
    commands:
      - echo run >> runs.txt; false
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::FAILED);
  EXPECT_EQ(testing::ReadFileOrEmpty(executor_->source_dir() + "/runs.txt"), "run\nrun\n");
}

TEST_F(BuildExecutorTest, InstallLogsRuntimeSelection) {
  PrepareOk(
      "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.11\n    "
      "commands:\n      - echo i\n");
  EXPECT_EQ(Run(INSTALL).status(), BuildStatus::SUCCEEDED);
  EXPECT_THAT(
      Output(),
      HasSubstr("Skipping install of runtimes. Runtime version selection is not supported by "
                "this build image.\n"));
}

TEST_F(BuildExecutorTest, AbsentPhasesSucceedWithoutCommands) {
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands:\n      - echo b\n");
  const PhaseResult install = Run(INSTALL);
  EXPECT_EQ(install.status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(install.contexts_size(), 0);
  EXPECT_THAT(Output(), HasSubstr("No runtime version selected in buildspec.\n"));
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_THAT(Output(), HasSubstr("Phase complete: POST_BUILD State: SUCCEEDED\n"));
  EXPECT_THAT(Output(), Not(HasSubstr("Running command")));
}

TEST_F(BuildExecutorTest, ExportedVariablesAreFrozenAtTheEndOfPostBuild) {
  PrepareOk(R"yaml(version: 0.2
env:
  exported-variables: [STAGE]
phases:
  post_build:
    commands:
      - STAGE=post_build
)yaml");
  const PhaseResult post = Run(POST_BUILD);
  EXPECT_EQ(post.exported_variables().at("STAGE"), "post_build");
  EXPECT_EQ(Run(FINALIZING).exported_variables_size(), 0);  // not read again
}

// A build that never reached POST_BUILD (install failed) exports what its shell holds.
TEST_F(BuildExecutorTest, FinalizingCapturesExportedVariables) {
  PrepareOk(R"yaml(version: 0.2
env:
  exported-variables:
    - IMAGE_TAG
    - PLAIN
    - NEVER_SET
phases:
  build:
    commands:
      - export IMAGE_TAG="v1 'quoted'"
      - PLAIN=$(echo plain)
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(Run(BuildPhaseType::UPLOAD_ARTIFACTS).status(), BuildStatus::SUCCEEDED);
  const PhaseResult fin = Run(FINALIZING);
  EXPECT_EQ(fin.status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(fin.exported_variables().size(), 2u);
  EXPECT_EQ(fin.exported_variables().at("IMAGE_TAG"), "v1 'quoted'");
  EXPECT_EQ(fin.exported_variables().at("PLAIN"), "plain");
}

TEST_F(BuildExecutorTest, Version01RunsEachCommandInAFreshShell) {
  PrepareOk(R"yaml(version: 0.1
phases:
  build:
    commands:
      - cd / && export GONE=1
      - echo "$PWD ${GONE-unset} $CODEBUILD_BUILD_SUCCEEDING"
)yaml");
  EXPECT_EQ(Run(BUILD, false).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), executor_->source_dir() + " unset 0\n");
}

TEST_F(BuildExecutorTest, BinShKeepsStateAcrossCommandsAndARestart) {
  PrepareOk(R"yaml(version: 0.2
env:
  shell: /bin/sh
phases:
  build:
    commands:
      - cd /
      - export KEEP="a 'b'"
      - exit 3
  post_build:
    commands:
      - echo "${BASH_VERSION:-no-bash} $PWD $KEEP"
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::FAILED);
  EXPECT_EQ(Run(POST_BUILD).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(UserOutput(), "no-bash / a 'b'\n");
}

TEST_F(BuildExecutorTest, MissingBuildspecIsAYamlFileError) {
  repo_.Write("README", "no buildspec here\n");
  const PhaseResult r = Prepare("");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  EXPECT_EQ(r.contexts(0).status_code(), "YAML_FILE_ERROR");
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("buildspec.yml: no such file or directory"));
  EXPECT_EQ(r.resolved_source_version(), commit_);
}

TEST_F(BuildExecutorTest, BuildspecOutsideTheSourceIsRejected) {
  job_.mutable_source()->set_buildspec("../../etc/passwd");
  const PhaseResult r = Prepare("version: 0.2\nphases:\n  build:\n    commands:\n      - echo\n");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  EXPECT_EQ(r.contexts(0).status_code(), "YAML_FILE_ERROR");
}

TEST_F(BuildExecutorTest, BuildspecParseErrorIsAYamlFileError) {
  const PhaseResult r = Prepare("version: 0.2\nphases:\n  biuld:\n    commands:\n      - echo\n");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "YAML_FILE_ERROR");
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("biuld"));
  EXPECT_THAT(Output(), HasSubstr("Phase context status code: YAML_FILE_ERROR Message: " +
                                  r.contexts(0).message()));
}

TEST_F(BuildExecutorTest, PhasesOutOfOrderOrUnsupportedAreFaults) {
  auto executor = BuildExecutor::Create(job_, options_);
  ASSERT_TRUE(executor.ok());
  EXPECT_EQ((*executor)->RunPhase(BUILD, true).status(), BuildStatus::FAULT);
  EXPECT_EQ((*executor)->RunPhase(BuildPhaseType::QUEUED, true).status(), BuildStatus::FAULT);
  EXPECT_EQ((*executor)->RunPhase(static_cast<BuildPhaseType::Value>(99), true).status(),
            BuildStatus::FAULT);
}

TEST_F(BuildExecutorTest, CreateValidatesTheJobAndDestructorDeletesTheWorkspace) {
  kiln::v1::BuildJob bad = job_;
  bad.set_build_id("..");
  EXPECT_EQ(BuildExecutor::Create(bad, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = job_;
  bad.mutable_source()->clear_location();
  EXPECT_EQ(BuildExecutor::Create(bad, options_).status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = job_;
  bad.set_timeout_millis(-1);
  EXPECT_EQ(BuildExecutor::Create(bad, options_).status().code(),
            absl::StatusCode::kInvalidArgument);

  PrepareOk(
      "version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 1000 & echo $! > sleep.pid\n");
  EXPECT_EQ(executor_->workspace_dir(),
            options_.work_dir + "/builds/proj_0f8fad5b-d9cb-469f-a165-70867728950e");
  EXPECT_TRUE(std::filesystem::is_directory(executor_->workspace_dir() + "/tmp"));
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  const std::string workspace = executor_->workspace_dir();
  const int pid = std::stoi(testing::ReadFileOrEmpty(executor_->source_dir() + "/sleep.pid"));
  EXPECT_FALSE(ProcessDead(pid));  // background processes outlive their command ...
  executor_.reset();
  EXPECT_TRUE(ProcessDead(pid));  // ... but not the build
  EXPECT_FALSE(std::filesystem::exists(workspace));
}

TEST_F(BuildExecutorTest, ShellOptionsDoNotCarryToTheNextCommand) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - set -o noclobber; echo one > f.txt
      - echo two > f.txt && echo overwrote
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("overwrote\n"));
}

TEST_F(BuildExecutorTest, SetVDoesNotRevealTheCompletionMarker) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - set -v
      - echo after
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(Output(), Not(HasSubstr("KILN")));
  EXPECT_THAT(UserOutput(), HasSubstr("after\n"));
}

TEST_F(BuildExecutorTest, ParameterStoreValuesAreNeverExportedAndDerivedValuesAreMasked) {
  options_.resolve_parameters = [](const std::vector<std::string>& names)
      -> absl::StatusOr<kiln::v1::GetBuildParametersResponse> {
    kiln::v1::GetBuildParametersResponse resp;
    auto* p = resp.add_parameters();
    p->set_name("/db/pass");
    p->set_value("S3cretPassw0rd");
    p->set_mask(true);
    return resp;
  };
  auto* v = job_.add_environment_variables();
  v->set_name("DB_PASS");
  v->set_value("/db/pass");
  v->set_type(kiln::v1::EnvironmentVariable::PARAMETER_STORE);
  PrepareOk(R"yaml(version: 0.2
env:
  exported-variables:
    - DB_PASS
    - URL
phases:
  build:
    commands:
      - export URL="https://u:$DB_PASS@db"
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  const PhaseResult post = Run(POST_BUILD);  // exported variables are frozen here (§1.4)
  EXPECT_EQ(post.status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(Run(BuildPhaseType::UPLOAD_ARTIFACTS).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(Run(FINALIZING).exported_variables_size(), 0);
  EXPECT_EQ(post.exported_variables().count("DB_PASS"), 0u);
  EXPECT_EQ(post.exported_variables().at("URL"), "https://u:***@db");
}

TEST_F(BuildExecutorTest, TheWorkspaceIsReadableByItsOwnerOnly) {
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands:\n      - \"true\"\n");
  const auto perms = std::filesystem::status(executor_->workspace_dir()).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all, std::filesystem::perms::owner_all);
}

TEST_F(BuildExecutorTest, AReplacementShellCarriesTheBuildIdForCrashCleanup) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - exit 3
  post_build:
    commands:
      - tr '\0' '\n' < /proc/$$/environ | grep -c '^CODEBUILD_BUILD_ID=proj:'
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::FAILED);
  EXPECT_EQ(Run(POST_BUILD, /*succeeding=*/false).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_EQ(UserOutput(), "1\n");
}

}  // namespace
// ---- run-as (reference §1.3) and environment.image ----

// The agent runs as root in CI; run-as tests need root and the `nobody` user.
bool CanRunAsNobody() { return geteuid() == 0 && getpwnam("nobody") != nullptr; }

TEST_F(BuildExecutorTest, RunAsRunsCommandsAsTheUserAndAPhaseRunAsWins) {
  if (!CanRunAsNobody()) GTEST_SKIP() << "needs root and the nobody user";
  std::filesystem::permissions(dir_.path(), std::filesystem::perms::owner_all |
                                                std::filesystem::perms::others_exec);
  PrepareOk(R"yaml(version: 0.2
run-as: nobody
phases:
  install:
    run-as: root
    commands:
      - echo "install=$(id -un)"
      - echo one > made-by-root
      - export CARRIED=yes
  build:
    commands:
      - echo "build=$(id -un) carried=$CARRIED"
      - echo two >> made-by-root && echo appended
)yaml");
  EXPECT_EQ(Run(INSTALL).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("install=root\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("build=nobody carried=yes\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("appended\n"));
  EXPECT_EQ(testing::ReadFileOrEmpty(executor_->source_dir() + "/made-by-root"), "one\ntwo\n");
}

TEST_F(BuildExecutorTest, RunAsAnUnknownUserFailsDownloadSourceNamingIt) {
  const PhaseResult r =
      Prepare("version: 0.2\nphases:\n  build:\n    run-as: no-such-user-kiln\n    commands: [id]\n");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "YAML_FILE_ERROR");
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("run-as: user 'no-such-user-kiln' does not exist"));
}

// Container tests need a Docker engine and the local python:3.11-slim image (tools/dev/setup.sh
// makes both). Under CI=true their absence is a failure, not a skip.
bool DockerImageAvailable() {
  return std::system("docker image inspect python:3.11-slim >/dev/null 2>&1") == 0;
}
#define REQUIRE_DOCKER()                                                                \
  do {                                                                                  \
    if (!DockerImageAvailable()) {                                                      \
      if (getenv("CI") != nullptr && std::string(getenv("CI")) == "true")               \
        FAIL() << "CI=true but no Docker engine with python:3.11-slim";                 \
      GTEST_SKIP() << "no Docker engine with python:3.11-slim (run tools/dev/setup.sh)"; \
    }                                                                                   \
  } while (0)

// Gives the job a build id of its own (container tests count containers by build id label).
#define UniqueBuildId() \
  job_.set_build_id(absl::StrCat("proj:", getpid(), "-", absl::ToUnixNanos(absl::Now())))

int ContainersOfBuild(const std::string& build_id) {
  FILE* p = popen(("docker ps -aq --filter label=kiln.build-id=" + build_id + " | wc -l").c_str(), "r");
  int n = -1;
  if (p != nullptr) {
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
  }
  return n;
}

TEST_F(BuildExecutorTest, EnvironmentImageRunsThePhasesInAContainerWithTheWorkspaceMounted) {
  REQUIRE_DOCKER();
  job_.mutable_environment()->set_image("python:3.11-slim");
  UniqueBuildId();  // tests run in parallel: container labels must not collide
  PrepareOk(R"yaml(version: 0.2
env:
  variables:
    GREETING: "hello $HOME"
phases:
  install:
    commands:
      - test -f /.dockerenv && echo in-container
      - cd sub 2>/dev/null || mkdir sub && cd sub
      - export CARRIED=yes
      - python3 -c 'print("python ok")'
  build:
    commands:
      - echo "pwd=$(pwd) carried=$CARRIED greeting=$GREETING src=$CODEBUILD_SRC_DIR"
      - echo made > made-inside
      - test -S /var/run/docker.sock && echo socket || echo no-socket
)yaml");
  EXPECT_EQ(Run(INSTALL).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  const std::string src = executor_->source_dir();
  EXPECT_THAT(UserOutput(), HasSubstr("in-container\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("python ok\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("pwd=" + src + "/sub carried=yes greeting=hello $HOME src=" +
                                      src + "\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("no-socket\n"));
  EXPECT_EQ(testing::ReadFileOrEmpty(src + "/sub/made-inside"), "made\n");
  EXPECT_THAT(Output(), HasSubstr("Starting build container kiln-"));
  EXPECT_EQ(ContainersOfBuild(job_.build_id()), 1);
  EXPECT_EQ(Run(FINALIZING).status(), BuildStatus::SUCCEEDED);
  EXPECT_EQ(ContainersOfBuild(job_.build_id()), 0);
}

TEST_F(BuildExecutorTest, PrivilegedModeMountsTheHostDockerSocket) {
  REQUIRE_DOCKER();
  job_.mutable_environment()->set_image("python:3.11-slim");
  UniqueBuildId();  // tests run in parallel: container labels must not collide
  job_.mutable_environment()->set_privileged_mode(true);
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands:\n"
            "      - test -S /var/run/docker.sock && echo socket\n");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("socket\n"));
}

TEST_F(BuildExecutorTest, StopRemovesTheBuildContainerAndItsProcesses) {
  REQUIRE_DOCKER();
  job_.mutable_environment()->set_image("python:3.11-slim");
  UniqueBuildId();  // tests run in parallel: container labels must not collide
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - echo started; sleep 1000
)yaml");
  wait_for_ = "started\n";
  PhaseResult r;
  std::thread runner([&] { r = Run(BUILD); });
  seen_.WaitForNotification();
  const absl::Time start = absl::Now();
  executor_->Stop(BuildStatus::STOPPED, "Stopped by user alice");
  runner.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(r.status(), BuildStatus::STOPPED);
  EXPECT_EQ(ContainersOfBuild(job_.build_id()), 0);
}

// ---- artifacts (§1.10), reports (§1.9), cache (§1.11) ----

std::string ZipMembers(const std::string& zip) {
  std::string out;
  FILE* p = popen(("unzip -Z1 " + zip).c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  pclose(p);
  return out;
}

class ArtifactExecutorTest : public BuildExecutorTest {
 protected:
  void SetUp() override {
    BuildExecutorTest::SetUp();
    options_.upload_artifact = [this](kiln::v1::UploadArtifactHeader h, const std::string& zip) {
      headers_.push_back(h);
      const std::string copy = absl::StrCat(dir_.path(), "/uploaded-", headers_.size(), ".zip");
      std::filesystem::copy_file(zip, copy);
      uploaded_.push_back(copy);
      if (!upload_error_.ok()) return absl::StatusOr<kiln::v1::BuildArtifact>(upload_error_);
      kiln::v1::BuildArtifact a;
      a.set_identifier(h.identifier());
      a.set_name(h.name());
      a.set_file_count(h.file_count());
      a.set_sha256(std::string(64, 'a'));
      a.set_size_bytes(static_cast<int64_t>(std::filesystem::file_size(zip)));
      return absl::StatusOr<kiln::v1::BuildArtifact>(a);
    };
  }
  std::vector<kiln::v1::UploadArtifactHeader> headers_;
  std::vector<std::string> uploaded_;
  absl::Status upload_error_;
};

TEST_F(ArtifactExecutorTest, ArtifactPathsAreRelativeToTheSourceDirNotTheCwdAndZippedAndUploaded) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - mkdir -p dist/sub docs && echo a > dist/a.txt && echo b > dist/sub/b.txt && echo d > docs/d.md
      - cd docs
artifacts:
  files: ['**/*']
  base-directory: dist
  name: app-$CODEBUILD_BUILD_NUMBER
  secondary-artifacts:
    docs:
      files: [docs/*.md]
      discard-paths: yes
)yaml");
  ASSERT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  const PhaseResult r = Run(BuildPhaseType::UPLOAD_ARTIFACTS);
  ASSERT_EQ(r.status(), BuildStatus::SUCCEEDED) << r.DebugString() << Output();
  ASSERT_EQ(r.artifacts_size(), 2);
  EXPECT_EQ(r.artifacts(0).identifier(), "");
  EXPECT_EQ(r.artifacts(0).name(), "app-7");
  EXPECT_EQ(r.artifacts(0).file_count(), 2);
  EXPECT_EQ(r.artifacts(1).identifier(), "docs");
  EXPECT_EQ(r.artifacts(1).name(), "docs");
  ASSERT_EQ(uploaded_.size(), 2u);
  EXPECT_EQ(ZipMembers(uploaded_[0]), "a.txt\nsub/b.txt\n");
  EXPECT_EQ(ZipMembers(uploaded_[1]), "d.md\n");
  EXPECT_THAT(Output(), HasSubstr("Expanding base directory path: dist"));
  EXPECT_THAT(Output(), HasSubstr("Found 2 file(s)"));
}

TEST_F(ArtifactExecutorTest, NoMatchingArtifactPathsFailsUploadArtifactsWithClientError) {
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands: [true]\nartifacts:\n"
            "  files: [missing.jar]\n");
  const PhaseResult r = Run(BuildPhaseType::UPLOAD_ARTIFACTS);
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "CLIENT_ERROR");
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("no matching artifact paths found"));
  EXPECT_THAT(Output(), HasSubstr("Skipping invalid file path missing.jar"));
  EXPECT_TRUE(uploaded_.empty());
}

TEST_F(ArtifactExecutorTest, AFailedUploadFailsUploadArtifactsWithTheReason) {
  upload_error_ = absl::UnavailableError("coordinator went away");
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands: [touch app.jar]\nartifacts:\n"
            "  files: [app.jar]\n");
  ASSERT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED);
  const PhaseResult r = Run(BuildPhaseType::UPLOAD_ARTIFACTS);
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("coordinator went away"));
}

TEST_F(ArtifactExecutorTest, JUnitReportsAreSummarisedInUploadArtifactsEvenAfterAFailedBuild) {
  PrepareOk(R"yaml(version: 0.2
phases:
  build:
    commands:
      - mkdir -p reports
      - printf '<testsuite name="s"><testcase name="ok"/><testcase name="bad"><failure message="boom"/></testcase><testcase name="skip"><skipped/></testcase></testsuite>' > reports/unit.xml
      - printf '<testsuite><testcase' > reports/broken.xml
      - exit 1
reports:
  unit:
    files: [unit.xml]
    base-directory: reports
  broken:
    files: [reports/broken.xml]
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::FAILED);
  const PhaseResult r = Run(BuildPhaseType::UPLOAD_ARTIFACTS, false);
  EXPECT_EQ(r.status(), BuildStatus::SUCCEEDED) << r.DebugString();
  ASSERT_EQ(r.reports_size(), 2);
  EXPECT_EQ(r.reports(0).name(), "proj-unit");
  EXPECT_EQ(r.reports(0).status(), "FAILED");
  EXPECT_EQ(r.reports(0).total(), 3);
  EXPECT_EQ(r.reports(0).passed(), 1);
  EXPECT_EQ(r.reports(0).failed(), 1);
  EXPECT_EQ(r.reports(0).skipped(), 1);
  EXPECT_EQ(r.reports(1).status(), "INCOMPLETE");
  EXPECT_THAT(r.reports(1).message(), HasSubstr("reports/broken.xml"));
}

TEST_F(ArtifactExecutorTest, CacheIsSavedAfterASuccessfulBuildAndRestoredBeforeTheNextInstall) {
  LocalCache cache(dir_.path() + "/cache");
  options_.cache = &cache;
  const std::string spec = R"yaml(version: 0.2
phases:
  install:
    commands:
      - if [ -f deps/lib.txt ]; then echo "restored=$(cat deps/lib.txt)"; else echo cold; fi
      - mkdir -p deps && echo v1 > deps/lib.txt
cache:
  key: deps-$(codebuild-hash-files buildspec.yml)
  paths: ['deps/**/*']
)yaml";
  PrepareOk(spec);
  ASSERT_EQ(Run(INSTALL).status(), BuildStatus::SUCCEEDED) << Output();
  const PhaseResult fin = Run(FINALIZING, true);
  EXPECT_TRUE(fin.cache_saved()) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("cold\n"));
  EXPECT_THAT(cache.WarmProjects(), ::testing::ElementsAre("proj"));
  executor_.reset();
  // The next build of the project, in a fresh workspace.
  PrepareOk("");
  ASSERT_EQ(Run(INSTALL).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("restored=v1\n"));
}

TEST_F(ArtifactExecutorTest, AFailedBuildDoesNotSaveTheCache) {
  LocalCache cache(dir_.path() + "/cache");
  options_.cache = &cache;
  PrepareOk("version: 0.2\nphases:\n  install:\n    commands: [mkdir -p d, touch d/x]\n"
            "cache:\n  paths: ['d/**/*']\n");
  ASSERT_EQ(Run(INSTALL).status(), BuildStatus::SUCCEEDED);
  EXPECT_FALSE(Run(FINALIZING, false).cache_saved());
  EXPECT_TRUE(cache.WarmProjects().empty());
}

// ---- secrets-manager (§1.4), git-credential-helper, pull-request source version (§1.12) ----

// A resolver over a fixed map; every value is masked, as the coordinator does for secure values.
ParameterResolver MapResolver(std::map<std::string, std::string> values) {
  return [values](const std::vector<std::string>& names)
             -> absl::StatusOr<kiln::v1::GetBuildParametersResponse> {
    kiln::v1::GetBuildParametersResponse resp;
    for (const auto& n : names) {
      auto it = values.find(n);
      if (it == values.end()) {
        resp.add_missing(n);
        continue;
      }
      auto* p = resp.add_parameters();
      p->set_name(n);
      p->set_value(it->second);
      p->set_mask(true);
    }
    return resp;
  };
}

TEST_F(BuildExecutorTest, SecretsManagerReadsAJsonKeyOfAParameterAndMasksIt) {
  options_.resolve_parameters =
      MapResolver({{"/prod/db", R"({"username":"app","password":"hunter22"})"}, {"plain", "tok3n"}});
  PrepareOk(R"yaml(version: 0.2
env:
  secrets-manager:
    DB_USER: prod/db:username
    DB_PASS: prod/db:password
    TOKEN: plain
phases:
  build:
    commands:
      - test "$DB_USER" = app && test "$DB_PASS" = hunter22 && test "$TOKEN" = tok3n && echo all-set
      - echo "pass=$DB_PASS"
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("all-set\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("pass=***\n"));
  EXPECT_THAT(Output(), Not(HasSubstr("hunter22")));
}

TEST_F(BuildExecutorTest, SecretsManagerMissingSecretOrKeyFailsDownloadSource) {
  options_.resolve_parameters = MapResolver({{"/prod/db", R"({"username":"app"})"}});
  PhaseResult r = Prepare("version: 0.2\nenv:\n  secrets-manager:\n    P: prod/db:password\n"
                          "phases:\n  build:\n    commands: [true]\n");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_EQ(r.contexts(0).status_code(), "Secrets Manager Error");
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("has no JSON key password"));
  executor_.reset();
  r = Prepare("version: 0.2\nenv:\n  secrets-manager:\n    P: nope\n"
              "phases:\n  build:\n    commands: [true]\n");
  EXPECT_EQ(r.status(), BuildStatus::FAILED);
  ASSERT_EQ(r.contexts_size(), 1);
  EXPECT_THAT(r.contexts(0).message(), HasSubstr("secret does not exist: nope"));
}

TEST_F(BuildExecutorTest, GitCredentialHelperGivesTheBuildsGitTheProjectsCredentials) {
  job_.mutable_source()->set_credentials_parameter("/ci/git");
  options_.resolve_parameters = MapResolver({{"/ci/git", "alice:s3cr3t-pw"}});
  PrepareOk(R"yaml(version: 0.2
env:
  git-credential-helper: yes
phases:
  build:
    commands:
      - printf 'protocol=https\nhost=git.example.com\n\n' | git credential fill
)yaml");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("username=alice\n"));
  EXPECT_THAT(UserOutput(), HasSubstr("password=***\n"));
  EXPECT_THAT(Output(), Not(HasSubstr("s3cr3t-pw")));
}

TEST_F(BuildExecutorTest, PullRequestBuildsReportPrNumberAsSourceVersion) {
  job_.mutable_webhook()->set_event("PULL_REQUEST_CREATED");
  job_.mutable_webhook()->set_pull_request_number(42);
  job_.mutable_webhook()->set_trigger("pr/42");
  job_.mutable_webhook()->set_base_ref("refs/heads/main");
  PrepareOk("version: 0.2\nphases:\n  build:\n    commands:\n"
            "      - echo \"$CODEBUILD_SOURCE_VERSION $CODEBUILD_WEBHOOK_TRIGGER "
            "$CODEBUILD_WEBHOOK_EVENT $CODEBUILD_WEBHOOK_BASE_REF\"\n");
  EXPECT_EQ(Run(BUILD).status(), BuildStatus::SUCCEEDED) << Output();
  EXPECT_THAT(UserOutput(), HasSubstr("pr/42 pr/42 PULL_REQUEST_CREATED refs/heads/main\n"));
}

}  // namespace kiln::agent
