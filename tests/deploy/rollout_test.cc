// Rollout by minimum healthy hosts: every example and rule of reference/aws-semantics.md §4.9.
#include "deploy/rollout.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::deploy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<HostState> Hosts(int n) {
  std::vector<HostState> hosts;
  for (int i = 0; i < n; ++i) hosts.push_back({"h" + std::to_string(i), true, RevisionHealth::kOld});
  return hosts;
}

// Runs the rollout to the end, each batch finishing together; hosts in `fail` fail.
// Returns the batch sizes.
std::vector<size_t> Drive(Rollout& r, const std::set<std::string>& fail = {}) {
  std::vector<size_t> sizes;
  while (!r.Done()) {
    std::vector<std::string> batch = r.NextBatch();
    if (batch.empty()) break;
    sizes.push_back(batch.size());
    for (const std::string& id : batch) r.HostFinished(id, !fail.count(id));
  }
  EXPECT_TRUE(r.Done());
  return sizes;
}

TEST(RolloutTest, HalfAtATimeNineHostsDeploysBatchesOfFourAndNeedsFive) {
  Rollout r(Hosts(9), DeploymentConfig::HalfAtATime());
  EXPECT_EQ(r.min_healthy(), 5);
  EXPECT_EQ(r.required_successes(), 5);
  EXPECT_THAT(Drive(r), ElementsAre(4, 4, 1));
  EXPECT_TRUE(r.Result().succeeded);
}

TEST(RolloutTest, HalfAtATimeSucceedsWithExactlyFiveSuccesses) {
  Rollout r(Hosts(9), DeploymentConfig::HalfAtATime());
  EXPECT_THAT(Drive(r, {"h0", "h1", "h2", "h8"}), ElementsAre(4, 1, 1, 1, 1, 1));
  Outcome o = r.Result();
  EXPECT_TRUE(o.succeeded) << o.message;
  EXPECT_EQ(o.succeeded_hosts, 5);
  EXPECT_EQ(o.failed_hosts, 4);
}

TEST(RolloutTest, HalfAtATimeStopsWhenHealthyCountReachesTheMinimum) {
  Rollout r(Hosts(9), DeploymentConfig::HalfAtATime());
  EXPECT_THAT(Drive(r, {"h0", "h1", "h2", "h3"}), ElementsAre(4));
  Outcome o = r.Result();
  EXPECT_FALSE(o.succeeded);
  EXPECT_THAT(o.message, HasSubstr("too few healthy instances"));
  EXPECT_EQ(r.StatusOf("h4"), HostStatus::kSkipped);
  EXPECT_EQ(r.StatusOf("h0"), HostStatus::kFailed);
}

TEST(RolloutTest, HostCountSixOfNineDeploysThreeAtATimeAndNeedsSix) {
  Rollout r(Hosts(9), DeploymentConfig::HostCount(6));
  EXPECT_EQ(r.required_successes(), 6);
  EXPECT_THAT(Drive(r, {"h6", "h7", "h8"}), ElementsAre(3, 3, 3));
  EXPECT_TRUE(r.Result().succeeded);
  EXPECT_EQ(r.Result().succeeded_hosts, 6);
}

TEST(RolloutTest, HostCountSixOfNineFailsBelowSixSuccesses) {
  Rollout r(Hosts(9), DeploymentConfig::HostCount(6));
  Drive(r, {"h0", "h1", "h2"});
  EXPECT_FALSE(r.Result().succeeded);
  EXPECT_EQ(r.Result().succeeded_hosts, 0);
}

TEST(RolloutTest, FleetPercentFortyOfNineDeploysFiveAtATimeAndNeedsFour) {
  Rollout r(Hosts(9), DeploymentConfig::FleetPercent(40));
  EXPECT_EQ(r.min_healthy(), 4);  // 3.6 rounded up
  EXPECT_THAT(Drive(r, {"h0", "h5", "h6", "h7", "h8"}), ElementsAre(5, 4));
  Outcome o = r.Result();
  EXPECT_TRUE(o.succeeded) << o.message;
  EXPECT_EQ(o.succeeded_hosts, 4);
}

TEST(RolloutTest, OneAtATimeDeploysOneHostAtATime) {
  Rollout r(Hosts(9), DeploymentConfig::OneAtATime());
  EXPECT_THAT(Drive(r), ElementsAre(1, 1, 1, 1, 1, 1, 1, 1, 1));
  EXPECT_TRUE(r.Result().succeeded);
}

