#include "coordinator/scheduler/scheduler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Ids(const std::vector<Assignment>& as) {
  std::vector<std::string> out;
  for (const auto& a : as) out.push_back(a.build_id);
  return out;
}

TEST(SchedulerTest, NothingRunsWithoutAgents) {
  Scheduler s;
  s.Enqueue({"b1", "p", 1, {}});
  EXPECT_THAT(s.Schedule(), IsEmpty());
  EXPECT_EQ(s.TotalQueued(), 1);
}

TEST(SchedulerTest, FleetCapacityIsTheAgentsFreeSlots) {
  Scheduler s;
  s.AddAgent("a", {}, 2);
  for (int i = 1; i <= 3; ++i) s.Enqueue({"b" + std::to_string(i), "p", i, {}});
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("b1", "b2"));
  EXPECT_EQ(s.FreeSlots(), 0);
  s.Release("b1");
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("b3"));
}

TEST(SchedulerTest, ProjectLimitHoldsAndFifoWithinTheProject) {
  Scheduler s;
  s.SetProjectLimit("p", 1);
  s.AddAgent("a", {}, 4);
  s.Enqueue({"b2", "p", 2, {}});
  s.Enqueue({"b1", "p", 1, {}});  // enqueued later, submitted earlier: runs first
  s.Enqueue({"b3", "p", 3, {}});
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("b1"));
  EXPECT_THAT(s.Schedule(), IsEmpty());
  EXPECT_EQ(s.RunningCount("p"), 1);
  s.Release("b1");
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("b2"));
  s.Release("b2");
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("b3"));
}

TEST(SchedulerTest, ProjectsAreServedRoundRobin) {
  Scheduler s;
  s.AddAgent("a", {}, 4);
  for (int i = 1; i <= 3; ++i) s.Enqueue({"x" + std::to_string(i), "x", i, {}});
  for (int i = 4; i <= 6; ++i) s.Enqueue({"y" + std::to_string(i), "y", i, {}});
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("x1", "y4", "x2", "y5"));
}

TEST(SchedulerTest, RoutingNeedsEveryLabelAndDoesNotBlockOtherProjects) {
  Scheduler s;
  s.AddAgent("plain", {{"os", "linux"}}, 1);
  s.Enqueue({"gpu-build", "gpu", 1, {{"gpu", "true"}}});
  s.Enqueue({"web-build", "web", 2, {{"os", "linux"}}});
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("web-build"));
  EXPECT_TRUE(s.IsQueued("gpu-build"));
  s.AddAgent("gpu-box", {{"os", "linux"}, {"gpu", "true"}}, 1);
  auto as = s.Schedule();
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].agent_id, "gpu-box");
}

TEST(SchedulerTest, PrefersTheAgentThatLastBuiltTheProject) {
  Scheduler s;
  s.AddAgent("a", {}, 1);
  s.AddAgent("b", {}, 3);  // more free slots, but not warm
  s.Enqueue({"p1", "p", 1, {}});
  auto first = s.Schedule();
  ASSERT_EQ(first.size(), 1u);
  const std::string warm = first[0].agent_id;
  s.Release("p1");
  s.Enqueue({"p2", "p", 2, {}});
  auto second = s.Schedule();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].agent_id, warm);
}

TEST(SchedulerTest, PrefersTheAgentHoldingTheProjectsCacheOverTheLastOne) {
  Scheduler s;
  s.AddAgent("a", {}, 4);
  s.AddAgent("cached", {}, 1);
  s.SetWarmProjects("cached", {"p"});
  s.Enqueue({"p1", "p", 1, {}});
  s.Enqueue({"q1", "q", 2, {}});
  auto first = s.Schedule();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].agent_id, "cached");  // p: its cache is there, although `a` has more slots
  EXPECT_EQ(first[1].agent_id, "a");       // q: nobody holds its cache; most free slots
  s.Release("q1");
  s.AddWarmProject("a", "q");
  s.Enqueue({"p2", "p", 3, {}});  // `cached` is busy: the cache is a preference, not a need
  s.Enqueue({"q2", "q", 4, {}});
  auto second = s.Schedule();
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].agent_id, "a");
  EXPECT_EQ(second[1].agent_id, "a");
}

TEST(SchedulerTest, RemovedAgentGetsNothingButItsBuildsStillCountAgainstTheLimit) {
  Scheduler s;
  s.SetProjectLimit("p", 1);
  s.AddAgent("a", {}, 1);
  s.Enqueue({"b1", "p", 1, {}});
  ASSERT_EQ(s.Schedule().size(), 1u);
  s.RemoveAgent("a");
  s.AddAgent("c", {}, 1);
  s.Enqueue({"b2", "p", 2, {}});
  EXPECT_THAT(s.Schedule(), IsEmpty());  // b1 still holds the project's only slot
  s.Release("b1");
  EXPECT_THAT(Ids(s.Schedule()), ElementsAre("b2"));
}

TEST(SchedulerTest, MarkRunningCountsRecoveredBuilds) {
  Scheduler s;
  s.SetProjectLimit("p", 1);
  s.MarkRunning("old", "p", "a");
  s.AddAgent("a", {}, 1);
  s.Enqueue({"new", "p", 5, {}});
  EXPECT_THAT(s.Schedule(), IsEmpty());
  EXPECT_EQ(s.FreeSlots(), 0);
}

TEST(SchedulerTest, RemoveQueuedTakesABuildOutOfTheQueue) {
  Scheduler s;
  s.Enqueue({"b1", "p", 1, {}});
  EXPECT_TRUE(s.RemoveQueued("b1"));
  EXPECT_FALSE(s.RemoveQueued("b1"));
  s.AddAgent("a", {}, 1);
  EXPECT_THAT(s.Schedule(), IsEmpty());
}

}  // namespace
}  // namespace kiln::coordinator
