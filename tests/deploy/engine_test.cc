// DeploymentEngine with real revisions, real hook scripts and real processes in temp dirs
// (reference/aws-semantics.md §4.5-§4.8).
#include "deploy/engine.h"

#include <archive.h>
#include <archive_entry.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::deploy {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const fs::path& p, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
  ::chmod(p.c_str(), mode);
}

// Waits (on a pidfd, not a sleep) until process `pid` has exited; true if it did within 10 s.
bool WaitForExit(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int ready = ::poll(&p, 1, 10000);
  ::close(fd);
  return ready == 1;
}

std::vector<EventStatus> Statuses(const std::vector<EventResult>& results) {
  std::vector<EventStatus> out;
  for (const EventResult& r : results) out.push_back(r.status);
  return out;
}

constexpr EventStatus kOk = EventStatus::kSucceeded;
constexpr EventStatus kFail = EventStatus::kFailed;
constexpr EventStatus kSkip = EventStatus::kSkipped;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/kiln_engine_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    tmp_ = fs::path(tmpl).lexically_normal();
    ::chmod(tmp_.c_str(), 0755);  // readable by a runas user
    dest_ = tmp_ / "dest";
    marks_ = tmp_ / "marks";
    fs::create_directories(marks_);
    ::chmod(marks_.c_str(), 0777);
    engine_ = MakeEngine();
  }
  void TearDown() override { fs::remove_all(tmp_); }

  std::unique_ptr<DeploymentEngine> MakeEngine(int max_revisions = 5) {
    EngineOptions options;
    options.max_revisions = max_revisions;
    options.kill_grace = absl::Milliseconds(200);
    auto engine = DeploymentEngine::Create(tmp_ / "root", options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  std::string Expand(std::string s) const {
    return absl::StrReplaceAll(s, {{"{DEST}", dest_.string()}, {"{MARK}", marks_.string()}});
  }

  // A revision directory: appspec + files; {DEST} and {MARK} are replaced everywhere. Files under
  // scripts/ are executable.
  fs::path Revision(const std::string& name, const std::string& appspec,
                    const std::map<std::string, std::string>& files = {}) {
    fs::path dir = tmp_ / "revisions" / name;
    Write(dir / "appspec.yml", Expand(appspec));
    for (const auto& [path, content] : files) {
      Write(dir / path, Expand(content), path.rfind("scripts/", 0) == 0 ? 0755 : 0644);
    }
    return dir;
  }

  Deployment Dep(const std::string& id, const fs::path& revision) const {
    Deployment d;
    d.deployment_id = id;
    d.deployment_group_id = "dg1";
    d.deployment_group_name = "group";
    d.application_name = "app";
    d.revision = revision;
    return d;
  }

  fs::path Root() const { return tmp_ / "root"; }
  fs::path Instructions() const { return Root() / "deployment-instructions"; }

  // A revision installing web/ into {DEST} with one hook script per given event.
  fs::path WebRevision(const std::string& name, const std::map<std::string, std::string>& hooks,
                       const std::string& extra_yaml = "") {
    std::string yaml = "version: 0.0\nos: linux\nfiles:\n  - source: web\n    destination: {DEST}\n" +
                       extra_yaml + "hooks:\n";
    std::map<std::string, std::string> files = {{"web/index.html", name}};
    for (const auto& [event, body] : hooks) {
      yaml += "  " + event + ":\n    - location: scripts/" + event + ".sh\n      timeout: 60\n";
      files["scripts/" + event + ".sh"] = "#!/bin/sh\n" + body + "\n";
    }
    return Revision(name, yaml, files);
  }

  fs::path tmp_, dest_, marks_;
  std::unique_ptr<DeploymentEngine> engine_;
};

TEST_F(EngineTest, FirstDeploymentApplicationStopIsANoOpAndFilesAreInstalled) {
  fs::path rev = WebRevision("rev1", {{"ApplicationStop", "touch {MARK}/stopped"},
                                      {"ApplicationStart", "touch {MARK}/started"}});
  std::vector<EventResult> results = engine_->Run(Dep("d1", rev));
  ASSERT_EQ(results.size(), 7u);
  EXPECT_THAT(Statuses(results), ::testing::Each(kOk));
  EXPECT_EQ(results[0].event, "ApplicationStop");
  EXPECT_FALSE(fs::exists(marks_ / "stopped"));
  EXPECT_TRUE(fs::exists(marks_ / "started"));
  EXPECT_EQ(Read(dest_ / "index.html"), "rev1");
  const std::string d1 = (Root() / "dg1" / "d1").string();
  EXPECT_EQ(Read(Instructions() / "dg1_last_successful_install"), d1);
  EXPECT_EQ(Read(Instructions() / "dg1_most_recent_install"), d1);
  EXPECT_TRUE(fs::exists(Root() / "dg1/d1/deployment-archive/appspec.yml"));
  nlohmann::json install = nlohmann::json::parse(Read(Instructions() / "dg1-install.json"));
  EXPECT_EQ(install["instructions"][0]["type"], "mkdir");
  EXPECT_EQ(Read(Instructions() / "dg1-cleanup"),
            dest_.string() + "\n" + (dest_ / "index.html").string() + "\n");
  EXPECT_FALSE(fs::exists(Root() / "ongoing-deployment/d1"));
}

TEST_F(EngineTest, SecondDeploymentRunsThePreviousRevisionsApplicationStop) {
  ASSERT_THAT(Statuses(engine_->Run(Dep(
                  "d1", WebRevision("rev1", {{"ApplicationStop", "echo rev1 >> {MARK}/stop\n"
                                                                 "echo stopping rev1"}})))),
              ::testing::Each(kOk));
  fs::path rev2 = WebRevision("rev2", {{"ApplicationStop", "echo rev2 >> {MARK}/stop"}});
  ASSERT_THAT(Statuses(engine_->Run(Dep("d2", rev2))), ::testing::Each(kOk));
  EXPECT_EQ(Read(marks_ / "stop"), "rev1\n");
  // The old revision's script logs into the current deployment's scripts.log.
  std::string log = Read(Root() / "dg1/d2/logs/scripts.log");
  EXPECT_THAT(log, ContainsRegex("[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} LifecycleEvent - "
                                 "ApplicationStop"));
  EXPECT_THAT(log, HasSubstr("Script - scripts/ApplicationStop.sh"));
  EXPECT_THAT(log, HasSubstr("[stdout]stopping rev1"));
}

TEST_F(EngineTest, CleanupRemovesPreviousFilesButKeepsScriptCreatedOnes) {
  fs::path rev1 = Revision("rev1",
                           "version: 0.0\nos: linux\nfiles:\n  - source: site\n"
                           "    destination: {DEST}\nhooks:\n  AfterInstall:\n"
                           "    - location: scripts/make.sh\n",
                           {{"site/a.txt", "a"},
                            {"site/sub/b.txt", "b"},
                            {"scripts/make.sh", "#!/bin/sh\necho made > {DEST}/sub/created.txt\n"}});
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", rev1))), ::testing::Each(kOk));
  ASSERT_TRUE(fs::exists(dest_ / "sub/created.txt"));
  fs::path rev2 = Revision("rev2",
                           "version: 0.0\nos: linux\nfiles:\n  - source: c.txt\n"
                           "    destination: {DEST}\n",
                           {{"c.txt", "c"}});
  ASSERT_THAT(Statuses(engine_->Run(Dep("d2", rev2))), ::testing::Each(kOk));
  EXPECT_FALSE(fs::exists(dest_ / "a.txt"));
  EXPECT_FALSE(fs::exists(dest_ / "sub/b.txt"));
  EXPECT_TRUE(fs::exists(dest_ / "sub/created.txt"));
  EXPECT_EQ(Read(dest_ / "c.txt"), "c");
}

TEST_F(EngineTest, LastSuccessfulIsWrittenAtTheEndOfInstallEvenIfALaterEventFails) {
  fs::path rev1 = WebRevision("rev1", {{"ApplicationStop", "echo rev1 > {MARK}/stop"},
                                       {"ValidateService", "exit 1"}});
  EXPECT_THAT(Statuses(engine_->Run(Dep("d1", rev1))),
              ::testing::ElementsAre(kOk, kOk, kOk, kOk, kOk, kOk, kFail));
  EXPECT_EQ(Read(Instructions() / "dg1_last_successful_install"),
            (Root() / "dg1/d1").string());
  ASSERT_THAT(Statuses(engine_->Run(Dep("d2", WebRevision("rev2", {})))), ::testing::Each(kOk));
  EXPECT_EQ(Read(marks_ / "stop"), "rev1\n");  // the partly failed revision's script ran (§4.6)
}

TEST_F(EngineTest, DisallowFailsInstallOnAnExistingFileAndSkipsTheRest) {
  Write(dest_ / "index.html", "mine");
  std::vector<EventResult> results = engine_->Run(Dep("d1", WebRevision("rev1", {})));
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kOk, kOk, kOk, kFail, kSkip, kSkip, kSkip));
  EXPECT_EQ(results[3].error_code, kUnknownErrorCode);
  EXPECT_EQ(results[3].message,
            "The deployment failed because a specified file already exists at this location: " +
                (dest_ / "index.html").string());
  EXPECT_EQ(Read(dest_ / "index.html"), "mine");
  EXPECT_FALSE(fs::exists(Instructions() / "dg1_last_successful_install"));
}

