// DeployRunner with the real deploy engine, real hook scripts and real processes in temp dirs; the
// revision download and the message sink are fakes (no gRPC).
#include "agent/client/deploy_runner.h"

#include <archive.h>
#include <archive_entry.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "deploy/appspec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;
using kiln::v1::AgentMessage;
using kiln::v1::DeployEventResult;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteZip(const fs::path& zip, const std::map<std::string, std::string>& files) {
  struct archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  ASSERT_EQ(archive_write_open_filename(a, zip.c_str()), ARCHIVE_OK);
  for (const auto& [name, content] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, content.size());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, name.rfind("scripts/", 0) == 0 ? 0755 : 0644);
    archive_write_header(a, e);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// Records every message the runner sends.
class Sink {
 public:
  void Send(AgentMessage m) {
    absl::MutexLock l(&mu_);
    messages_.push_back(std::move(m));
  }
  // Waits until `n` results with host_done arrived for `id`; false after 30 s.
  bool WaitHostDone(const std::string& id, int n = 1) {
    absl::MutexLock l(&mu_);
    auto done = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      int count = 0;
      for (const auto& m : messages_) {
        count += m.has_deploy_event_result() && m.deploy_event_result().deployment_id() == id &&
                 m.deploy_event_result().host_done();
      }
      return count >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
  }
  // Waits until the log of `id` contains `text`; false after 30 s.
  bool WaitLog(const std::string& id, const std::string& text) {
    absl::MutexLock l(&mu_);
    auto found = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return LogLocked(id).find(text) != std::string::npos;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&found), absl::Seconds(30));
  }
  std::vector<DeployEventResult> Results(const std::string& id) {
    absl::MutexLock l(&mu_);
    std::vector<DeployEventResult> out;
    for (const auto& m : messages_) {
      if (m.has_deploy_event_result() && m.deploy_event_result().deployment_id() == id) {
        out.push_back(m.deploy_event_result());
      }
    }
    return out;
  }
  std::string Log(const std::string& id) {
    absl::MutexLock l(&mu_);
    return LogLocked(id);
  }
  std::vector<AgentMessage> messages() {
    absl::MutexLock l(&mu_);
    return messages_;
  }

 private:
  std::string LogLocked(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string log;
    for (const auto& m : messages_) {
      if (m.has_deploy_log() && m.deploy_log().deployment_id() == id) log += m.deploy_log().data();
    }
    return log;
  }
  absl::Mutex mu_;
  std::vector<AgentMessage> messages_ ABSL_GUARDED_BY(mu_);
};

std::vector<std::string> Names(const std::vector<DeployEventResult>& results) {
  std::vector<std::string> out;
  for (const auto& r : results) out.push_back(r.event().name());
  return out;
}
std::vector<std::string> Statuses(const std::vector<DeployEventResult>& results) {
  std::vector<std::string> out;
  for (const auto& r : results) out.push_back(r.event().status());
  return out;
}
std::vector<bool> HostDone(const std::vector<DeployEventResult>& results) {
  std::vector<bool> out;
  for (const auto& r : results) out.push_back(r.host_done());
  return out;
}

const std::vector<bool> kOnlyLastDone = {false, false, false, false, false, false, true};

class DeployRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::path(test::MakeTempDir("kiln_deploy_runner")).lexically_normal();
    dest_ = tmp_ / "dest";
    marks_ = tmp_ / "marks";
    fs::create_directories(marks_);
    runner_ = MakeRunner();
  }
  void TearDown() override {
    runner_.reset();
    fs::remove_all(tmp_);
  }

  std::unique_ptr<DeployRunner> MakeRunner() {
    DeployRunner::Options o;
    o.root_dir = tmp_ / "root";
    o.engine.kill_grace = absl::Milliseconds(200);
    o.send = [this](AgentMessage m) { sink_.Send(std::move(m)); };
    o.download = [this](const std::string& id, const std::string& dest,
                        const std::function<bool()>& cancelled) -> absl::Status {
      {
        absl::MutexLock l(&mu_);
        downloads_.push_back(id);
      }
      if (!download_error_.ok()) return download_error_;
      // Streamed in small pieces, as the RPC delivers it.
      std::ifstream in(zips_.at(id), std::ios::binary);
      std::ofstream out(dest, std::ios::binary | std::ios::trunc);
      char buf[512];
      while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
        if (cancelled()) return absl::CancelledError("stopped");
        out.write(buf, in.gcount());
      }
      return out ? absl::OkStatus() : absl::InternalError("write");
    };
    auto runner = DeployRunner::Create(std::move(o));
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? *std::move(runner) : nullptr;
  }

  // appspec installing web/ into dest_ with one script per hook (body after "#!/bin/sh").
  std::map<std::string, std::string> RevisionFiles(
      const std::string& name, const std::map<std::string, std::string>& hooks) {
    std::string yaml = absl::StrCat(
        "version: 0.0\nos: linux\nfiles:\n  - source: web\n    destination: ", dest_.string(),
        "\nhooks:\n");
    std::map<std::string, std::string> files = {{"web/index.html", name}};
    for (const auto& [event, body] : hooks) {
      absl::StrAppend(&yaml, "  ", event, ":\n    - location: scripts/", event,
                      ".sh\n      timeout: 60\n");
      files["scripts/" + event + ".sh"] = "#!/bin/sh\n" + body + "\n";
    }
    files["appspec.yml"] = yaml;
    return files;
  }

  // A build-artifact deployment whose zip holds `files`.
  kiln::v1::DeployHost ZipHost(const std::string& id,
                               const std::map<std::string, std::string>& files) {
    fs::path zip = tmp_ / (id + ".zip");
    WriteZip(zip, files);
    zips_[id] = zip;
    kiln::v1::DeployHost h;
    h.set_deployment_id(id);
    h.set_application("app");
    h.set_deployment_group("group");
    h.set_deployment_group_id("dg-1");
    h.mutable_revision()->mutable_build_artifact()->set_build_id("proj:1");
    return h;
  }

  std::string Mark(const std::string& name) const { return (marks_ / name).string(); }

  fs::path tmp_, dest_, marks_;
  Sink sink_;
  absl::Mutex mu_;
  std::vector<std::string> downloads_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, fs::path> zips_;
  absl::Status download_error_;
  std::unique_ptr<DeployRunner> runner_;
};

TEST_F(DeployRunnerTest, ZipRevisionRunsEveryEventInOrderAndReportsHostDoneSucceeded) {
  runner_->Deploy(
      ZipHost("d-1", RevisionFiles("rev1", {{"BeforeInstall", "echo before"},
                                            {"AfterInstall", "echo after; echo oops >&2"},
                                            {"ApplicationStart", "echo start"},
                                            {"ValidateService", "echo $LIFECYCLE_EVENT"}})));
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::vector<DeployEventResult> results = sink_.Results("d-1");
  EXPECT_THAT(Names(results), ElementsAreArray(deploy::DefaultLifecycleEvents()));
  EXPECT_THAT(Statuses(results), ::testing::Each("Succeeded"));
  EXPECT_THAT(HostDone(results), ElementsAreArray(kOnlyLastDone));
  for (const auto& r : results) {
    EXPECT_GT(r.event().start_time().seconds(), 0) << r.event().name();
    EXPECT_GE(r.event().end_time().seconds(), r.event().start_time().seconds());
    EXPECT_EQ(r.event().error_code(), 0);
  }
  EXPECT_EQ(Read(dest_ / "index.html"), "rev1");
  {
    absl::MutexLock l(&mu_);
    EXPECT_THAT(downloads_, ElementsAre("d-1"));
  }
  // Hook output, in order, each event's lines before that event's result.
  std::string log = sink_.Log("d-1");
  EXPECT_THAT(log, HasSubstr("LifecycleEvent - BeforeInstall\nScript - scripts/BeforeInstall.sh\n"
                             "[stdout]before\n"));
  EXPECT_LT(log.find("[stdout]before"), log.find("[stdout]after"));
  EXPECT_LT(log.find("[stdout]after"), log.find("[stdout]start"));
  EXPECT_THAT(log, HasSubstr("[stderr]oops\n"));
  EXPECT_THAT(log, HasSubstr("[stdout]ValidateService\n"));
  std::string before_validate_result;
  for (const auto& m : sink_.messages()) {
    if (m.has_deploy_log()) before_validate_result += m.deploy_log().data();
    if (m.has_deploy_event_result() && m.deploy_event_result().event().name() == "ValidateService") {
      break;
    }
  }
  EXPECT_THAT(before_validate_result, HasSubstr("[stdout]ValidateService\n"));
  // The downloaded revision stays with its deployment dir (bundle.tar links to it).
  EXPECT_EQ(fs::read_symlink(tmp_ / "root/dg-1/d-1/bundle.tar"),
            tmp_ / "root/dg-1/d-1/revision.zip");
}

