// CodeBuild's phase transitions (reference/aws-semantics.md §1.8), one test per rule.
#include "coordinator/scheduler/phase_machine.h"

#include "gtest/gtest.h"

namespace kiln::coordinator {
namespace {

using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;

kiln::v1::PhaseResult R(BuildPhaseType::Value phase, BuildStatus::Value status) {
  kiln::v1::PhaseResult r;
  r.set_phase(phase);
  r.set_status(status);
  return r;
}

TEST(PhaseMachineTest, SuccessFollowsTheCodeBuildOrder) {
  const BuildPhaseType::Value order[] = {
      BuildPhaseType::PROVISIONING, BuildPhaseType::DOWNLOAD_SOURCE, BuildPhaseType::INSTALL,
      BuildPhaseType::PRE_BUILD,    BuildPhaseType::BUILD,           BuildPhaseType::POST_BUILD,
      BuildPhaseType::UPLOAD_ARTIFACTS, BuildPhaseType::FINALIZING,  BuildPhaseType::COMPLETED};
  for (size_t i = 0; i + 1 < std::size(order); ++i) {
    EXPECT_EQ(NextPhase(R(order[i], BuildStatus::SUCCEEDED)), order[i + 1]) << i;
  }
}

TEST(PhaseMachineTest, EarlyPhaseFailureGoesToFinalizing) {
  for (auto p : {BuildPhaseType::PROVISIONING, BuildPhaseType::DOWNLOAD_SOURCE, BuildPhaseType::INSTALL,
                 BuildPhaseType::PRE_BUILD}) {
    EXPECT_EQ(NextPhase(R(p, BuildStatus::FAILED)), BuildPhaseType::FINALIZING) << p;
  }
}

TEST(PhaseMachineTest, BuildFailureStillRunsPostBuild) {
  EXPECT_EQ(NextPhase(R(BuildPhaseType::BUILD, BuildStatus::FAILED)), BuildPhaseType::POST_BUILD);
}

TEST(PhaseMachineTest, PostBuildFailureStillAttemptsUploadArtifacts) {
  EXPECT_EQ(NextPhase(R(BuildPhaseType::POST_BUILD, BuildStatus::FAILED)), BuildPhaseType::UPLOAD_ARTIFACTS);
}

TEST(PhaseMachineTest, UploadArtifactsFailureGoesToFinalizing) {
  EXPECT_EQ(NextPhase(R(BuildPhaseType::UPLOAD_ARTIFACTS, BuildStatus::FAILED)), BuildPhaseType::FINALIZING);
}

TEST(PhaseMachineTest, AbortSkipsToFinalizingAndContinueGoesOn) {
  auto abort = R(BuildPhaseType::BUILD, BuildStatus::FAILED);
  abort.set_skip_to_finalizing(true);
  EXPECT_EQ(NextPhase(abort), BuildPhaseType::FINALIZING);
  auto cont = R(BuildPhaseType::INSTALL, BuildStatus::FAILED);
  cont.set_continue_on_failure(true);
  EXPECT_EQ(NextPhase(cont), BuildPhaseType::PRE_BUILD);
}

TEST(PhaseMachineTest, TimeoutStopAndFaultGoToFinalizingThenCompleted) {
  for (auto st : {BuildStatus::TIMED_OUT, BuildStatus::STOPPED, BuildStatus::FAULT}) {
    EXPECT_EQ(NextPhase(R(BuildPhaseType::BUILD, st)), BuildPhaseType::FINALIZING);
    EXPECT_EQ(NextPhase(R(BuildPhaseType::FINALIZING, st)), BuildPhaseType::COMPLETED);
  }
}

TEST(PhaseMachineTest, FinalStatusPrecedence) {
  kiln::v1::Build b;
  auto add = [&](BuildStatus::Value s) { b.add_phases()->set_phase_status(s); };
  add(BuildStatus::SUCCEEDED);
  EXPECT_EQ(FinalStatus(b), BuildStatus::SUCCEEDED);
  add(BuildStatus::FAILED);
  EXPECT_EQ(FinalStatus(b), BuildStatus::FAILED);
  add(BuildStatus::FAULT);
  EXPECT_EQ(FinalStatus(b), BuildStatus::FAULT);
  add(BuildStatus::STOPPED);
  EXPECT_EQ(FinalStatus(b), BuildStatus::STOPPED);
  add(BuildStatus::TIMED_OUT);
  EXPECT_EQ(FinalStatus(b), BuildStatus::TIMED_OUT);
}

}  // namespace
}  // namespace kiln::coordinator
