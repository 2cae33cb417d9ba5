// SourcePoller against real git repositories in temp dirs, driven by a fake clock through Tick().
#include "coordinator/poller/source_poller.h"

#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "coordinator/http/webhook_deliveries.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/mem_store.h"

namespace kiln::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class FakeBackend : public WebhookBackend {
 public:
  struct Started {
    std::string project, commit;
    kiln::v1::WebhookTrigger trigger;
  };
  kiln::v1::Project& AddProject(const std::string& name, const std::string& location,
                                int poll_seconds, const std::string& branch = "main") {
    absl::MutexLock lock(&mu_);
    kiln::v1::Project& p = projects_[name];
    p.set_name(name);
    p.mutable_source()->set_type("git");
    p.mutable_source()->set_location(location);
    p.mutable_source()->set_branch(branch);
    p.mutable_source()->set_poll_interval_seconds(poll_seconds);
    return p;
  }
  void SetSecret(const std::string& name, const std::string& value) {
    absl::MutexLock lock(&mu_);
    secrets_[name] = value;
  }
  void FailNextBuild(absl::Status s) {
    absl::MutexLock lock(&mu_);
    fail_next_ = s;
  }
  std::vector<Started> started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }

  absl::StatusOr<std::vector<kiln::v1::Project>> ListProjects() override {
    absl::MutexLock lock(&mu_);
    std::vector<kiln::v1::Project> out;
    for (const auto& [name, p] : projects_) out.push_back(p);
    return out;
  }
  absl::StatusOr<std::string> GetSecret(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    auto it = secrets_.find(name);
    if (it == secrets_.end()) return absl::NotFoundError(name);
    return it->second;
  }
  absl::StatusOr<std::string> StartBuild(const kiln::v1::Project& project, const std::string& commit,
                                         const kiln::v1::WebhookTrigger& trigger) override {
    absl::MutexLock lock(&mu_);
    if (!fail_next_.ok()) {
      absl::Status s = fail_next_;
      fail_next_ = absl::OkStatus();
      return s;
    }
    started_.push_back({project.name(), commit, trigger});
    return absl::StrCat(project.name(), ":", started_.size());
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, kiln::v1::Project> projects_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> secrets_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_next_ ABSL_GUARDED_BY(mu_);
  std::vector<Started> started_ ABSL_GUARDED_BY(mu_);
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string WriteScript(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  ::chmod(path.c_str(), 0755);
  return path;
}

class SourcePollerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::MakeTempDir("poller");
    repo_ = std::make_unique<test::GitRepo>(dir_, "app");
    first_ = repo_->Commit({{"a.txt", "1"}}, "first");
    log_ = *WebhookDeliveryLog::Open(&store_);
    poller_ = MakePoller();
  }

  std::unique_ptr<SourcePoller> MakePoller(const std::string& git = "git",
                                           absl::Duration timeout = absl::Seconds(30)) {
    SourcePoller::Options o;
    o.backend = &backend_;
    o.store = &store_;
    o.deliveries = log_.get();
    o.clock = &clock_;
    o.git = git;
    o.command_timeout = timeout;
    auto poller = SourcePoller::Create(o);
    EXPECT_TRUE(poller.ok()) << poller.status();
    return std::move(*poller);
  }

  std::vector<kiln::v1::WebhookDelivery> Deliveries() { return *log_->List("", 100); }

  std::string dir_;
  std::unique_ptr<test::GitRepo> repo_;
  std::string first_;
  FakeBackend backend_;
  test::FakeClock clock_;
  test::MemStore store_;
  std::unique_ptr<WebhookDeliveryLog> log_;
  std::unique_ptr<SourcePoller> poller_;
};

TEST_F(SourcePollerTest, FirstPollRecordsTheCommitWithoutBuilding) {
  backend_.AddProject("app", repo_->bare_path(), 60);
  EXPECT_EQ(poller_->Tick(), 1);
  EXPECT_THAT(backend_.started(), IsEmpty());
  EXPECT_THAT(Deliveries(), IsEmpty());
  EXPECT_THAT(store_.Contents().at("poll/app"), HasSubstr(first_));
}

