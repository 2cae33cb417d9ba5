// The build controller's state machine with a fake clock, an in-memory store and a fake agent
// connection: leases, queued timeouts, duplicate and stale agent messages, restart recovery.
#include "coordinator/builds/build_controller.h"

#include <stdlib.h>

#include <deque>

#include "absl/synchronization/mutex.h"
#include "coordinator/logs/log_store.h"
#include "coordinator/params/parameter_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/mem_store.h"
#include "tests/testing/status_matchers.h"

namespace kiln::coordinator {
namespace {

using ::kiln::test::FakeClock;
using ::kiln::test::IsOk;
using ::kiln::test::MemStore;
using ::kiln::test::StatusIs;
using ::testing::HasSubstr;
using kiln::v1::Build;
using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;
using kiln::v1::CoordinatorMessage;

// Records what the controller sends to one agent.
class FakeConnection : public AgentConnection {
 public:
  void Send(const CoordinatorMessage& m) override {
    absl::MutexLock l(&mu_);
    sent_.push_back(m);
  }
  // RunPhase messages sent so far, in order.
  std::vector<kiln::v1::RunPhase> RunPhases() {
    absl::MutexLock l(&mu_);
    std::vector<kiln::v1::RunPhase> out;
    for (const auto& m : sent_) {
      if (m.has_run_phase()) out.push_back(m.run_phase());
    }
    return out;
  }
  std::vector<kiln::v1::LogAck> Acks() {
    absl::MutexLock l(&mu_);
    std::vector<kiln::v1::LogAck> out;
    for (const auto& m : sent_) {
      if (m.has_log_ack()) out.push_back(m.log_ack());
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  std::vector<CoordinatorMessage> sent_ ABSL_GUARDED_BY(mu_);
};

class BuildControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-controller-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }
  void TearDown() override {
    controller_.reset();
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }
  // (Re)creates the controller over the same store: a coordinator restart.
  void Open() {
    controller_.reset();
    logs_.reset();
    params_.reset();
    auto logs = LogStore::Open(&store_, dir_);
    ASSERT_THAT(logs.status(), IsOk());
    logs_ = *std::move(logs);
    auto params = ParameterStore::Create(&store_, dir_ + "/secret.key");
    ASSERT_THAT(params.status(), IsOk());
    params_ = *std::move(params);
    BuildController::Options o;
    o.store = &store_;
    o.logs = logs_.get();
    o.params = params_.get();
    o.clock = &clock_;
    o.lease_millis = 10000;
    auto c = BuildController::Create(o);
    ASSERT_THAT(c.status(), IsOk());
    controller_ = *std::move(c);
  }
  void PutProject(int limit = 0, int queued_timeout_minutes = 0) {
    kiln::v1::Project p;
    p.set_name("app");
    p.mutable_source()->set_type("git");
    p.mutable_source()->set_location("/srv/git/app.git");
    p.mutable_source()->set_branch("main");
    p.mutable_source()->set_buildspec("buildspec.yml");
    p.set_concurrent_build_limit(limit);
    p.set_queued_timeout_in_minutes(queued_timeout_minutes);
    ASSERT_THAT(controller_->PutProject(p).status(), IsOk());
  }
  std::string Start() {
    kiln::v1::StartBuildRequest req;
    req.set_project_name("app");
    auto b = controller_->StartBuild(req);
    EXPECT_THAT(b.status(), IsOk());
    return b.ok() ? b->id() : "";
  }
  void Connect(const std::string& agent, FakeConnection* conn,
               std::vector<kiln::v1::HeldBuild> held = {}) {
    kiln::v1::AgentHello h;
    h.set_protocol_version(kiln::v1::ProtocolVersion::V1);
    h.set_agent_id(agent);
    h.set_slots(1);
    for (auto& b : held) *h.add_held_builds() = b;
    ASSERT_THAT(controller_->AgentConnected(h, conn), IsOk());
  }
  void Result(const std::string& agent, const std::string& build, BuildPhaseType::Value phase,
              BuildStatus::Value status = BuildStatus::SUCCEEDED) {
    kiln::v1::AgentMessage m;
    m.mutable_phase_result()->set_build_id(build);
    m.mutable_phase_result()->set_phase(phase);
    m.mutable_phase_result()->set_status(status);
    controller_->HandleAgentMessage(agent, m);
  }
  // Returns false if the controller wants the agent's stream ended (to resend from a gap).
  bool Chunk(const std::string& agent, const std::string& build, int64_t seq, const std::string& data) {
    kiln::v1::AgentMessage m;
    m.mutable_log_chunk()->set_build_id(build);
    m.mutable_log_chunk()->set_seq(seq);
    m.mutable_log_chunk()->set_data(data);
    return controller_->HandleAgentMessage(agent, m);
  }
  Build Get(const std::string& id) {
    auto b = controller_->GetBuild(id);
    EXPECT_THAT(b.status(), IsOk());
    return b.ok() ? *b : Build();
  }