TEST_F(EngineTest, OverwriteReplacesAnExistingFile) {
  Write(dest_ / "index.html", "mine");
  fs::path rev = WebRevision("rev1", {}, "file_exists_behavior: OVERWRITE\n");
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", rev))), ::testing::Each(kOk));
  EXPECT_EQ(Read(dest_ / "index.html"), "rev1");
}

TEST_F(EngineTest, RetainKeepsAnExistingFileAcrossDeployments) {
  Write(dest_ / "index.html", "mine");
  fs::path rev = WebRevision("rev1", {}, "file_exists_behavior: RETAIN\n");
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", rev))), ::testing::Each(kOk));
  EXPECT_EQ(Read(dest_ / "index.html"), "mine");
  ASSERT_THAT(Statuses(engine_->Run(Dep("d2", rev))), ::testing::Each(kOk));
  EXPECT_EQ(Read(dest_ / "index.html"), "mine");  // never listed for cleanup
}

TEST_F(EngineTest, DeploymentFileExistsBehaviorAppliesWhenTheAppspecHasNone) {
  Write(dest_ / "index.html", "mine");
  Deployment d = Dep("d1", WebRevision("rev1", {}));
  d.file_exists_behavior = "overwrite";  // upper-cased
  ASSERT_THAT(Statuses(engine_->Run(d)), ::testing::Each(kOk));
  EXPECT_EQ(Read(dest_ / "index.html"), "rev1");
}

