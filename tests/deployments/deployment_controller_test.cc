// The deployment controller with a real BuildController, an in-memory store, a fake clock and fake
// agents: rollout by configuration (§4.9), failure, auto-rollback (§4.10), stop, restart recovery,
// agent loss, idempotent agent messages, logs and validation.
#include "coordinator/deployments/deployment_controller.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/deployments/deploy_fixture.h"

namespace kiln::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::SizeIs;

class DeploymentControllerTest : public DeployFixture {};

TEST_F(DeploymentControllerTest, OneAtATimeDeploysOneHostAtATime) {
  Connect("a1");
  Connect("a2");
  Connect("a3");
  Connect("other", {{"role", "db"}});
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  EXPECT_THAT(id, MatchesRegex("d-[A-Z0-9]{9}"));
  EXPECT_EQ(d->status(), "InProgress");
  EXPECT_EQ(d->creator(), "user");
  EXPECT_EQ(d->revision().build_artifact().sha256(), kShaOne);
  ASSERT_THAT(d->targets(), SizeIs(3));  // "other" lacks role=web
  EXPECT_THAT(Conn("a1")->DeployHosts(), ElementsAre(id));
  EXPECT_THAT(Conn("a2")->DeployHosts(), IsEmpty());
  EXPECT_THAT(Conn("other")->DeployHosts(), IsEmpty());

  HostSucceeds("a1", id);
  EXPECT_THAT(Conn("a2")->DeployHosts(), ElementsAre(id));
  EXPECT_THAT(Conn("a3")->DeployHosts(), IsEmpty());
  HostSucceeds("a2", id);
  EXPECT_THAT(Conn("a3")->DeployHosts(), ElementsAre(id));
  HostSucceeds("a3", id);

  Deployment done = Get(id);
  EXPECT_EQ(done.status(), "Succeeded");
  EXPECT_TRUE(done.has_complete_time());
  EXPECT_THAT(done.targets(0).lifecycle_events(), SizeIs(7));
  auto group = deployments_->GetDeploymentGroup("web", "prod");
  ASSERT_THAT(group.status(), IsOk());
  EXPECT_EQ(group->last_successful_deployment_id(), id);
  EXPECT_EQ(group->last_successful_revision().build_artifact().sha256(), kShaOne);
}

TEST_F(DeploymentControllerTest, DeployHostCarriesGroupSettings) {
  Connect("a1");
  kiln::v1::DeploymentGroup g;
  g.set_application("web");
  g.set_name("prod");
  (*g.mutable_agent_labels())["role"] = "web";
  g.set_ignore_application_stop_failures(true);
  g.set_file_exists_behavior("OVERWRITE");
  auto put = deployments_->PutDeploymentGroup(g);
  ASSERT_THAT(put.status(), IsOk());
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  auto hosts = Conn("a1")->DeployHostMessages();
  ASSERT_THAT(hosts, SizeIs(1));
  EXPECT_EQ(hosts[0].application(), "web");
  EXPECT_EQ(hosts[0].deployment_group(), "prod");
  EXPECT_EQ(hosts[0].deployment_group_id(), put->id());
  EXPECT_EQ(hosts[0].revision().build_artifact().sha256(), kShaOne);
  EXPECT_TRUE(hosts[0].ignore_application_stop_failures());
  EXPECT_EQ(hosts[0].file_exists_behavior(), "OVERWRITE");
}