TEST_F(DeployRunnerTest, FailingValidateServiceReportsTheEnginesMessageWithHostDone) {
  runner_->Deploy(
      ZipHost("d-1", RevisionFiles("rev1", {{"ValidateService", "echo not healthy; exit 3"}})));
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::vector<DeployEventResult> results = sink_.Results("d-1");
  ASSERT_EQ(results.size(), 7u);
  EXPECT_THAT(Statuses(results), ElementsAre("Succeeded", "Succeeded", "Succeeded", "Succeeded",
                                             "Succeeded", "Succeeded", "Failed"));
  const kiln::v1::LifecycleEvent& ev = results[6].event();
  EXPECT_EQ(ev.name(), "ValidateService");
  EXPECT_EQ(ev.error_code(), deploy::kScriptFailedCode);
  EXPECT_EQ(ev.script_name(), "scripts/ValidateService.sh");
  EXPECT_EQ(ev.message(),
            "Script at specified location: scripts/ValidateService.sh failed with exit code 3");
  EXPECT_TRUE(results[6].host_done());
  EXPECT_THAT(sink_.Log("d-1"), HasSubstr("[stdout]not healthy\n"));
}

TEST_F(DeployRunnerTest, FailedDownloadFailsDownloadBundleAndSkipsTheRest) {
  download_error_ = absl::NotFoundError("no such blob");
  runner_->Deploy(ZipHost("d-1", RevisionFiles("rev1", {})));
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::vector<DeployEventResult> results = sink_.Results("d-1");
  EXPECT_THAT(Statuses(results), ElementsAre("Succeeded", "Failed", "Skipped", "Skipped", "Skipped",
                                             "Skipped", "Skipped"));
  EXPECT_THAT(HostDone(results), ElementsAreArray(kOnlyLastDone));
  EXPECT_EQ(results[1].event().error_code(), deploy::kUnknownErrorCode);
  EXPECT_THAT(results[1].event().message(), HasSubstr("no such blob"));
  EXPECT_FALSE(fs::exists(dest_ / "index.html"));
}

