// DeployService and DownloadRevision over a real in-process gRPC server on 127.0.0.1:0, driven by
// the `kiln deploy` command functions, with a real Build/DeploymentController and fake agents that
// answer DeployHost from their own threads (as real agents do over their streams).
#include "coordinator/deployments/deploy_service.h"

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/deployments/deploy_fixture.h"
#include "tools/cli/deploy_commands.h"

namespace kiln::test {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// A fake agent that runs every DeployHost it receives on its own thread: a log line, then the
// seven lifecycle events (BeforeInstall fails when told to). Manual agents only record.
class AutoAgent : public FakeAgentConnection {
 public:
  AutoAgent(std::string id, coordinator::BuildController* builds, bool manual)
      : id_(std::move(id)), builds_(builds), manual_(manual), worker_([this] { Run(); }) {}
  ~AutoAgent() override { Stop(); }

  void Send(const CoordinatorMessage& m) override {
    FakeAgentConnection::Send(m);
    if (manual_ || !m.has_deploy_host()) return;
    absl::MutexLock l(&queue_mu_);
    queue_.push_back(m.deploy_host().deployment_id());
  }
  void Stop() {
    {
      absl::MutexLock l(&queue_mu_);
      stop_ = true;
    }
    if (worker_.joinable()) worker_.join();
  }
  std::atomic<bool> fail{false};

 private:
  void Run() {
    while (true) {
      std::string id;
      {
        absl::MutexLock l(&queue_mu_);
        queue_mu_.Await(absl::Condition(
            +[](AutoAgent* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->queue_mu_) {
              return a->stop_ || !a->queue_.empty();
            },
            this));
        if (stop_) return;
        id = queue_.front();
        queue_.pop_front();
      }
      kiln::v1::AgentMessage log;
      log.mutable_deploy_log()->set_deployment_id(id);
      log.mutable_deploy_log()->set_data(absl::StrCat("deploying ", id, " on ", id_, "\n"));
      builds_->HandleAgentMessage(id_, log);
      bool failed = false;
      const std::vector<std::string> events = {"ApplicationStop", "DownloadBundle", "BeforeInstall",
                                               "Install", "AfterInstall", "ApplicationStart",
                                               "ValidateService"};
      for (size_t i = 0; i < events.size(); ++i) {
        kiln::v1::AgentMessage m;
        auto* r = m.mutable_deploy_event_result();
        r->set_deployment_id(id);
        r->mutable_event()->set_name(events[i]);
        if (failed) {
          r->mutable_event()->set_status("Skipped");
        } else if (fail && events[i] == "BeforeInstall") {
          r->mutable_event()->set_status("Failed");
          r->mutable_event()->set_error_code(4);
          r->mutable_event()->set_message("exit status 3");
          failed = true;
        } else {
          r->mutable_event()->set_status("Succeeded");
          r->mutable_event()->set_duration_millis(1500);
        }
        r->set_host_done(i + 1 == events.size());
        builds_->HandleAgentMessage(id_, m);
      }
    }
  }

  const std::string id_;
  coordinator::BuildController* const builds_;
  const bool manual_;
  absl::Mutex queue_mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread worker_;
};

// AgentService with only DownloadRevision, as the lead wires it into AgentServiceImpl.
class DownloadOnlyAgentService final : public kiln::v1::AgentService::CallbackService {
 public:
  DownloadOnlyAgentService(coordinator::DeploymentController* c, coordinator::ArtifactStore* a)
      : c_(c), a_(a) {}
  grpc::ServerWriteReactor<kiln::v1::DownloadRevisionResponse>* DownloadRevision(
      grpc::CallbackServerContext*, const kiln::v1::DownloadRevisionRequest* req) override {
    return coordinator::StartDownloadRevision(c_, a_, *req);
  }