TEST_F(DeploymentControllerTest, HalfAtATimeKeepsHalfTheFleetHealthy) {
  for (const char* a : {"a1", "a2", "a3", "a4"}) Connect(a);
  PutGroup("prod", "CodeDeployDefault.HalfAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  // 4 hosts, minimum 2 healthy: two at a time.
  EXPECT_THAT(Conn("a1")->DeployHosts(), SizeIs(1));
  EXPECT_THAT(Conn("a2")->DeployHosts(), SizeIs(1));
  EXPECT_THAT(Conn("a3")->DeployHosts(), IsEmpty());
  EXPECT_THAT(Conn("a4")->DeployHosts(), IsEmpty());
  HostSucceeds("a1", id);
  EXPECT_THAT(Conn("a3")->DeployHosts(), SizeIs(1));
  EXPECT_THAT(Conn("a4")->DeployHosts(), IsEmpty());
  HostSucceeds("a2", id);
  EXPECT_THAT(Conn("a4")->DeployHosts(), SizeIs(1));
  HostSucceeds("a3", id);
  HostSucceeds("a4", id);
  EXPECT_EQ(Get(id).status(), "Succeeded");
}

TEST_F(DeploymentControllerTest, AllAtOnceSucceedsWithOneHealthyHost) {
  for (const char* a : {"a1", "a2", "a3"}) Connect(a);
  PutGroup("prod", "CodeDeployDefault.AllAtOnce");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  for (const char* a : {"a1", "a2", "a3"}) EXPECT_THAT(Conn(a)->DeployHosts(), SizeIs(1)) << a;
  HostFails("a1", id);
  HostFails("a2", id);
  EXPECT_EQ(Get(id).status(), "InProgress");
  HostSucceeds("a3", id);
  Deployment done = Get(id);
  EXPECT_EQ(done.status(), "Succeeded");
  EXPECT_EQ(TargetStatus(done, "a1"), "Failed");
  EXPECT_EQ(TargetStatus(done, "a3"), "Succeeded");
}

TEST_F(DeploymentControllerTest, OneAtATimeStopsAtFirstFailedHost) {
  for (const char* a : {"a1", "a2", "a3"}) Connect(a);
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  HostFails("a1", id, "BeforeInstall");
  Deployment done = Get(id);
  EXPECT_EQ(done.status(), "Failed");
  EXPECT_THAT(done.error_message(), HasSubstr("host a1 (host-a1)"));
  EXPECT_THAT(done.error_message(), HasSubstr("BeforeInstall failed (ScriptFailed)"));
  EXPECT_THAT(done.error_message(), HasSubstr("script exited with status 1"));
  EXPECT_EQ(TargetStatus(done, "a1"), "Failed");
  EXPECT_EQ(TargetStatus(done, "a2"), "Skipped");
  EXPECT_EQ(TargetStatus(done, "a3"), "Skipped");
  EXPECT_THAT(Conn("a2")->DeployHosts(), IsEmpty());
  // The group has no successful deployment, so a new one may start at once.
  EXPECT_THAT(Deploy("app:1").status(), IsOk());
}

TEST_F(DeploymentControllerTest, IgnoredApplicationStopFailureDoesNotFailTheHost) {
  Connect("a1");
  kiln::v1::DeploymentGroup g;
  g.set_application("web");
  g.set_name("prod");
  (*g.mutable_agent_labels())["role"] = "web";
  g.set_ignore_application_stop_failures(true);
  ASSERT_THAT(deployments_->PutDeploymentGroup(g).status(), IsOk());
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  HostFails("a1", d->id(), "ApplicationStop");  // later events Skipped, none Failed
  EXPECT_EQ(Get(d->id()).status(), "Succeeded");
}

TEST_F(DeploymentControllerTest, FailedDeploymentRollsBackToLastSuccessfulRevision) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.AllAtOnce", nullptr, /*auto_rollback=*/true);
  auto first = Deploy("app:1");
  ASSERT_THAT(first.status(), IsOk());
  HostSucceeds("a1", first->id());
  HostSucceeds("a2", first->id());
  ASSERT_EQ(Get(first->id()).status(), "Succeeded");

  auto second = Deploy("app:2");
  ASSERT_THAT(second.status(), IsOk());
  HostFails("a1", second->id());
  HostFails("a2", second->id(), "ValidateService");

  Deployment failed = Get(second->id());
  EXPECT_EQ(failed.status(), "Failed");
  ASSERT_FALSE(failed.rolled_back_by().empty());
  Deployment rollback = Get(failed.rolled_back_by());
  EXPECT_EQ(rollback.creator(), "codeDeployRollback");
  EXPECT_EQ(rollback.rollback_of(), second->id());
  EXPECT_EQ(rollback.status(), "InProgress");
  EXPECT_EQ(rollback.revision().build_artifact().build_id(), "app:1");
  EXPECT_EQ(rollback.revision().build_artifact().sha256(), kShaOne);
  EXPECT_THAT(Conn("a1")->DeployHosts(), ElementsAre(first->id(), second->id(), rollback.id()));

  // A failed rollback is not rolled back again.
  HostFails("a1", rollback.id());
  HostFails("a2", rollback.id());
  EXPECT_EQ(Get(rollback.id()).status(), "Failed");
  EXPECT_TRUE(Get(rollback.id()).rolled_back_by().empty());
  auto all = deployments_->ListDeployments("web", "prod", 0);
  ASSERT_THAT(all.status(), IsOk());
  ASSERT_THAT(*all, SizeIs(3));
  EXPECT_EQ((*all)[0].id(), rollback.id());  // newest first
}