TEST_F(EngineTest, HookGetsTheDeploymentEnvironmentAndItsOutputIsStreamed) {
  ASSERT_EQ(::setenv("KILN_TEST_AGENT_VAR", "inherited", 1), 0);
  fs::path rev = WebRevision(
      "rev1", {{"AfterInstall",
                "echo \"$LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME "
                "$DEPLOYMENT_GROUP_ID $KILN_TEST_AGENT_VAR\"\necho oops >&2\nprintf 'no newline'"}});
  std::vector<std::string> lines;
  auto results = engine_->Run(Dep("d1", rev), [&](const std::string& event, const std::string& l) {
    lines.push_back(event + "|" + l);
  });
  ASSERT_THAT(Statuses(results), ::testing::Each(kOk));
  EXPECT_THAT(lines, Contains("AfterInstall|LifecycleEvent - AfterInstall"));
  EXPECT_THAT(lines, Contains("AfterInstall|Script - scripts/AfterInstall.sh"));
  EXPECT_THAT(lines, Contains("AfterInstall|[stdout]AfterInstall d1 app group dg1 inherited"));
  EXPECT_THAT(lines, Contains("AfterInstall|[stderr]oops"));
  EXPECT_THAT(lines, Contains("AfterInstall|[stdout]no newline"));
  EXPECT_THAT(results[4].log, HasSubstr("[stdout]AfterInstall d1 app group dg1 inherited\n"));
  EXPECT_THAT(Read(Root() / "dg1/d1/logs/scripts.log"),
              ContainsRegex("[0-9:]{8} \\[stderr\\]oops"));
}

TEST_F(EngineTest, HookTimeoutKillsTheProcessGroupWithTheAgentsMessage) {
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
                          "    - location: scripts/slow.sh\n      timeout: 1\n",
                          {{"scripts/slow.sh",
                            "#!/bin/sh\nsleep 60 &\necho $! > {MARK}/bg\nsleep 60\n"}});
  auto results = engine_->Run(Dep("d1", rev));
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kOk, kOk, kOk, kOk, kOk, kFail, kSkip));
  EXPECT_EQ(results[5].error_code, kScriptTimedOutCode);
  EXPECT_EQ(results[5].message,
            "Script at specified location: scripts/slow.sh failed to complete in 1 seconds");
  EXPECT_EQ(results[5].script_name, "scripts/slow.sh");
  EXPECT_LT(results[5].duration_ms, 10000);
  pid_t bg = std::stoi(Read(marks_ / "bg"));
  EXPECT_TRUE(WaitForExit(bg)) << "background child of the hook survived";
}