 private:
  coordinator::DeploymentController* c_;
  coordinator::ArtifactStore* a_;
};

class DeployServiceTest : public DeployFixture {
 protected:
  void SetUp() override {
    DeployFixture::SetUp();
    auto artifacts = coordinator::ArtifactStore::Open(dir_ + "/artifacts", int64_t{1} << 30);
    ASSERT_THAT(artifacts.status(), IsOk());
    artifacts_ = *std::move(artifacts);
    service_ = std::make_unique<coordinator::DeployServiceImpl>(deployments_.get());
    agent_service_ = std::make_unique<DownloadOnlyAgentService>(deployments_.get(), artifacts_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    builder.RegisterService(agent_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    stub_ = kiln::v1::DeployService::NewStub(channel);
    agent_stub_ = kiln::v1::AgentService::NewStub(channel);
  }
  void TearDown() override {
    server_->Shutdown();
    server_->Wait();
    for (auto& [id, agent] : agents_) agent->Stop();  // before the controllers go
    DeployFixture::TearDown();
  }

  std::unique_ptr<FakeAgentConnection> NewConnection(const std::string& agent) override {
    auto a = std::make_unique<AutoAgent>(agent, builds_.get(), manual_);
    agents_[agent] = a.get();
    return a;
  }

  std::string WriteFile(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string StoreBlob(const std::string& data) {
    auto w = artifacts_->NewWriter();
    EXPECT_THAT(w.status(), IsOk());
    EXPECT_THAT((*w)->Append(data), IsOk());
    auto info = (*w)->Commit();
    EXPECT_THAT(info.status(), IsOk());
    return info->sha256;
  }

  bool manual_ = false;
  std::map<std::string, AutoAgent*> agents_;
  std::unique_ptr<coordinator::ArtifactStore> artifacts_;
  std::unique_ptr<coordinator::DeployServiceImpl> service_;
  std::unique_ptr<DownloadOnlyAgentService> agent_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<kiln::v1::DeployService::Stub> stub_;
  std::unique_ptr<kiln::v1::AgentService::Stub> agent_stub_;
};

TEST_F(DeployServiceTest, CliCreatesGroupDeploysAndWaitsForSuccess) {
  Connect("a1");
  Connect("a2");
  std::ostringstream out, err;
  cli::DeployAppCreateOptions app;
  app.name = "shop";
  ASSERT_EQ(cli::DeployAppCreate(*stub_, app, out, err), cli::kExitOk) << err.str();
  EXPECT_EQ(out.str(), "application shop created\n");

  cli::DeployGroupApplyOptions apply;
  apply.file = WriteFile("group.yaml",
                         "application: shop\n"
                         "name: prod\n"
                         "agent_labels: {role: web}\n"
                         "deployment_config: CodeDeployDefault.OneAtATime\n"
                         "auto_rollback: true\n");
  out.str("");
  ASSERT_EQ(cli::DeployGroupApply(*stub_, apply, out, err), cli::kExitOk) << err.str();
  EXPECT_THAT(out.str(), StartsWith("deployment group shop/prod applied (dg-"));

  cli::DeployCreateOptions create;
  create.application = "shop";
  create.group = "prod";
  create.build_id = "app:1";
  create.wait = true;
  create.poll_interval = absl::Milliseconds(5);
  out.str("");
  ASSERT_EQ(cli::DeployCreate(*stub_, create, out, err), cli::kExitOk) << err.str();
  const std::string id = out.str().substr(0, out.str().size() - 1);
  EXPECT_THAT(id, MatchesRegex("d-[A-Z0-9]{9}"));
  EXPECT_THAT(err.str(), HasSubstr("==> host a1 Succeeded\n"));
  EXPECT_THAT(err.str(), HasSubstr("==> host a2 Succeeded\n"));
  EXPECT_THAT(err.str(), HasSubstr(absl::StrCat("==> deployment ", id, " Succeeded\n")));

  cli::DeployGetOptions get;
  get.id = id;
  out.str("");
  ASSERT_EQ(cli::DeployGet(*stub_, get, out, err), cli::kExitOk) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("Status:       Succeeded"));
  EXPECT_THAT(out.str(), HasSubstr("Revision:     artifact of build app:1 (sha256 111111111111)"));
  EXPECT_THAT(out.str(), HasSubstr("  a1 (host-a1)  Succeeded\n"));
  EXPECT_THAT(out.str(), MatchesRegex("(.|\n)*    ApplicationStop +Succeeded +1\\.5s\n(.|\n)*"));
  get.json = true;
  out.str("");
  ASSERT_EQ(cli::DeployGet(*stub_, get, out, err), cli::kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("\"status\": \"Succeeded\""));

  cli::DeployListOptions list;
  list.application = "shop";
  out.str("");
  ASSERT_EQ(cli::DeployList(*stub_, list, out, err), cli::kExitOk);
  EXPECT_THAT(out.str(), HasSubstr(id));
  EXPECT_THAT(out.str(), HasSubstr("2/2"));

  cli::DeployLogsOptions logs;
  logs.id = id;
  logs.host = "host-a2";
  out.str("");
  ASSERT_EQ(cli::DeployLogs(*stub_, logs, out, err), cli::kExitOk) << err.str();
  EXPECT_EQ(out.str(), absl::StrCat("deploying ", id, " on a2\n"));

  cli::DeployGroupListOptions groups;
  out.str("");
  ASSERT_EQ(cli::DeployGroupList(*stub_, groups, out, err), cli::kExitOk);
  EXPECT_THAT(out.str(), HasSubstr(id));  // last successful
  EXPECT_THAT(out.str(), HasSubstr("role=web"));
}

TEST_F(DeployServiceTest, WaitExitsOneOnFailureAndReportsTheRollback) {
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime", nullptr, /*auto_rollback=*/true);
  std::ostringstream out, err;
  cli::DeployCreateOptions create;
  create.application = "web";
  create.group = "prod";
  create.build_id = "app:1";
  create.wait = true;
  create.poll_interval = absl::Milliseconds(5);
  ASSERT_EQ(cli::DeployCreate(*stub_, create, out, err), cli::kExitOk) << err.str();
  agents_["a1"]->fail = true;
  create.build_id = "app:2";
  err.str("");
  EXPECT_EQ(cli::DeployCreate(*stub_, create, out, err), cli::kExitFailure);
  EXPECT_THAT(err.str(),
              HasSubstr("==> host a1 Failed: BeforeInstall failed (ScriptFailed: exit status 3)"));
  EXPECT_THAT(err.str(), HasSubstr("Failed: host a1 (host-a1): lifecycle event BeforeInstall failed"));
  EXPECT_THAT(err.str(), MatchesRegex("(.|\n)*==> rolled back by d-[A-Z0-9]{9}\n"));
}

TEST_F(DeployServiceTest, LogsFollowUntilTheHostIsDone) {
  manual_ = true;
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  Log("a1", d->id(), "one\n");

  std::ostringstream out, err;
  cli::DeployLogsOptions logs;
  logs.id = d->id();
  logs.host = "a1";
  ASSERT_EQ(cli::DeployLogs(*stub_, logs, out, err), cli::kExitOk);  // stored part only
  EXPECT_EQ(out.str(), "one\n");

  logs.follow = true;
  std::ostringstream follow_out, follow_err;
  int code = -1;
  std::thread follower([&] { code = cli::DeployLogs(*stub_, logs, follow_out, follow_err); });
  Log("a1", d->id(), "two\n");
  HostFails("a1", d->id());
  follower.join();
  EXPECT_EQ(code, cli::kExitFailure);
  EXPECT_EQ(follow_out.str(), "one\ntwo\n");
  EXPECT_THAT(follow_err.str(), HasSubstr("==> host a1 Failed: BeforeInstall failed"));

  logs.host = "nobody";
  logs.follow = false;
  EXPECT_EQ(cli::DeployLogs(*stub_, logs, out, err), cli::kExitFailure);
  EXPECT_THAT(err.str(), HasSubstr("kiln: NOT_FOUND: deployment"));
}

TEST_F(DeployServiceTest, DownloadRevisionStreamsTheZipToHostsInProgress) {
  manual_ = true;
  Connect("a1");
  Connect("a2");
  std::string zip(2 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < zip.size(); ++i) zip[i] = static_cast<char>(i * 7);
  SeedBuild("app:big", kiln::v1::BuildStatus::SUCCEEDED, StoreBlob(zip));
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:big");
  ASSERT_THAT(d.status(), IsOk());

  kiln::v1::DownloadRevisionRequest req;
  req.set_agent_id("a1");
  req.set_deployment_id(d->id());
  grpc::ClientContext ctx;
  auto reader = agent_stub_->DownloadRevision(&ctx, req);
  kiln::v1::DownloadRevisionResponse resp;
  std::string got;
  int chunks = 0;
  while (reader->Read(&resp)) {
    EXPECT_LE(resp.data().size(), size_t{1} << 20);
    got += resp.data();
    ++chunks;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(chunks, 3);
  EXPECT_TRUE(got == zip);

  req.set_agent_id("a2");  // pending: not its turn
  grpc::ClientContext ctx2;
  auto denied = agent_stub_->DownloadRevision(&ctx2, req);
  while (denied->Read(&resp)) {
  }
  EXPECT_EQ(denied->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(DeployServiceTest, StopAndErrorsThroughTheCli) {
  manual_ = true;
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  std::ostringstream out, err;
  cli::DeployCreateOptions create;
  create.application = "web";
  create.group = "prod";
  create.project = "app";
  create.commit = "v1.0";
  ASSERT_EQ(cli::DeployCreate(*stub_, create, out, err), cli::kExitOk) << err.str();
  const std::string id = out.str().substr(0, out.str().size() - 1);
  EXPECT_EQ(Get(id).revision().git().commit(), "v1.0");

  cli::DeployStopOptions stop;
  stop.id = id;
  out.str("");
  ASSERT_EQ(cli::DeployStop(*stub_, stop, out, err), cli::kExitOk);
  EXPECT_EQ(out.str(), absl::StrCat("deployment ", id, " Stopped\n"));

  create.build_id = "app:1";  // and --project: usage error, no call
  EXPECT_EQ(cli::DeployCreate(*stub_, create, out, err), cli::kExitUsage);
  create.project.clear();
  create.commit.clear();
  create.group = "nope";
  err.str("");
  EXPECT_EQ(cli::DeployCreate(*stub_, create, out, err), cli::kExitFailure);
  EXPECT_THAT(err.str(), StartsWith("kiln: NOT_FOUND: deployment group nope"));

  cli::DeployGetOptions get;
  get.id = "d-NOPE00000";
  err.str("");
  EXPECT_EQ(cli::DeployGet(*stub_, get, out, err), cli::kExitFailure);
  EXPECT_EQ(err.str(), "kiln: NOT_FOUND: deployment d-NOPE00000 not found\n");

  cli::DeployGroupApplyOptions apply;
  apply.file = WriteFile("bad.yaml", "application: web\nname: prod\ncolour: blue\n");
  err.str("");
  EXPECT_EQ(cli::DeployGroupApply(*stub_, apply, out, err), cli::kExitFailure);
  EXPECT_THAT(err.str(), StartsWith(absl::StrCat("kiln: ", apply.file, ":3:1: colour: unknown key")));
}

}  // namespace
}  // namespace kiln::test
