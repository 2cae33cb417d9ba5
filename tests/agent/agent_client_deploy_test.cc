// AgentClient's deployment path against a scripted fake coordinator (a real gRPC server on
// 127.0.0.1:0): DeployHost → DownloadRevision → real deploy engine and hook scripts → DeployLog and
// DeployEventResult on the stream; results resent after a reconnect; StopDeployment.
#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "agent/client/agent_client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kiln/v1/agent.grpc.pb.h"
#include "tests/testing/git_repo.h"

namespace kiln::agent {
namespace {

namespace fs = std::filesystem;
using kiln::v1::AgentMessage;
using kiln::v1::CoordinatorMessage;
using kiln::v1::DeployEventResult;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

void WriteZip(const fs::path& zip, const std::map<std::string, std::string>& files) {
  struct archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  ASSERT_EQ(archive_write_open_filename(a, zip.c_str()), ARCHIVE_OK);
  for (const auto& [name, content] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, content.size());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0755);
    archive_write_header(a, e);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// A coordinator whose sessions are scripted by `on_message(session, message, stream)`: it
// answers the hello with Welcome, sends `first` (if set) and hands every later agent message to
// the script, which returns false to end the session (the agent then reconnects). Serves
// DownloadRevision from `zip`.
class ScriptedCoordinator final : public kiln::v1::AgentService::Service {
 public:
  using Stream = grpc::ServerReaderWriter<CoordinatorMessage, AgentMessage>;
  std::function<bool(int session, const AgentMessage&, Stream*)> on_message;
  CoordinatorMessage first;
  fs::path zip;

  grpc::Status Connect(grpc::ServerContext*, Stream* stream) override {
    AgentMessage in;
    if (!stream->Read(&in) || !in.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello");
    }
    int session;
    {
      absl::MutexLock l(&mu_);
      session = ++sessions_;
    }
    CoordinatorMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_millis(1000);
    stream->Write(welcome);
    if (session == 1 && first.kind_case() != CoordinatorMessage::KIND_NOT_SET) stream->Write(first);
    while (stream->Read(&in)) {
      if (in.has_heartbeat()) continue;
      if (!on_message(session, in, stream)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status DownloadRevision(
      grpc::ServerContext*, const kiln::v1::DownloadRevisionRequest* req,
      grpc::ServerWriter<kiln::v1::DownloadRevisionResponse>* writer) override {
    {
      absl::MutexLock l(&mu_);
      download_requests_.push_back(absl::StrCat(req->agent_id(), "/", req->deployment_id()));
    }
    std::ifstream in(zip, std::ios::binary);
    char buf[300];
    kiln::v1::DownloadRevisionResponse resp;
    while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
      resp.set_data(buf, static_cast<size_t>(in.gcount()));
      if (!writer->Write(resp)) break;
    }
    return grpc::Status::OK;
  }

  std::vector<std::string> download_requests() {
    absl::MutexLock l(&mu_);
    return download_requests_;
  }

 private:
  absl::Mutex mu_;
  int sessions_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> download_requests_ ABSL_GUARDED_BY(mu_);
};

class AgentClientDeployTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::path(test::MakeTempDir("kiln_agent_client_deploy")).lexically_normal();
    coordinator_.zip = tmp_ / "rev.zip";
  }
  void TearDown() override {
    if (client_) client_->Stop();
    if (server_) server_->Shutdown();
    fs::remove_all(tmp_);
  }

  void Start() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&coordinator_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    AgentClient::Options o;
    o.coordinators = {absl::StrCat("127.0.0.1:", port)};
    o.work_dir = (tmp_ / "agent").string();
    o.agent_id = "agent-1";
    o.min_backoff = absl::Milliseconds(20);
    o.runner_factory = [](const kiln::v1::BuildJob&,
                          RunnerContext) -> absl::StatusOr<std::unique_ptr<BuildRunner>> {
      return absl::UnimplementedError("no builds");
    };
    auto client = AgentClient::Create(o);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    client_->Start();
  }