TEST_F(EngineTest, NonZeroExitCodeFailsWithTheAgentsMessage) {
  auto results = engine_->Run(Dep("d1", WebRevision("rev1", {{"BeforeInstall", "exit 3"}})));
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kOk, kOk, kFail, kSkip, kSkip, kSkip, kSkip));
  EXPECT_EQ(results[2].error_code, kScriptFailedCode);
  EXPECT_EQ(results[2].message,
            "Script at specified location: scripts/BeforeInstall.sh failed with exit code 3");
  nlohmann::json diag = nlohmann::json::parse(DiagnosticsJson(results[2]));
  EXPECT_EQ(diag["error_code"], 4);
  EXPECT_EQ(diag["script_name"], "scripts/BeforeInstall.sh");
}

TEST_F(EngineTest, OutputsLeftOpenByABackgroundChildFailWithCloseStdout) {
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n"
                          "    - location: scripts/start.sh\n      timeout: 1\n",
                          {{"scripts/start.sh", "#!/bin/sh\nsleep 60 &\necho $! > {MARK}/bg\n"}});
  EventResult r = engine_->RunEvent(Dep("d1", rev), "DownloadBundle");
  ASSERT_EQ(r.status, kOk) << r.message;
  r = engine_->RunEvent(Dep("d1", rev), "ApplicationStart");
  pid_t bg = std::stoi(Read(marks_ / "bg"));
  ::kill(bg, SIGKILL);  // the test's own process: the engine leaves it running, as the agent
  EXPECT_EQ(r.error_code, kOutputsLeftOpenCode);
  EXPECT_EQ(r.message, "Script at specified location: scripts/start.sh failed to close STDOUT");
}

TEST_F(EngineTest, MissingScriptFailsWithCode1) {
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n"
                          "    - location: scripts/none.sh\n");
  auto results = engine_->Run(Dep("d1", rev));
  EXPECT_EQ(results[4].error_code, kScriptMissingCode);
  EXPECT_EQ(results[4].message,
            "Script does not exist at specified location: " +
                (Root() / "dg1/d1/deployment-archive/scripts/none.sh").string());
}

TEST_F(EngineTest, NonExecutableScriptIsMadeExecutable) {
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n"
                          "    - location: hooks/run.sh\n",
                          {{"hooks/run.sh", "#!/bin/sh\ntouch {MARK}/ran\n"}});
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", rev))), ::testing::Each(kOk));
  EXPECT_TRUE(fs::exists(marks_ / "ran"));
  EXPECT_EQ(::access((Root() / "dg1/d1/deployment-archive/hooks/run.sh").c_str(), X_OK), 0);
}

TEST_F(EngineTest, ScriptWithoutShebangFailsToStart) {
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n"
                          "    - location: scripts/bare.sh\n",
                          {{"scripts/bare.sh", "touch {MARK}/ran\n"}});
  auto results = engine_->Run(Dep("d1", rev));
  EXPECT_EQ(results[4].error_code, kUnknownErrorCode);
  EXPECT_EQ(results[4].message,
            "Script at specified location: scripts/bare.sh failed with error Errno::ENOEXEC with "
            "message Exec format error - " +
                (Root() / "dg1/d1/deployment-archive/scripts/bare.sh").string());
  EXPECT_FALSE(fs::exists(marks_ / "ran"));
}

TEST_F(EngineTest, IgnoreApplicationStopFailuresContinuesTheDeployment) {
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", WebRevision("rev1", {{"ApplicationStop", "exit 1"}})))),
              ::testing::Each(kOk));
  fs::path rev2 = WebRevision("rev2", {});
  auto failed = engine_->Run(Dep("d2", rev2));
  EXPECT_THAT(Statuses(failed), ::testing::ElementsAre(kFail, kSkip, kSkip, kSkip, kSkip, kSkip, kSkip));
  Deployment d3 = Dep("d3", rev2);
  d3.ignore_application_stop_failures = true;
  auto results = engine_->Run(d3);
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kFail, kOk, kOk, kOk, kOk, kOk, kOk));
  EXPECT_TRUE(results[0].failure_ignored);
  EXPECT_EQ(Read(dest_ / "index.html"), "rev2");
}

