// AgentClient against a scripted fake coordinator (a real gRPC server on 127.0.0.1:0).
#include "agent/client/agent_client.h"

#include <stdlib.h>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kiln/v1/agent.grpc.pb.h"

namespace kiln::agent {
namespace {

using kiln::v1::AgentMessage;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;
using kiln::v1::CoordinatorMessage;

CoordinatorMessage Provisioning(const std::string& id, int64_t first_log_seq) {
  CoordinatorMessage m;
  auto* r = m.mutable_run_phase();
  r->set_build_id(id);
  r->set_phase(BuildPhaseType::PROVISIONING);
  r->mutable_job()->set_build_id(id);
  r->mutable_job()->set_first_log_seq(first_log_seq);
  return m;
}

// Plays one scripted session: welcome, PROVISIONING, then (after its result) ReleaseBuild immediately
// followed by PROVISIONING of the same build again, as a coordinator does when it requeues a build
// and gives it back to the same agent. Records every message the agent sends.
class ScriptedCoordinator final : public kiln::v1::AgentService::Service {
 public:
  grpc::Status Connect(grpc::ServerContext*,
                       grpc::ServerReaderWriter<CoordinatorMessage, AgentMessage>* stream) override {
    AgentMessage in;
    if (!stream->Read(&in) || !in.has_hello()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello");
    CoordinatorMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_millis(100);
    stream->Write(welcome);
    stream->Write(Provisioning("app:1", 0));
    int results = 0;
    while (stream->Read(&in)) {
      {
        absl::MutexLock l(&mu_);
        received_.push_back(in);
      }
      if (!in.has_phase_result()) continue;
      if (++results == 1) {
        CoordinatorMessage release;
        release.mutable_release_build()->set_build_id("app:1");
        stream->Write(release);
        stream->Write(Provisioning("app:1", 5));
      } else {
        done_.Notify();
        break;
      }
    }
    return grpc::Status::OK;
  }
  bool WaitDone() { return done_.WaitForNotificationWithTimeout(absl::Seconds(30)); }
  std::vector<AgentMessage> received() {
    absl::MutexLock l(&mu_);
    return received_;
  }

 private:
  absl::Mutex mu_;
  std::vector<AgentMessage> received_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

// Logs one line per phase and succeeds.
class EchoRunner final : public BuildRunner {
 public:
  explicit EchoRunner(RunnerContext ctx) : ctx_(std::move(ctx)) {}
  kiln::v1::PhaseResult RunPhase(BuildPhaseType::Value phase, bool) override {
    ctx_.output("phase ran\n");
    kiln::v1::PhaseResult r;
    r.set_status(BuildStatus::SUCCEEDED);
    return r;
  }
  void Stop(BuildStatus::Value, std::string) override {}

 private:
  RunnerContext ctx_;
};

TEST(AgentClientTest, ABuildReleasedAndGivenBackStartsAFreshAttemptContinuingItsLog) {
  ScriptedCoordinator coordinator;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&coordinator);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  char tmpl[] = "/tmp/kiln-agent-client-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  absl::Mutex mu;
  int runners_made = 0;
  AgentClient::Options o;
  o.coordinators = {"127.0.0.1:" + std::to_string(port)};
  o.work_dir = tmpl;
  o.agent_id = "agent-under-test";
  o.runner_factory = [&](const kiln::v1::BuildJob&, RunnerContext ctx)
      -> absl::StatusOr<std::unique_ptr<BuildRunner>> {
    absl::MutexLock l(&mu);
    ++runners_made;
    return std::unique_ptr<BuildRunner>(new EchoRunner(std::move(ctx)));
  };
  auto client = AgentClient::Create(o);
  ASSERT_TRUE(client.ok()) << client.status();
  (*client)->Start();
  ASSERT_TRUE(coordinator.WaitDone()) << "the second attempt never reported a result";
  (*client)->Stop();
  server->Shutdown();

  {
    absl::MutexLock l(&mu);
    EXPECT_EQ(runners_made, 2);
  }
  std::vector<int64_t> chunk_seqs;
  int results = 0;
  for (const auto& m : coordinator.received()) {
    if (m.has_log_chunk()) chunk_seqs.push_back(m.log_chunk().seq());
    if (m.has_phase_result()) ++results;
  }
  EXPECT_EQ(results, 2);
  // The first attempt logs seq 0; the second continues from the first_log_seq it was given.
  EXPECT_THAT(chunk_seqs, ::testing::ElementsAre(0, 5));
  std::string cmd = std::string("rm -rf '") + tmpl + "'";
  ASSERT_EQ(system(cmd.c_str()), 0);
}

}  // namespace
}  // namespace kiln::agent