  // A DeployHost of a build-artifact revision with the given hook scripts (bodies after #!/bin/sh).
  CoordinatorMessage DeployHost(const std::map<std::string, std::string>& hooks) {
    std::string yaml = "version: 0.0\nos: linux\nhooks:\n";
    std::map<std::string, std::string> files;
    for (const auto& [event, body] : hooks) {
      absl::StrAppend(&yaml, "  ", event, ":\n    - location: scripts/", event, ".sh\n");
      files["scripts/" + event + ".sh"] = "#!/bin/sh\n" + body + "\n";
    }
    files["appspec.yml"] = yaml;
    WriteZip(coordinator_.zip, files);
    CoordinatorMessage m;
    auto* h = m.mutable_deploy_host();
    h->set_deployment_id("d-1");
    h->set_application("app");
    h->set_deployment_group("group");
    h->set_deployment_group_id("dg-1");
    h->mutable_revision()->mutable_build_artifact()->set_build_id("proj:1");
    return m;
  }

  fs::path tmp_;
  ScriptedCoordinator coordinator_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<AgentClient> client_;
};

std::vector<std::string> Statuses(const std::vector<DeployEventResult>& results) {
  std::vector<std::string> out;
  for (const auto& r : results) out.push_back(r.event().status());
  return out;
}

TEST_F(AgentClientDeployTest, DeploymentRunsOverTheStreamAndItsResultsAreResentAfterAReconnect) {
  absl::Mutex mu;
  std::vector<DeployEventResult> first_session, second_session;
  std::string log;
  absl::Notification resent;
  coordinator_.first = DeployHost({{"ApplicationStart", "echo hello from $DEPLOYMENT_ID"}});
  coordinator_.on_message = [&](int session, const AgentMessage& m, ScriptedCoordinator::Stream*) {
    absl::MutexLock l(&mu);
    if (m.has_deploy_log()) log += m.deploy_log().data();
    if (!m.has_deploy_event_result()) return true;
    if (session == 1) {
      first_session.push_back(m.deploy_event_result());
      return !m.deploy_event_result().host_done();  // drop the stream: the agent must resend
    }
    second_session.push_back(m.deploy_event_result());
    if (m.deploy_event_result().host_done() && !resent.HasBeenNotified()) resent.Notify();
    return true;
  };
  Start();
  ASSERT_TRUE(resent.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::MutexLock l(&mu);
  ASSERT_EQ(first_session.size(), 7u);
  EXPECT_THAT(Statuses(first_session), ::testing::Each("Succeeded"));
  EXPECT_TRUE(first_session.back().host_done());
  EXPECT_THAT(log, HasSubstr("[stdout]hello from d-1\n"));
  EXPECT_THAT(coordinator_.download_requests(), ElementsAre("agent-1/d-1"));
  ASSERT_EQ(second_session.size(), 7u);
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(second_session[i].SerializeAsString(), first_session[i].SerializeAsString());
  }
  EXPECT_TRUE(fs::exists(tmp_ / "agent/deployment-root/dg-1/d-1/deployment-archive/appspec.yml"));
}

TEST_F(AgentClientDeployTest, StopDeploymentKillsTheRunningHook) {
  absl::Mutex mu;
  std::vector<DeployEventResult> results;
  std::string log;
  bool stop_sent = false;
  absl::Notification done;
  coordinator_.first = DeployHost({{"ApplicationStart", "echo started\nexec sleep 60"}});
  coordinator_.on_message = [&](int, const AgentMessage& m, ScriptedCoordinator::Stream* stream) {
    absl::MutexLock l(&mu);
    if (m.has_deploy_log()) log += m.deploy_log().data();
    if (!stop_sent && log.find("[stdout]started\n") != std::string::npos) {
      stop_sent = true;
      CoordinatorMessage stop;
      stop.mutable_stop_deployment()->set_deployment_id("d-1");
      stream->Write(stop);
    }
    if (m.has_deploy_event_result()) {
      results.push_back(m.deploy_event_result());
      if (m.deploy_event_result().host_done()) done.Notify();
    }
    return true;
  };
  Start();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::MutexLock l(&mu);
  EXPECT_THAT(Statuses(results), ElementsAre("Succeeded", "Succeeded", "Succeeded", "Succeeded",
                                             "Succeeded", "Failed", "Skipped"));
  EXPECT_THAT(results[5].event().message(), HasSubstr("was stopped"));
}

}  // namespace
}  // namespace kiln::agent