TEST_F(SourcePollerTest, NewCommitStartsOneBuildWithAPollTrigger) {
  backend_.AddProject("app", repo_->bare_path(), 60);
  poller_->Tick();
  const std::string second = repo_->Commit({{"a.txt", "2"}}, "second");
  clock_.Advance(absl::Seconds(60));
  EXPECT_EQ(poller_->Tick(), 1);
  std::vector<FakeBackend::Started> started = backend_.started();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].project, "app");
  EXPECT_EQ(started[0].commit, second);
  const kiln::v1::WebhookTrigger& t = started[0].trigger;
  EXPECT_EQ(t.event(), "PUSH");
  EXPECT_EQ(t.head_ref(), "refs/heads/main");
  EXPECT_EQ(t.prev_commit(), first_);
  EXPECT_EQ(t.trigger(), "branch/main");
  EXPECT_THAT(t.delivery_id(), ::testing::MatchesRegex("poll-[0-9]+"));

  std::vector<kiln::v1::WebhookDelivery> d = Deliveries();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].delivery_id(), t.delivery_id());
  EXPECT_EQ(d[0].github_event(), "poll");
  EXPECT_EQ(d[0].event_type(), "PUSH");
  EXPECT_EQ(d[0].http_status(), 0);
  EXPECT_EQ(d[0].repository(), repo_->bare_path());
  EXPECT_EQ(d[0].head_ref(), "refs/heads/main");
  EXPECT_EQ(d[0].commit(), second);
  EXPECT_EQ(d[0].received().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_THAT(d[0].matched_projects(), ElementsAre("app"));
  EXPECT_THAT(d[0].build_ids(), ElementsAre("app:1"));
  EXPECT_EQ(log_->List("app", 10)->size(), 1u);

  // Nothing new: no second build.
  clock_.Advance(absl::Seconds(60));
  EXPECT_EQ(poller_->Tick(), 1);
  EXPECT_EQ(backend_.started().size(), 1u);
}

TEST_F(SourcePollerTest, PollsOnlyOncePerInterval) {
  backend_.AddProject("app", repo_->bare_path(), 60);
  EXPECT_EQ(poller_->Tick(), 1);
  repo_->Commit({{"a.txt", "2"}}, "second");
  clock_.Advance(absl::Seconds(59));
  EXPECT_EQ(poller_->Tick(), 0);
  EXPECT_THAT(backend_.started(), IsEmpty());
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(poller_->Tick(), 1);
  EXPECT_EQ(backend_.started().size(), 1u);
}

TEST_F(SourcePollerTest, ProjectsWithoutAnIntervalAreNotPolled) {
  backend_.AddProject("app", repo_->bare_path(), 0);
  EXPECT_EQ(poller_->Tick(), 0);
  EXPECT_EQ(store_.Contents().count("poll/app"), 0u);
}

TEST_F(SourcePollerTest, LastSeenCommitSurvivesARestart) {
  backend_.AddProject("app", repo_->bare_path(), 60);
  poller_->Tick();
  poller_.reset();  // the coordinator stops...
  const std::string second = repo_->Commit({{"a.txt", "2"}}, "pushed while down");
  std::unique_ptr<SourcePoller> restarted = MakePoller();  // ...and starts again on the same store
  EXPECT_EQ(restarted->Tick(), 1);
  ASSERT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(backend_.started()[0].commit, second);
  EXPECT_EQ(backend_.started()[0].trigger.prev_commit(), first_);
}

TEST_F(SourcePollerTest, OnlyTheConfiguredBranchIsWatched) {
  backend_.AddProject("app", repo_->bare_path(), 60, "release");
  repo_->Commit({{"r.txt", "1"}}, "release", "release");
  poller_->Tick();
  repo_->Commit({{"a.txt", "2"}}, "on main", "main");
  clock_.Advance(absl::Seconds(60));
  poller_->Tick();
  EXPECT_THAT(backend_.started(), IsEmpty());
  const std::string release2 = repo_->Commit({{"r.txt", "2"}}, "release 2", "release");
  clock_.Advance(absl::Seconds(60));
  poller_->Tick();
  ASSERT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(backend_.started()[0].commit, release2);
  EXPECT_EQ(backend_.started()[0].trigger.trigger(), "branch/release");
}