  std::string dir_;
  FakeClock clock_;
  MemStore store_;
  std::unique_ptr<LogStore> logs_;
  std::unique_ptr<ParameterStore> params_;
  std::unique_ptr<BuildController> controller_;
};

TEST_F(BuildControllerTest, QueuedTimeoutEndsTheBuildTimedOutWithAReason) {
  PutProject(0, /*queued_timeout_minutes=*/5);
  const std::string id = Start();
  clock_.Advance(absl::Minutes(5) - absl::Seconds(1));
  controller_->Tick();
  EXPECT_FALSE(Get(id).build_complete());
  clock_.Advance(absl::Seconds(2));
  controller_->Tick();
  Build b = Get(id);
  EXPECT_TRUE(b.build_complete());
  EXPECT_EQ(b.build_status(), BuildStatus::TIMED_OUT);
  const auto& queued = b.phases(1);
  EXPECT_EQ(queued.phase_type(), BuildPhaseType::QUEUED);
  EXPECT_EQ(queued.phase_status(), BuildStatus::TIMED_OUT);
  ASSERT_EQ(queued.contexts_size(), 1);
  EXPECT_EQ(queued.contexts(0).status_code(), "QUEUED_TIMEOUT");
}

TEST_F(BuildControllerTest, LeaseExpiryBeforeAnyPhaseRanRequeuesTheBuild) {
  PutProject();
  FakeConnection a, b;
  Connect("a", &a);
  const std::string id = Start();
  ASSERT_EQ(a.RunPhases().size(), 1u);
  EXPECT_EQ(a.RunPhases()[0].phase(), BuildPhaseType::PROVISIONING);
  controller_->AgentDisconnected("a", &a);
  clock_.Advance(absl::Seconds(11));
  controller_->Tick();
  Build requeued = Get(id);
  EXPECT_EQ(requeued.current_phase(), BuildPhaseType::QUEUED);
  EXPECT_EQ(requeued.agent_id(), "");
  Connect("b", &b);
  ASSERT_EQ(b.RunPhases().size(), 1u);
  EXPECT_EQ(b.RunPhases()[0].build_id(), id);
  EXPECT_TRUE(b.RunPhases()[0].has_job());
}

TEST_F(BuildControllerTest, LeaseExpiryAfterAPhaseRanEndsTheBuildFault) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  Result("a", id, BuildPhaseType::PROVISIONING);
  ASSERT_EQ(a.RunPhases().back().phase(), BuildPhaseType::DOWNLOAD_SOURCE);
  controller_->AgentDisconnected("a", &a);
  clock_.Advance(absl::Seconds(9));
  controller_->Tick();
  EXPECT_FALSE(Get(id).build_complete());  // still within the lease
  clock_.Advance(absl::Seconds(2));
  controller_->Tick();
  Build b = Get(id);
  EXPECT_EQ(b.build_status(), BuildStatus::FAULT);
  const auto& ds = b.phases(b.phases_size() - 2);
  EXPECT_EQ(ds.phase_type(), BuildPhaseType::DOWNLOAD_SOURCE);
  ASSERT_EQ(ds.contexts_size(), 1);
  EXPECT_EQ(ds.contexts(0).status_code(), "AGENT_LOST");
  EXPECT_THAT(ds.contexts(0).message(), HasSubstr("agent a"));
}

TEST_F(BuildControllerTest, HeartbeatsKeepTheLeaseAlive) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  Result("a", id, BuildPhaseType::PROVISIONING);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Seconds(8));
    kiln::v1::AgentMessage hb;
    hb.mutable_heartbeat();
    controller_->HandleAgentMessage("a", hb);
    controller_->Tick();
  }
  EXPECT_FALSE(Get(id).build_complete());
}