TEST_F(EngineTest, RestartRecoveryFailsTheInProgressEventWithCode7AndStopKillsTheHook) {
  fs::path rev = WebRevision("rev1", {{"ApplicationStart", "echo started\nexec sleep 60"}});
  absl::Notification started;
  std::vector<EventResult> results;
  std::thread runner([&] {
    results = engine_->Run(Dep("d1", rev), [&](const std::string&, const std::string& line) {
      if (line == "[stdout]started") started.Notify();
    });
  });
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(30)));
  nlohmann::json ongoing = nlohmann::json::parse(Read(Root() / "ongoing-deployment/d1"));
  EXPECT_EQ(ongoing["event"], "ApplicationStart");

  // A new engine on the same root, as after an agent restart.
  std::unique_ptr<DeploymentEngine> restarted = MakeEngine();
  std::vector<RecoveredEvent> recovered = restarted->RecoverAfterRestart();
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].deployment_id, "d1");
  EXPECT_EQ(recovered[0].deployment_group_id, "dg1");
  EXPECT_EQ(recovered[0].result.event, "ApplicationStart");
  EXPECT_EQ(recovered[0].result.status, kFail);
  EXPECT_EQ(recovered[0].result.error_code, kFailedAfterRestartCode);
  EXPECT_EQ(recovered[0].result.message,
            "Failed: Failing in-progress lifecycle event after an agent restart.");
  EXPECT_FALSE(fs::exists(Root() / "ongoing-deployment/d1"));

  engine_->Stop();
  runner.join();
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kOk, kOk, kOk, kOk, kOk, kFail, kSkip));
  EXPECT_EQ(results[5].message, "Script at specified location: scripts/ApplicationStart.sh was stopped");
}

TEST_F(EngineTest, StaleOngoingFilesAreDroppedSilently) {
  fs::create_directories(Root() / "ongoing-deployment");
  fs::path stale = Root() / "ongoing-deployment/old";
  Write(stale, R"({"event":"AfterInstall","deployment_group_id":"dg1"})");
  fs::last_write_time(stale, fs::file_time_type::clock::now() - std::chrono::hours(25));
  EXPECT_THAT(engine_->RecoverAfterRestart(), IsEmpty());
  EXPECT_FALSE(fs::exists(stale));
}

TEST_F(EngineTest, RunasRunsTheScriptThroughSu) {
  if (::geteuid() != 0) GTEST_SKIP() << "runas needs root (su without a password)";
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n"
                          "    - location: scripts/who.sh\n      runas: root\n",
                          {{"scripts/who.sh", "#!/bin/sh\nid -un > {MARK}/user\n"}});
  auto results = engine_->Run(Dep("d1", rev));
  ASSERT_THAT(Statuses(results), ::testing::Each(kOk)) << results[4].message;
  EXPECT_EQ(Read(marks_ / "user"), "root\n");
}

TEST_F(EngineTest, RunasAnUnprivilegedUser) {
  struct passwd* pw = ::getpwnam("nobody");
  if (::geteuid() != 0 || pw == nullptr) GTEST_SKIP() << "needs root and a user 'nobody'";
  std::string shell = pw->pw_shell ? pw->pw_shell : "";
  fs::path rev = Revision("rev1",
                          "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n"
                          "    - location: scripts/who.sh\n      runas: nobody\n",
                          {{"scripts/who.sh", "#!/bin/sh\nid -un > {MARK}/user\n"}});
  auto results = engine_->Run(Dep("d1", rev));
  if (shell.find("nologin") != std::string::npos || shell.find("false") != std::string::npos) {
    // su runs the user's login shell, which refuses: the agent's runas failure message.
    EXPECT_EQ(results[4].error_code, kScriptFailedCode);
    EXPECT_THAT(results[4].message,
                ::testing::StartsWith("Script at specified location: scripts/who.sh run as user "
                                      "nobody failed with exit code "));
  } else {
    ASSERT_EQ(results[4].status, kOk) << results[4].message;
    EXPECT_EQ(Read(marks_ / "user"), "nobody\n");
  }
}