TEST_F(SourcePollerTest, ChangingTheBranchStartsOverWithoutABuild) {
  backend_.AddProject("app", repo_->bare_path(), 60, "main");
  poller_->Tick();
  repo_->Commit({{"r.txt", "1"}}, "release", "release");
  backend_.AddProject("app", repo_->bare_path(), 60, "release");  // replaces the project
  clock_.Advance(absl::Seconds(60));
  poller_->Tick();
  EXPECT_THAT(backend_.started(), IsEmpty());
  EXPECT_THAT(store_.Contents().at("poll/app"), HasSubstr("\"branch\":\"release\""));
}

TEST_F(SourcePollerTest, FailedBuildIsRetriedAtTheNextInterval) {
  backend_.AddProject("app", repo_->bare_path(), 60);
  poller_->Tick();
  const std::string second = repo_->Commit({{"a.txt", "2"}}, "second");
  backend_.FailNextBuild(absl::ResourceExhaustedError("Cannot have more than 1 active builds"));
  clock_.Advance(absl::Seconds(60));
  poller_->Tick();
  EXPECT_THAT(backend_.started(), IsEmpty());
  std::vector<kiln::v1::WebhookDelivery> d = Deliveries();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].reason(),
            "no build could be started: app: RESOURCE_EXHAUSTED: Cannot have more than 1 active builds");
  EXPECT_THAT(d[0].build_ids(), IsEmpty());
  EXPECT_THAT(store_.Contents().at("poll/app"), Not(HasSubstr(second)));

  clock_.Advance(absl::Seconds(60));
  poller_->Tick();
  ASSERT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(backend_.started()[0].commit, second);
  EXPECT_EQ(Deliveries().size(), 2u);
}

TEST_F(SourcePollerTest, MissingRepositoryOrBranchStartsNothing) {
  backend_.AddProject("gone", dir_ + "/does-not-exist.git", 60);
  backend_.AddProject("nobranch", repo_->bare_path(), 60, "no-such-branch");
  EXPECT_EQ(poller_->Tick(), 2);
  EXPECT_THAT(backend_.started(), IsEmpty());
  EXPECT_EQ(store_.Contents().count("poll/gone"), 0u);
  EXPECT_EQ(store_.Contents().count("poll/nobranch"), 0u);
  EXPECT_THAT(Deliveries(), IsEmpty());
}

TEST_F(SourcePollerTest, LocationsThatLookLikeOptionsAreNotPassedToGit) {
  const std::string args = dir_ + "/args";
  const std::string git = WriteScript(dir_ + "/fake-git", "printf '%s\\n' \"$@\" > '" + args + "'\n");
  backend_.AddProject("app", "--upload-pack=touch " + dir_ + "/pwned", 60);
  std::unique_ptr<SourcePoller> poller = MakePoller(git);
  poller->Tick();
  EXPECT_EQ(ReadFile(args), "");  // never ran
}

TEST_F(SourcePollerTest, CredentialsReachGitThroughItsEnvironmentOnly) {
  const std::string args = dir_ + "/args";
  const std::string env = dir_ + "/env";
  const std::string git = WriteScript(
      dir_ + "/fake-git",
      absl::StrCat("printf '%s\\n' \"$@\" > '", args, "'\n",
                   "printf '%s:%s' \"$KILN_GIT_USERNAME\" \"$KILN_GIT_PASSWORD\" > '", env, "'\n",
                   "printf '", first_, "\\trefs/heads/main\\n'\n"));
  kiln::v1::Project& p = backend_.AddProject("app", "https://git.example.com/team/app.git", 60);
  p.mutable_source()->set_credentials_parameter("/ci/git");
  backend_.SetSecret("/ci/git", "robot:t0ken:with:colons");
  std::unique_ptr<SourcePoller> poller = MakePoller(git);
  EXPECT_EQ(poller->Tick(), 1);
  EXPECT_EQ(ReadFile(env), "robot:t0ken:with:colons");
  const std::string argv = ReadFile(args);
  EXPECT_THAT(argv, Not(HasSubstr("t0ken")));
  EXPECT_THAT(argv, HasSubstr("ls-remote\n--\nhttps://git.example.com/team/app.git\nrefs/heads/main\n"));
  EXPECT_THAT(store_.Contents().at("poll/app"), HasSubstr(first_));

  // The helper git is given really answers `credential fill` from the environment.
  std::vector<std::string> lines;
  std::stringstream in(argv);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[1], "credential.helper=");
  std::ofstream(dir_ + "/helper") << lines[3];
  const std::string filled = test::Sh(
      "cd '" + dir_ + "' && printf 'protocol=https\\nhost=git.example.com\\n\\n' | "
      "KILN_GIT_USERNAME=robot KILN_GIT_PASSWORD=t0ken GIT_CONFIG_NOSYSTEM=1 "
      "GIT_CONFIG_GLOBAL=/dev/null git -c credential.helper= -c \"$(cat helper)\" credential fill");
  EXPECT_THAT(filled, HasSubstr("username=robot\npassword=t0ken\n"));
}