TEST(RolloutTest, OneAtATimeStopsAtTheFirstFailure) {
  Rollout r(Hosts(9), DeploymentConfig::OneAtATime());
  EXPECT_EQ(Drive(r, {"h2"}).size(), 3u);
  EXPECT_FALSE(r.Result().succeeded);
  EXPECT_THAT(r.Result().message, HasSubstr("OneAtATime stops at the first failure"));
  EXPECT_EQ(r.StatusOf("h3"), HostStatus::kSkipped);
}

TEST(RolloutTest, OneAtATimeSucceedsWhenOnlyTheLastHostFails) {
  Rollout r(Hosts(9), DeploymentConfig::OneAtATime());
  EXPECT_EQ(Drive(r, {"h8"}).size(), 9u);
  EXPECT_TRUE(r.Result().succeeded);
}

TEST(RolloutTest, OneAtATimeSingleHostMustSucceed) {
  Rollout failed(Hosts(1), DeploymentConfig::OneAtATime());
  Drive(failed, {"h0"});
  EXPECT_FALSE(failed.Result().succeeded);
  Rollout ok(Hosts(1), DeploymentConfig::OneAtATime());
  Drive(ok);
  EXPECT_TRUE(ok.Result().succeeded);
}

TEST(RolloutTest, AllAtOnceDeploysEverywhereAndOneSuccessIsEnough) {
  Rollout r(Hosts(9), DeploymentConfig::AllAtOnce());
  EXPECT_THAT(Drive(r, {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"}), ElementsAre(9));
  EXPECT_TRUE(r.Result().succeeded);
}

TEST(RolloutTest, AtLeastOneSuccessIsNeededEvenWithMinimumZero) {  // rules 5 and 6
  Rollout r(Hosts(3), DeploymentConfig::AllAtOnce());
  Drive(r, {"h0", "h1", "h2"});  // e.g. all stopped
  EXPECT_FALSE(r.Result().succeeded);
  EXPECT_THAT(r.Result().message, HasSubstr("at most 0 instances can still succeed and 1 must"));
}

TEST(RolloutTest, MinimumAtLeastFleetSizeFailsAtOnce) {  // rule 4
  Rollout r(Hosts(10), DeploymentConfig::FleetPercent(95));
  EXPECT_EQ(r.min_healthy(), 10);
  EXPECT_TRUE(r.Done());
  EXPECT_THAT(r.NextBatch(), IsEmpty());
  EXPECT_FALSE(r.Result().succeeded);
  EXPECT_THAT(r.Result().message, HasSubstr("rule 4"));
  Rollout count(Hosts(9), DeploymentConfig::HostCount(9));
  EXPECT_TRUE(count.Done());
}

TEST(RolloutTest, SchedulesUnhealthyThenUnknownThenOldThenCurrent) {  // rule 1
  std::vector<HostState> hosts = {{"current", true, RevisionHealth::kCurrent},
                                  {"old", true, RevisionHealth::kOld},
                                  {"unknown", true, RevisionHealth::kUnknown},
                                  {"sick", false, RevisionHealth::kCurrent}};
  Rollout r(hosts, DeploymentConfig::AllAtOnce());
  EXPECT_THAT(r.NextBatch(), ElementsAre("sick", "unknown", "old", "current"));
}

TEST(RolloutTest, NeverLetsHealthyFallBelowMinimumAndStartsBelowItOnlyWithUnhealthyHosts) {
  // rules 2 and 3: 4 hosts, min 2, only one healthy: the unhealthy ones go first, for free.
  std::vector<HostState> hosts = {{"a", true, RevisionHealth::kOld},
                                  {"b", false, RevisionHealth::kOld},
                                  {"c", false, RevisionHealth::kOld},
                                  {"d", false, RevisionHealth::kOld}};
  Rollout r(hosts, DeploymentConfig::HalfAtATime());
  EXPECT_THAT(r.NextBatch(), ElementsAre("b", "c", "d"));
  EXPECT_THAT(r.NextBatch(), IsEmpty());  // a may not go while b-d are in flight
  for (const char* id : {"b", "c", "d"}) r.HostFinished(id, true);
  EXPECT_THAT(r.NextBatch(), ElementsAre("a"));
  r.HostFinished("a", true);
  EXPECT_TRUE(r.Done());
  EXPECT_TRUE(r.Result().succeeded);
}

TEST(RolloutTest, PredefinedConfigurationsByName) {
  EXPECT_EQ(DeploymentConfig::FromName("CodeDeployDefault.HalfAtATime")->value, 50);
  EXPECT_EQ(DeploymentConfig::FromName("")->type, DeploymentConfig::Type::kOneAtATime);
  EXPECT_EQ(DeploymentConfig::FromName("CodeDeployDefault.AllAtOnce")->value, 0);
  EXPECT_EQ(DeploymentConfig::FromName("Nope").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kiln::deploy