TEST_F(DeploymentControllerTest, NoRollbackWithoutAutoRollback) {
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto first = Deploy("app:1");
  ASSERT_THAT(first.status(), IsOk());
  HostSucceeds("a1", first->id());
  auto second = Deploy("app:2");
  ASSERT_THAT(second.status(), IsOk());
  HostFails("a1", second->id());
  EXPECT_EQ(Get(second->id()).status(), "Failed");
  EXPECT_TRUE(Get(second->id()).rolled_back_by().empty());
  EXPECT_THAT(Conn("a1")->DeployHosts(), SizeIs(2));
}

TEST_F(DeploymentControllerTest, StopSkipsPendingHostsAndStopsRunningOnes) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  auto stopped = deployments_->StopDeployment(id);
  ASSERT_THAT(stopped.status(), IsOk());
  EXPECT_EQ(stopped->status(), "Stopped");
  EXPECT_EQ(TargetStatus(*stopped, "a1"), "InProgress");
  EXPECT_EQ(TargetStatus(*stopped, "a2"), "Skipped");
  EXPECT_THAT(Conn("a1")->Stops(), ElementsAre(id));
  EXPECT_THAT(Conn("a2")->Stops(), IsEmpty());
  Disconnect("a1");
  EXPECT_THAT(Connect("a1")->Stops(), ElementsAre(id));  // asked again after a reconnect
  EXPECT_THAT(Conn("a1")->DeployHosts(), IsEmpty());

  // The agent kills the hook and reports; the result is recorded, nothing else starts.
  HostFails("a1", id, "Install");
  Deployment done = Get(id);
  EXPECT_EQ(done.status(), "Stopped");
  EXPECT_EQ(TargetStatus(done, "a1"), "Failed");
  EXPECT_THAT(Conn("a2")->DeployHosts(), IsEmpty());
  auto group = deployments_->GetDeploymentGroup("web", "prod");
  EXPECT_TRUE(group->last_successful_deployment_id().empty());
  // Stopping again is a no-op.
  EXPECT_EQ(deployments_->StopDeployment(id)->status(), "Stopped");
  EXPECT_THAT(Conn("a1")->Stops(), SizeIs(1));
  Disconnect("a1");
  EXPECT_THAT(Connect("a1")->Stops(), IsEmpty());  // a1 is done: nothing to stop
}

TEST_F(DeploymentControllerTest, RestartRebuildsTheRolloutFromTheStore) {
  for (const char* a : {"a1", "a2", "a3"}) Connect(a);
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  HostSucceeds("a1", id);
  Event("a2", id, "ApplicationStop", "Succeeded");
  Log("a2", id, "stopping\n");

  Open();  // coordinator restart
  Deployment loaded = Get(id);
  EXPECT_EQ(loaded.status(), "InProgress");
  EXPECT_EQ(TargetStatus(loaded, "a1"), "Succeeded");
  EXPECT_EQ(TargetStatus(loaded, "a2"), "InProgress");
  EXPECT_EQ(TargetStatus(loaded, "a3"), "Pending");
  for (const char* a : {"a1", "a2", "a3"}) Connect(a);
  // Sent again in case it never arrived (the agent ignores a duplicate); nothing to a1 or a3.
  EXPECT_THAT(Conn("a2")->DeployHosts(), ElementsAre(id));
  EXPECT_THAT(Conn("a1")->DeployHosts(), IsEmpty());
  EXPECT_THAT(Conn("a3")->DeployHosts(), IsEmpty());

  // The agent resends its first result (applied once) and carries on.
  HostSucceeds("a2", id);
  Deployment after = Get(id);
  EXPECT_THAT(after.targets(1).lifecycle_events(), SizeIs(7));
  EXPECT_THAT(Conn("a3")->DeployHosts(), ElementsAre(id));  // the rebuilt rollout moves on
  HostSucceeds("a3", id);
  EXPECT_EQ(Get(id).status(), "Succeeded");
  EXPECT_THAT(deployments_->ReadLog(id, "a2", 0, 1 << 20), IsOkAndHolds(std::string("stopping\n")));
}