TEST_F(DeployRunnerTest, StopKillsALongHookAndSkipsTheRemainingEvents) {
  runner_->Deploy(ZipHost(
      "d-1", RevisionFiles("rev1", {{"ApplicationStart",
                                     "echo $$ > " + Mark("pid") + "\necho started\nexec sleep 60"},
                                    {"ValidateService", "touch " + Mark("validated")}})));
  ASSERT_TRUE(sink_.WaitLog("d-1", "[stdout]started\n"));
  runner_->Stop("d-1");
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::vector<DeployEventResult> results = sink_.Results("d-1");
  EXPECT_THAT(Statuses(results), ElementsAre("Succeeded", "Succeeded", "Succeeded", "Succeeded",
                                             "Succeeded", "Failed", "Skipped"));
  EXPECT_EQ(results[5].event().message(),
            "Script at specified location: scripts/ApplicationStart.sh was stopped");
  EXPECT_TRUE(results[6].host_done());
  EXPECT_FALSE(fs::exists(Mark("validated")));
  const pid_t pid = std::stoi(Read(Mark("pid")));
  EXPECT_EQ(::kill(pid, 0), -1);  // the hook's process is gone (reaped by the engine)
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(DeployRunnerTest, StoppingAQueuedDeploymentReportsEveryEventSkippedAtOnce) {
  runner_->Deploy(
      ZipHost("d-1", RevisionFiles("rev1", {{"ApplicationStart", "echo started\nexec sleep 60"}})));
  ASSERT_TRUE(sink_.WaitLog("d-1", "[stdout]started\n"));
  runner_->Deploy(ZipHost("d-2", RevisionFiles("rev2", {})));
  runner_->Stop("d-2");
  ASSERT_TRUE(sink_.WaitHostDone("d-2"));
  EXPECT_THAT(Statuses(sink_.Results("d-2")), ::testing::Each("Skipped"));
  EXPECT_THAT(HostDone(sink_.Results("d-2")), ElementsAreArray(kOnlyLastDone));
  EXPECT_TRUE(sink_.Results("d-1").size() < 7u);  // d-1 still runs
  runner_->Stop("d-1");
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  absl::MutexLock l(&mu_);
  EXPECT_THAT(downloads_, ElementsAre("d-1"));
}

TEST_F(DeployRunnerTest, GitRevisionIsClonedAtItsCommitAndDeployedWithoutGitMetadata) {
  test::GitRepo repo(tmp_.string(), "app");
  std::string first =
      repo.Commit(RevisionFiles("from-git", {{"AfterInstall", "echo installed"}}), "first");
  repo.Commit({{"web/index.html", "newer"}}, "second");
  kiln::v1::DeployHost h;
  h.set_deployment_id("d-1");
  h.set_deployment_group_id("dg-1");
  h.mutable_revision()->mutable_git()->set_project("app");
  h.mutable_revision()->mutable_git()->set_commit(first);
  h.set_git_location(repo.bare_path());
  runner_->Deploy(h);
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  EXPECT_THAT(Statuses(sink_.Results("d-1")), ::testing::Each("Succeeded"));
  EXPECT_EQ(Read(dest_ / "index.html"), "from-git");
  EXPECT_THAT(sink_.Log("d-1"), HasSubstr("[stdout]installed\n"));
  EXPECT_TRUE(fs::exists(tmp_ / "root/dg-1/d-1/deployment-archive/appspec.yml"));
  EXPECT_FALSE(fs::exists(tmp_ / "root/dg-1/d-1/deployment-archive/.git"));
  EXPECT_FALSE(fs::exists(tmp_ / "root/dg-1/d-1/revision-git"));
}

TEST_F(DeployRunnerTest, UnknownGitCommitFailsDownloadBundle) {
  test::GitRepo repo(tmp_.string(), "app");
  repo.Commit(RevisionFiles("from-git", {}), "first");
  kiln::v1::DeployHost h;
  h.set_deployment_id("d-1");
  h.set_deployment_group_id("dg-1");
  h.mutable_revision()->mutable_git()->set_commit("no-such-branch");
  h.set_git_location(repo.bare_path());
  runner_->Deploy(h);
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::vector<DeployEventResult> results = sink_.Results("d-1");
  ASSERT_EQ(results.size(), 7u);
  EXPECT_EQ(results[1].event().status(), "Failed");
  EXPECT_THAT(results[1].event().message(), HasSubstr("cannot fetch the revision"));
}

TEST_F(DeployRunnerTest, RestartReportsTheInterruptedEventFailedWithCode7AndNeverRerunsIt) {
  runner_->Deploy(
      ZipHost("d-1", RevisionFiles("rev1", {{"ApplicationStart", "echo started\nexec sleep 60"}})));
  ASSERT_TRUE(sink_.WaitLog("d-1", "[stdout]started\n"));

  // A second runner on the same root, as a restarted agent process.
  Sink restarted_sink;
  DeployRunner::Options o;
  o.root_dir = tmp_ / "root";
  o.send = [&](AgentMessage m) { restarted_sink.Send(std::move(m)); };
  auto restarted = DeployRunner::Create(std::move(o));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  std::vector<AgentMessage> resend = (*restarted)->ResendableResults();
  ASSERT_EQ(resend.size(), 1u);
  const DeployEventResult& r = resend[0].deploy_event_result();
  EXPECT_EQ(r.deployment_id(), "d-1");
  EXPECT_EQ(r.event().name(), "ApplicationStart");
  EXPECT_EQ(r.event().status(), "Failed");
  EXPECT_EQ(r.event().error_code(), deploy::kFailedAfterRestartCode);
  EXPECT_EQ(r.event().message(), deploy::kRestartFailureMessage);
  EXPECT_TRUE(r.host_done());

  // The coordinator asking again gets the result again; nothing runs.
  (*restarted)->Deploy(ZipHost("d-1", RevisionFiles("rev1", {})));
  ASSERT_TRUE(restarted_sink.WaitHostDone("d-1"));
  EXPECT_EQ(restarted_sink.Results("d-1").size(), 1u);
  EXPECT_EQ(restarted_sink.Log("d-1"), "");
  runner_->Stop("d-1");
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
}

TEST_F(DeployRunnerTest, FinishedDeploymentsResultsAreKeptForResendingAndNotRerun) {
  kiln::v1::DeployHost h =
      ZipHost("d-1", RevisionFiles("rev1", {{"AfterInstall", "echo x >> " + Mark("runs")}}));
  runner_->Deploy(h);
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::vector<AgentMessage> resend = runner_->ResendableResults();
  ASSERT_EQ(resend.size(), 7u);
  for (size_t i = 0; i < resend.size(); ++i) {
    EXPECT_EQ(resend[i].deploy_event_result().SerializeAsString(),
              sink_.Results("d-1")[i].SerializeAsString());
  }
  runner_->Deploy(h);  // e.g. a coordinator that restarted and lost the results
  ASSERT_TRUE(sink_.WaitHostDone("d-1", 2));
  EXPECT_EQ(sink_.Results("d-1").size(), 14u);
  EXPECT_EQ(Read(Mark("runs")), "x\n");
}

TEST_F(DeployRunnerTest, IgnoredApplicationStopFailureIsReportedSucceededAndTheDeploymentGoesOn) {
  runner_->Deploy(ZipHost("d-1", RevisionFiles("rev1", {{"ApplicationStop", "exit 1"}})));
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  kiln::v1::DeployHost h = ZipHost("d-2", RevisionFiles("rev2", {}));
  h.set_ignore_application_stop_failures(true);
  runner_->Deploy(h);
  ASSERT_TRUE(sink_.WaitHostDone("d-2"));
  std::vector<DeployEventResult> results = sink_.Results("d-2");
  EXPECT_THAT(Statuses(results), ::testing::Each("Succeeded"));
  EXPECT_THAT(
      results[0].event().message(),
      HasSubstr(
          "Script at specified location: scripts/ApplicationStop.sh failed with exit code 1"));
  EXPECT_EQ(Read(dest_ / "index.html"), "rev2");
}

TEST_F(DeployRunnerTest, LargeOutputArrivesInOrderInChunksOfAtMost64KiB) {
  // 3000 numbered lines of ~100 bytes: about 300 KiB.
  runner_->Deploy(ZipHost(
      "d-1",
      RevisionFiles("rev1", {{"ApplicationStart",
                              "i=0; while [ $i -lt 3000 ]; do printf 'line %05d %090d\\n' $i 0; "
                              "i=$((i+1)); done"}})));
  ASSERT_TRUE(sink_.WaitHostDone("d-1"));
  std::string expected;
  for (int i = 0; i < 3000; ++i) {
    char line[128];
    std::snprintf(line, sizeof(line), "[stdout]line %05d %090d\n", i, 0);
    expected += line;
  }
  EXPECT_THAT(sink_.Log("d-1"), HasSubstr(expected));
  int chunks = 0;
  for (const auto& m : sink_.messages()) {
    if (!m.has_deploy_log()) continue;
    ++chunks;
    EXPECT_LE(m.deploy_log().data().size(), kMaxDeployLogChunkBytes);
  }
  EXPECT_GE(chunks, 5);
}

}  // namespace
}  // namespace kiln::agent
