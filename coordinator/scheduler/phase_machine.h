// CodeBuild's build-phase transitions as a pure function (CodeBuild User Guide, view-build-details
// "Build phase transitions"; reference/aws-semantics.md §1.8). Thread-safe (stateless).
#ifndef KILN_COORDINATOR_SCHEDULER_PHASE_MACHINE_H_
#define KILN_COORDINATOR_SCHEDULER_PHASE_MACHINE_H_

#include "kiln/v1/agent.pb.h"
#include "kiln/v1/build.pb.h"

namespace kiln::coordinator {

// The phase to run after `result.phase()` ended with `result.status()`:
//  - success: the next phase in order (PROVISIONING → DOWNLOAD_SOURCE → INSTALL → PRE_BUILD → BUILD →
//    POST_BUILD → UPLOAD_ARTIFACTS → FINALIZING → COMPLETED);
//  - PROVISIONING, DOWNLOAD_SOURCE, INSTALL or PRE_BUILD FAILED: FINALIZING;
//  - BUILD FAILED: POST_BUILD (CODEBUILD_BUILD_SUCCEEDING=0); POST_BUILD FAILED: UPLOAD_ARTIFACTS;
//    UPLOAD_ARTIFACTS FAILED: FINALIZING;
//  - FAILED with skip_to_finalizing (on-failure ABORT): FINALIZING; with continue_on_failure
//    (on-failure CONTINUE): the next phase in order;
//  - TIMED_OUT, STOPPED or FAULT: FINALIZING (COMPLETED if it was FINALIZING itself).
// FINALIZING always leads to COMPLETED.
kiln::v1::BuildPhaseType::Value NextPhase(const kiln::v1::PhaseResult& result);

// The build's final status from its phases: TIMED_OUT, STOPPED or FAULT if any phase ended so (in that
// order of precedence), else FAILED if any phase FAILED, else SUCCEEDED.
kiln::v1::BuildStatus::Value FinalStatus(const kiln::v1::Build& build);

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_SCHEDULER_PHASE_MACHINE_H_