TEST_F(DeploymentControllerTest, RestartedDeploymentFailsHostWhoseAgentStaysAway) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.AllAtOnce");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  Open();
  Connect("a1");
  clock_.Advance(absl::Milliseconds(kLeaseMillis + 1));
  deployments_->Tick();
  Deployment after = Get(d->id());
  EXPECT_EQ(TargetStatus(after, "a2"), "Failed");
  EXPECT_EQ(TargetStatus(after, "a1"), "InProgress");
  HostSucceeds("a1", d->id());
  EXPECT_EQ(Get(d->id()).status(), "Succeeded");
}

TEST_F(DeploymentControllerTest, DisconnectedAgentFailsItsHostAfterTheLease) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  Disconnect("a1");
  clock_.Advance(absl::Milliseconds(kLeaseMillis - 1));
  deployments_->Tick();
  EXPECT_EQ(TargetStatus(Get(id), "a1"), "InProgress");
  clock_.Advance(absl::Milliseconds(2));
  deployments_->Tick();
  Deployment done = Get(id);
  EXPECT_EQ(TargetStatus(done, "a1"), "Failed");
  EXPECT_EQ(done.status(), "Failed");
  EXPECT_THAT(done.error_message(), HasSubstr("host a1"));
  EXPECT_THAT(done.error_message(), HasSubstr("agent lost"));
  EXPECT_EQ(TargetStatus(done, "a2"), "Skipped");
}

TEST_F(DeploymentControllerTest, AgentReconnectingWithinTheLeaseKeepsDeploying) {
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  Disconnect("a1");
  clock_.Advance(absl::Milliseconds(kLeaseMillis - 1));
  Connect("a1");
  clock_.Advance(absl::Milliseconds(kLeaseMillis));
  deployments_->Tick();
  EXPECT_EQ(TargetStatus(Get(d->id()), "a1"), "InProgress");
  HostSucceeds("a1", d->id());
  EXPECT_EQ(Get(d->id()).status(), "Succeeded");
}

TEST_F(DeploymentControllerTest, DeployHostForDisconnectedAgentIsSentWhenItReconnects) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  FakeAgentConnection* old_a2 = Conn("a2");
  Disconnect("a2");
  HostSucceeds("a1", d->id());  // a2's turn, but it is away
  EXPECT_THAT(old_a2->DeployHosts(), IsEmpty());
  FakeAgentConnection* a2 = Connect("a2");
  EXPECT_THAT(a2->DeployHosts(), ElementsAre(d->id()));
  HostSucceeds("a2", d->id());
  EXPECT_EQ(Get(d->id()).status(), "Succeeded");
}

TEST_F(DeploymentControllerTest, DuplicateEventResultsAreAppliedOnce) {
  for (const char* a : {"a1", "a2", "a3"}) Connect(a);
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  const std::string id = d->id();
  Event("a1", id, "ApplicationStop", "Succeeded");
  Event("a1", id, "ApplicationStop", "Succeeded");
  Event("a1", id, "ApplicationStop", "Failed");  // a final result is never replaced
  Deployment mid = Get(id);
  ASSERT_THAT(mid.targets(0).lifecycle_events(), SizeIs(1));
  EXPECT_EQ(mid.targets(0).lifecycle_events(0).status(), "Succeeded");

  HostSucceeds("a1", id);
  Event("a1", id, "ValidateService", "Failed", /*host_done=*/true);  // resent after a reconnect
  Deployment after = Get(id);
  EXPECT_EQ(TargetStatus(after, "a1"), "Succeeded");
  EXPECT_THAT(after.targets(0).lifecycle_events(), SizeIs(7));
  EXPECT_THAT(Conn("a2")->DeployHosts(), SizeIs(1));
  EXPECT_THAT(Conn("a3")->DeployHosts(), IsEmpty());  // the duplicate did not advance the rollout
  EXPECT_EQ(after.status(), "InProgress");
}