TEST_F(BuildControllerTest, DuplicateAndStalePhaseResultsAreAppliedOnce) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  Result("a", id, BuildPhaseType::PROVISIONING);
  Result("a", id, BuildPhaseType::PROVISIONING);             // duplicate
  Result("other", id, BuildPhaseType::DOWNLOAD_SOURCE);      // not this build's agent
  Result("a", id, BuildPhaseType::BUILD);                     // not the current phase
  auto phases = a.RunPhases();
  ASSERT_EQ(phases.size(), 2u);
  EXPECT_EQ(phases[1].phase(), BuildPhaseType::DOWNLOAD_SOURCE);
  EXPECT_EQ(Get(id).current_phase(), BuildPhaseType::DOWNLOAD_SOURCE);
}

TEST_F(BuildControllerTest, LogChunksAreStoredInOrderOnceAndGapsAreNotAcknowledged) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  EXPECT_TRUE(Chunk("a", id, 0, "one "));
  EXPECT_TRUE(Chunk("a", id, 0, "one "));    // resent after a reconnect: acknowledged, not stored again
  EXPECT_FALSE(Chunk("a", id, 2, "three"));  // gap: not stored, not acknowledged; the stream must restart
  EXPECT_TRUE(Chunk("a", id, 1, "two "));
  EXPECT_TRUE(Chunk("a", id, 2, "three"));
  EXPECT_THAT(controller_->ReadLog(id, 0, 1 << 20), ::kiln::test::IsOkAndHolds("one two three"));
  std::vector<int64_t> acked;
  for (const auto& ack : a.Acks()) acked.push_back(ack.acked_seq());
  EXPECT_THAT(acked, ::testing::ElementsAre(0));  // the duplicate; the rest with the phase result
  Result("a", id, BuildPhaseType::PROVISIONING);
  ASSERT_FALSE(a.Acks().empty());
  EXPECT_EQ(a.Acks().back().acked_seq(), 2);
}

TEST_F(BuildControllerTest, StopRacingWithAPhaseThatSucceedsStillEndsStopped) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  ASSERT_THAT(controller_->StopBuild(id).status(), IsOk());
  Result("a", id, BuildPhaseType::PROVISIONING);  // finished before the agent saw the stop
  auto phases = a.RunPhases();
  ASSERT_EQ(phases.back().phase(), BuildPhaseType::FINALIZING);
  EXPECT_FALSE(phases.back().build_succeeding());
  Result("a", id, BuildPhaseType::FINALIZING);
  EXPECT_EQ(Get(id).build_status(), BuildStatus::STOPPED);
}

TEST_F(BuildControllerTest, LateChunksOfACompletedBuildAreAcknowledgedButNotStored) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  EXPECT_TRUE(Chunk("a", id, 0, "log"));
  Result("a", id, BuildPhaseType::PROVISIONING, BuildStatus::FAULT);
  Result("a", id, BuildPhaseType::FINALIZING);
  ASSERT_TRUE(Get(id).build_complete());
  EXPECT_TRUE(Chunk("a", id, 1, "late"));
  EXPECT_TRUE(Chunk("a", "no-such-build", 0, "junk"));
  EXPECT_THAT(controller_->ReadLog(id, 0, 100), ::kiln::test::IsOkAndHolds("log"));
  EXPECT_EQ(Get(id).log_size_bytes(), 3);
  EXPECT_EQ(a.Acks().back().acked_seq(), 0);  // the junk chunk was acknowledged too
  EXPECT_THAT(controller_->ReadLog("no-such-build", 0, 100), ::kiln::test::IsOkAndHolds(""));
}

TEST_F(BuildControllerTest, ARequeuedBuildContinuesItsLogNumbering) {
  PutProject();
  FakeConnection a, b;
  Connect("a", &a);
  const std::string id = Start();
  EXPECT_TRUE(Chunk("a", id, 0, "first attempt\n"));
  controller_->AgentDisconnected("a", &a);
  clock_.Advance(absl::Seconds(11));
  controller_->Tick();  // lease expired in PROVISIONING: requeued
  Connect("b", &b);
  ASSERT_EQ(b.RunPhases().size(), 1u);
  EXPECT_EQ(b.RunPhases()[0].job().first_log_seq(), 1);
}