TEST_F(EngineTest, OldDeploymentDirsAreRemovedButNeverTheLastSuccessful) {
  engine_ = MakeEngine(/*max_revisions=*/2);
  fs::path rev = WebRevision("rev1", {}, "file_exists_behavior: OVERWRITE\n");
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", rev))), ::testing::Each(kOk));
  ASSERT_THAT(Statuses(engine_->Run(Dep("d2", rev))), ::testing::Each(kOk));
  // d2 is the last successful one but the oldest by mtime.
  auto now = fs::file_time_type::clock::now();
  fs::last_write_time(Root() / "dg1/d2", now - std::chrono::hours(2));
  fs::last_write_time(Root() / "dg1/d1", now - std::chrono::hours(1));
  ASSERT_THAT(Statuses(engine_->Run(Dep("d3", rev))), ::testing::Each(kOk));
  EXPECT_FALSE(fs::exists(Root() / "dg1/d1"));
  EXPECT_TRUE(fs::exists(Root() / "dg1/d2"));
  EXPECT_TRUE(fs::exists(Root() / "dg1/d3"));
}

void WriteZip(const fs::path& zip,
              const std::vector<std::tuple<std::string, std::string, int>>& entries) {
  struct archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  ASSERT_EQ(archive_write_open_filename(a, zip.c_str()), ARCHIVE_OK);
  for (const auto& [name, content, mode] : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, content.size());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, mode);
    archive_write_header(a, e);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

TEST_F(EngineTest, ZipRevisionIsUnpackedAndItsSingleTopDirectoryUnwrapped) {
  fs::path zip = tmp_ / "app.zip";
  WriteZip(zip, {{"myapp/appspec.yml",
                  Expand("version: 0.0\nos: linux\nfiles:\n  - source: web\n"
                         "    destination: {DEST}\nhooks:\n  ApplicationStart:\n"
                         "    - location: scripts/start.sh\n"),
                  0644},
                 {"myapp/scripts/start.sh", Expand("#!/bin/sh\ntouch {MARK}/started\n"), 0755},
                 {"myapp/web/index.html", "zipped", 0644}});
  ASSERT_THAT(Statuses(engine_->Run(Dep("d1", zip))), ::testing::Each(kOk));
  EXPECT_TRUE(fs::is_symlink(Root() / "dg1/d1/bundle.tar"));
  EXPECT_EQ(fs::read_symlink(Root() / "dg1/d1/bundle.tar"), zip);
  EXPECT_TRUE(fs::exists(Root() / "dg1/d1/deployment-archive/appspec.yml"));
  EXPECT_EQ(Read(dest_ / "index.html"), "zipped");
  EXPECT_TRUE(fs::exists(marks_ / "started"));
}

TEST_F(EngineTest, RevisionWithoutAppspecFailsDownloadBundle) {
  fs::path rev = tmp_ / "revisions/empty";
  Write(rev / "index.html", "x");
  auto results = engine_->Run(Dep("d1", rev));
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kOk, kFail, kSkip, kSkip, kSkip, kSkip, kSkip));
  EXPECT_THAT(results[1].message, HasSubstr("appspec file is not found"));
}

TEST_F(EngineTest, InvalidAppspecFailsInstallWithItsPosition) {
  fs::path rev = Revision("rev1", "version: \"0.0\"\nos: linux\n");
  auto results = engine_->Run(Dep("d1", rev));
  // BeforeInstall is the first event that reads the new appspec (the hook executor parses it).
  EXPECT_THAT(Statuses(results), ::testing::ElementsAre(kOk, kOk, kFail, kSkip, kSkip, kSkip, kSkip));
  EXPECT_THAT(results[2].message, HasSubstr("appspec.yml:1:10: version: The deployment failed"));
  EXPECT_EQ(engine_->RunEvent(Dep("d1", rev), "Install").message, results[2].message);
}

TEST_F(EngineTest, UnsafeDeploymentIdIsRejected) {
  EventResult r = engine_->RunEvent(Dep("../x", WebRevision("rev1", {})), "DownloadBundle");
  EXPECT_EQ(r.status, kFail);
  EXPECT_THAT(r.message, HasSubstr("invalid deployment id"));
  EXPECT_FALSE(fs::exists(tmp_ / "x"));
}

TEST_F(EngineTest, MaxRevisionsBelowOneIsRejected) {
  EngineOptions options;
  options.max_revisions = 0;
  EXPECT_EQ(DeploymentEngine::Create(tmp_ / "r2", options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::deploy