TEST_F(DeploymentControllerTest, MessagesFromNonTargetsAreIgnored) {
  Connect("a1");
  Connect("db", {{"role", "db"}});
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  HostSucceeds("db", d->id());
  Log("db", d->id(), "not mine\n");
  Deployment after = Get(d->id());
  EXPECT_EQ(after.status(), "InProgress");
  EXPECT_THAT(after.targets(0).lifecycle_events(), IsEmpty());
  EXPECT_THAT(deployments_->ReadLog(d->id(), "db", 0, 100), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DeploymentControllerTest, HostLogsAreStoredPerHostAndFollowable) {
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  int changes = 0;
  auto watch = deployments_->Watch(d->id(), [&] { ++changes; });
  ASSERT_THAT(watch.status(), IsOk());
  Log("a1", d->id(), "[stdout] hello\n");
  EXPECT_EQ(changes, 1);
  Log("a1", d->id(), "[stdout] world\n");
  EXPECT_EQ(changes, 2);
  EXPECT_THAT(deployments_->ReadLog(d->id(), "host-a1", 0, 1 << 20),
              IsOkAndHolds(std::string("[stdout] hello\n[stdout] world\n")));
  EXPECT_THAT(deployments_->ReadLog(d->id(), "a1", 9, 5), IsOkAndHolds(std::string("hello")));
  EXPECT_EQ(Get(d->id()).targets(0).log_size_bytes(), 30);
  HostSucceeds("a1", d->id());
  EXPECT_GT(changes, 2);
  watch->reset();
  const int before = changes;
  Open();
  EXPECT_EQ(changes, before);
  EXPECT_THAT(deployments_->ReadLog(d->id(), "a1", 0, 1 << 20),
              IsOkAndHolds(std::string("[stdout] hello\n[stdout] world\n")));
  EXPECT_EQ(Get(d->id()).targets(0).log_size_bytes(), 30);
  EXPECT_THAT(deployments_->Watch("d-NOPE00000", [] {}).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DeploymentControllerTest, GitRevisionCarriesTheProjectLocation) {
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  kiln::v1::CreateDeploymentRequest req;
  req.set_application("web");
  req.set_deployment_group("prod");
  req.mutable_revision()->mutable_git()->set_project("app");
  auto d = deployments_->CreateDeployment(req);
  ASSERT_THAT(d.status(), IsOk());
  EXPECT_EQ(d->revision().git().commit(), "main");  // empty: the project's branch
  auto hosts = Conn("a1")->DeployHostMessages();
  ASSERT_THAT(hosts, SizeIs(1));
  EXPECT_EQ(hosts[0].git_location(), "/srv/git/app.git");
  EXPECT_THAT(deployments_->RevisionForAgent("a1", d->id()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(DeploymentControllerTest, RevisionDownloadIsForHostsInProgressOnly) {
  Connect("a1");
  Connect("a2");
  Connect("db", {{"role", "db"}});
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  auto rev = deployments_->RevisionForAgent("a1", d->id());
  ASSERT_THAT(rev.status(), IsOk());
  EXPECT_EQ(rev->sha256(), kShaOne);
  EXPECT_THAT(deployments_->RevisionForAgent("a2", d->id()),
              StatusIs(absl::StatusCode::kPermissionDenied));  // pending
  EXPECT_THAT(deployments_->RevisionForAgent("db", d->id()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(deployments_->RevisionForAgent("a1", "d-NOPE00000"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(DeploymentControllerTest, PipelineDeploymentsUseTheGroupConfiguration) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.AllAtOnce");
  kiln::v1::Revision r;
  r.mutable_build_artifact()->set_build_id("app:1");
  auto d = deployments_->StartForPipeline("web", "prod", r);
  ASSERT_THAT(d.status(), IsOk());
  EXPECT_EQ(d->creator(), "pipeline");
  EXPECT_EQ(d->deployment_config_name(), "CodeDeployDefault.AllAtOnce");
  EXPECT_THAT(Conn("a2")->DeployHosts(), SizeIs(1));
}

TEST_F(DeploymentControllerTest, CustomMinimumHealthyHosts) {
  for (const char* a : {"a1", "a2", "a3", "a4", "a5"}) Connect(a);
  kiln::v1::MinimumHealthyHosts mhh;
  mhh.set_type(kiln::v1::MinimumHealthyHosts::HOST_COUNT);
  mhh.set_value(3);
  PutGroup("prod", "Custom", &mhh);
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  EXPECT_EQ(d->minimum_healthy_hosts().value(), 3);
  int started = 0;
  for (const char* a : {"a1", "a2", "a3", "a4", "a5"}) started += Conn(a)->DeployHosts().size();
  EXPECT_EQ(started, 2);  // 5 hosts, keep 3 healthy

  mhh.set_value(5);  // rule 4: min >= N fails at once, nothing deployed
  PutGroup("staging", "Custom", &mhh);
  EXPECT_THAT(Deploy("app:1", "staging"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rule 4")));
}

TEST_F(DeploymentControllerTest, CreateDeploymentRefusals) {
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  EXPECT_THAT(Deploy("app:1"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("role=web")));
  Connect("a1");
  EXPECT_THAT(Deploy("app:3"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not succeeded")));
  EXPECT_THAT(Deploy("app:404"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Deploy("app:1", "nope"), StatusIs(absl::StatusCode::kNotFound));
  kiln::v1::CreateDeploymentRequest req;
  req.set_application("web");
  req.set_deployment_group("prod");
  req.mutable_revision()->mutable_build_artifact()->set_build_id("app:1");
  req.mutable_revision()->mutable_build_artifact()->set_artifact("docs");
  EXPECT_THAT(deployments_->CreateDeployment(req), StatusIs(absl::StatusCode::kNotFound, HasSubstr("docs")));
  req.mutable_revision()->Clear();
  EXPECT_THAT(deployments_->CreateDeployment(req), StatusIs(absl::StatusCode::kInvalidArgument));
  req.mutable_revision()->mutable_build_artifact()->set_build_id("app:1");
  req.set_creator("codeDeployRollback");
  EXPECT_THAT(deployments_->CreateDeployment(req), StatusIs(absl::StatusCode::kInvalidArgument));
  req.set_creator("");
  req.set_deployment_config_name("CodeDeployDefault.Fastest");
  EXPECT_THAT(deployments_->CreateDeployment(req), StatusIs(absl::StatusCode::kInvalidArgument));

  ASSERT_THAT(Deploy("app:1").status(), IsOk());
  EXPECT_THAT(Deploy("app:2"), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("in progress")));
}

TEST_F(DeploymentControllerTest, ApplicationAndGroupValidation) {
  EXPECT_THAT(deployments_->CreateApplication("web"), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(deployments_->CreateApplication(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(deployments_->CreateApplication("a/b"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(deployments_->CreateApplication(std::string(101, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(deployments_->CreateApplication(std::string(100, 'a')).status(), IsOk());

  kiln::v1::DeploymentGroup g;
  g.set_application("nope");
  g.set_name("prod");
  EXPECT_THAT(deployments_->PutDeploymentGroup(g), StatusIs(absl::StatusCode::kNotFound));
  g.set_application("web");
  g.set_deployment_config_name("CodeDeployDefault.Fastest");
  EXPECT_THAT(deployments_->PutDeploymentGroup(g), StatusIs(absl::StatusCode::kInvalidArgument));
  g.set_deployment_config_name("Custom");
  g.mutable_minimum_healthy_hosts()->set_type(kiln::v1::MinimumHealthyHosts::FLEET_PERCENT);
  g.mutable_minimum_healthy_hosts()->set_value(100);
  EXPECT_THAT(deployments_->PutDeploymentGroup(g),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0..99")));
  g.mutable_minimum_healthy_hosts()->set_type(kiln::v1::MinimumHealthyHosts::HOST_COUNT);
  g.mutable_minimum_healthy_hosts()->set_value(-1);
  EXPECT_THAT(deployments_->PutDeploymentGroup(g), StatusIs(absl::StatusCode::kInvalidArgument));
  g.set_deployment_config_name("");
  g.set_file_exists_behavior("MERGE");
  EXPECT_THAT(deployments_->PutDeploymentGroup(g), StatusIs(absl::StatusCode::kInvalidArgument));

  g.set_file_exists_behavior("");
  g.set_id("dg-mine");
  auto created = deployments_->PutDeploymentGroup(g);
  ASSERT_THAT(created.status(), IsOk());
  EXPECT_THAT(created->id(), MatchesRegex("dg-[0-9a-f-]{36}"));
  EXPECT_EQ(created->deployment_config_name(), "CodeDeployDefault.OneAtATime");
  EXPECT_EQ(created->file_exists_behavior(), "DISALLOW");
  EXPECT_FALSE(created->has_minimum_healthy_hosts());

  // A replace keeps the id and the last successful deployment.
  Connect("a1");
  g.clear_id();
  auto d = Deploy("app:1");
  ASSERT_THAT(d.status(), IsOk());
  HostSucceeds("a1", d->id());
  g.set_auto_rollback_on_failure(true);
  g.set_last_successful_deployment_id("d-FORGED000");
  auto replaced = deployments_->PutDeploymentGroup(g);
  ASSERT_THAT(replaced.status(), IsOk());
  EXPECT_EQ(replaced->id(), created->id());
  EXPECT_EQ(replaced->last_successful_deployment_id(), d->id());
  EXPECT_TRUE(replaced->auto_rollback_on_failure());
  Open();  // durable
  auto groups = deployments_->ListDeploymentGroups("web");
  ASSERT_THAT(groups.status(), IsOk());
  ASSERT_THAT(*groups, SizeIs(1));
  EXPECT_EQ((*groups)[0].id(), created->id());
  EXPECT_THAT(deployments_->ListDeploymentGroups("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(*deployments_->ListApplications(), SizeIs(2));
}

TEST_F(DeploymentControllerTest, ListDeploymentsFiltersAndLimits) {
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  PutGroup("staging", "CodeDeployDefault.OneAtATime");
  std::vector<std::string> ids;
  for (const char* group : {"prod", "staging", "prod"}) {
    auto d = Deploy("app:1", group);
    ASSERT_THAT(d.status(), IsOk());
    HostSucceeds("a1", d->id());
    ids.push_back(d->id());
  }
  auto prod = deployments_->ListDeployments("web", "prod", 0);
  ASSERT_THAT(prod.status(), IsOk());
  ASSERT_THAT(*prod, SizeIs(2));
  EXPECT_EQ((*prod)[0].id(), ids[2]);
  EXPECT_EQ((*prod)[1].id(), ids[0]);
  auto one = deployments_->ListDeployments("", "", 1);
  ASSERT_THAT(one.status(), IsOk());
  ASSERT_THAT(*one, SizeIs(1));
  EXPECT_EQ((*one)[0].id(), ids[2]);
  EXPECT_THAT(deployments_->ListDeployments("", "", -1), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(DeploymentControllerTest, FailedHostIsDeployedFirstNextTime) {
  Connect("a1");
  Connect("a2");
  PutGroup("prod", "CodeDeployDefault.AllAtOnce");
  auto first = Deploy("app:1");
  ASSERT_THAT(first.status(), IsOk());
  HostSucceeds("a1", first->id());
  HostFails("a2", first->id());
  ASSERT_EQ(Get(first->id()).status(), "Succeeded");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  auto second = Deploy("app:2");
  ASSERT_THAT(second.status(), IsOk());
  // §4.9 rule 1: the unhealthy instance (a2) goes first.
  EXPECT_THAT(Conn("a2")->DeployHosts(), ElementsAre(first->id(), second->id()));
  EXPECT_THAT(Conn("a1")->DeployHosts(), ElementsAre(first->id()));
}

TEST_F(DeploymentControllerTest, StoreFailureIsStickyAndNothingIsSent) {
  Close();
  FaultInjectingStore faulty(&store_);
  auto logs = coordinator::LogStore::Open(&faulty, dir_ + "/logs");
  ASSERT_THAT(logs.status(), IsOk());
  logs_ = *std::move(logs);
  auto params = coordinator::ParameterStore::Create(&faulty, dir_ + "/secret.key");
  ASSERT_THAT(params.status(), IsOk());
  params_ = *std::move(params);
  coordinator::BuildController::Options o;
  o.store = &faulty;
  o.logs = logs_.get();
  o.params = params_.get();
  o.clock = &clock_;
  builds_ = *coordinator::BuildController::Create(o);
  coordinator::DeploymentController::Options dopts;
  dopts.store = &faulty;
  dopts.logs = logs_.get();
  dopts.builds = builds_.get();
  dopts.clock = &clock_;
  deployments_ = *coordinator::DeploymentController::Create(dopts);
  Connect("a1");
  PutGroup("prod", "CodeDeployDefault.OneAtATime");
  faulty.FailWritesAfter(0, absl::UnavailableError("disk gone"));
  EXPECT_THAT(Deploy("app:1"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(Conn("a1")->DeployHosts(), IsEmpty());
  EXPECT_FALSE(deployments_->Healthy());
  Close();  // before `faulty` goes away
}

}  // namespace
}  // namespace kiln::test