TEST_F(BuildControllerTest, RestartKeepsQueuedBuildsRunningBuildsAndNumbering) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string running = Start();
  const std::string queued = Start();
  Result("a", running, BuildPhaseType::PROVISIONING);  // now in DOWNLOAD_SOURCE on agent a

  Open();  // the coordinator restarts; agent a has not reconnected yet
  EXPECT_EQ(Get(running).current_phase(), BuildPhaseType::DOWNLOAD_SOURCE);
  EXPECT_EQ(Get(queued).current_phase(), BuildPhaseType::QUEUED);

  FakeConnection a2;
  kiln::v1::HeldBuild held;
  held.set_build_id(running);
  held.set_phase(BuildPhaseType::DOWNLOAD_SOURCE);
  held.set_running(true);
  Connect("a", &a2, {held});
  EXPECT_TRUE(a2.RunPhases().empty());  // still running there: nothing to resend, no new build
  Result("a", running, BuildPhaseType::DOWNLOAD_SOURCE);
  EXPECT_EQ(Get(running).current_phase(), BuildPhaseType::INSTALL);

  kiln::v1::StartBuildRequest req;
  req.set_project_name("app");
  auto third = controller_->StartBuild(req);
  ASSERT_THAT(third.status(), IsOk());
  EXPECT_EQ(third->build_number(), 3);
}

TEST_F(BuildControllerTest, AgentBackWithoutTheBuildFaultsIt) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  Result("a", id, BuildPhaseType::PROVISIONING);
  controller_->AgentDisconnected("a", &a);
  FakeConnection a2;
  Connect("a", &a2, {});  // the agent restarted and lost its builds
  Build b = Get(id);
  EXPECT_EQ(b.build_status(), BuildStatus::FAULT);
  EXPECT_THAT(b.phases(b.phases_size() - 2).contexts(0).message(), HasSubstr("reconnected without this build"));
}

TEST_F(BuildControllerTest, AgentBehindTheCoordinatorGetsTheCurrentPhaseAgain) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  Result("a", id, BuildPhaseType::PROVISIONING);  // DOWNLOAD_SOURCE sent but lost with the stream
  controller_->AgentDisconnected("a", &a);
  FakeConnection a2;
  kiln::v1::HeldBuild held;
  held.set_build_id(id);
  held.set_phase(BuildPhaseType::PROVISIONING);
  held.set_running(false);
  Connect("a", &a2, {held});
  ASSERT_EQ(a2.RunPhases().size(), 1u);
  EXPECT_EQ(a2.RunPhases()[0].phase(), BuildPhaseType::DOWNLOAD_SOURCE);
}

TEST_F(BuildControllerTest, ParametersGoOnlyToTheAgentHoldingTheBuild) {
  PutProject();
  FakeConnection a;
  Connect("a", &a);
  const std::string id = Start();
  kiln::v1::PutParameterRequest p;
  p.set_name("/app/token");
  p.set_value("t0k3n");
  p.set_type(kiln::v1::Parameter::SECURE_STRING);
  ASSERT_THAT(controller_->PutParameter(p).status(), IsOk());
  kiln::v1::GetBuildParametersRequest req;
  req.set_build_id(id);
  req.add_names("/app/token");
  req.add_names("/app/missing");
  req.set_agent_id("intruder");
  EXPECT_THAT(controller_->GetBuildParameters(req).status(), StatusIs(absl::StatusCode::kPermissionDenied));
  req.set_agent_id("a");
  auto resp = controller_->GetBuildParameters(req);
  ASSERT_THAT(resp.status(), IsOk());
  ASSERT_EQ(resp->parameters_size(), 1);
  EXPECT_EQ(resp->parameters(0).value(), "t0k3n");
  EXPECT_TRUE(resp->parameters(0).mask());
  EXPECT_THAT(resp->missing(), ::testing::ElementsAre("/app/missing"));
}

TEST_F(BuildControllerTest, BadHellosAreRefused) {
  FakeConnection c;
  kiln::v1::AgentHello h;
  h.set_agent_id("a");
  h.set_slots(1);
  EXPECT_THAT(controller_->AgentConnected(h, &c), StatusIs(absl::StatusCode::kFailedPrecondition));
  h.set_protocol_version(kiln::v1::ProtocolVersion::V1);
  h.set_agent_id("bad id/with slash");
  EXPECT_THAT(controller_->AgentConnected(h, &c), StatusIs(absl::StatusCode::kInvalidArgument));
  h.set_agent_id("a");
  h.set_slots(0);
  EXPECT_THAT(controller_->AgentConnected(h, &c), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace kiln::coordinator