TEST_F(SourcePollerTest, RecordedRepositoryHasNoUrlCredentials) {
  const std::string head = dir_ + "/head";
  std::ofstream(head) << first_;
  const std::string git = WriteScript(
      dir_ + "/fake-git", "printf '%s\\trefs/heads/main\\n' \"$(cat '" + head + "')\"\n");
  backend_.AddProject("app", "https://robot:s3cret@git.example.com/app.git", 60);
  std::unique_ptr<SourcePoller> poller = MakePoller(git);
  poller->Tick();
  std::ofstream(head, std::ios::trunc) << std::string(40, 'b');
  clock_.Advance(absl::Seconds(60));
  poller->Tick();
  ASSERT_EQ(backend_.started().size(), 1u);
  EXPECT_EQ(backend_.started()[0].commit, std::string(40, 'b'));
  ASSERT_EQ(Deliveries().size(), 1u);
  EXPECT_EQ(Deliveries()[0].repository(), "https://git.example.com/app.git");
}

TEST_F(SourcePollerTest, HangingGitIsKilledWithItsProcessGroupAfterTheTimeout) {
  const std::string pid_file = dir_ + "/child.pid";
  const std::string git =
      WriteScript(dir_ + "/slow-git", "sleep 300 &\necho $! > '" + pid_file + "'\nwait\n");
  backend_.AddProject("app", repo_->bare_path(), 60);
  std::unique_ptr<SourcePoller> poller = MakePoller(git, absl::Milliseconds(300));
  EXPECT_EQ(poller->Tick(), 1);  // returns: the command was cut off
  EXPECT_THAT(backend_.started(), IsEmpty());
  EXPECT_EQ(store_.Contents().count("poll/app"), 0u);
  // The grandchild (`sleep`) was killed too: gone, or a zombie waiting for its new parent to reap it.
  const std::string pid = ReadFile(pid_file);
  ASSERT_FALSE(pid.empty());
  // SIGKILL is delivered asynchronously: wait (bounded) for the process to be gone or a zombie.
  const std::string stat_file = "/proc/" + pid.substr(0, pid.find('\n')) + "/stat";
  std::string stat = ReadFile(stat_file);
  for (absl::Time end = absl::Now() + absl::Seconds(5);
       !stat.empty() && !absl::StrContains(stat, ") Z ") && absl::Now() < end;
       stat = ReadFile(stat_file)) {
  }
  if (!stat.empty()) {
    EXPECT_THAT(stat, HasSubstr(") Z ")) << stat;
  }
}

TEST_F(SourcePollerTest, ProjectsThatStopPollingAreForgottenAndPolledAgainLater) {
  kiln::v1::Project& p = backend_.AddProject("app", repo_->bare_path(), 60);
  EXPECT_EQ(poller_->Tick(), 1);
  p.mutable_source()->set_poll_interval_seconds(0);
  EXPECT_EQ(poller_->Tick(), 0);
  backend_.AddProject("app", repo_->bare_path(), 60);
  EXPECT_EQ(poller_->Tick(), 1);  // due at once again, without waiting for the old interval
}

}  // namespace
}  // namespace kiln::coordinator
