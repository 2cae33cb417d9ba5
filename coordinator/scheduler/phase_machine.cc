#include "coordinator/scheduler/phase_machine.h"

namespace kiln::coordinator {

using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;

namespace {

BuildPhaseType::Value Successor(BuildPhaseType::Value p) {
  switch (p) {
    case BuildPhaseType::SUBMITTED: return BuildPhaseType::QUEUED;
    case BuildPhaseType::QUEUED: return BuildPhaseType::PROVISIONING;
    case BuildPhaseType::PROVISIONING: return BuildPhaseType::DOWNLOAD_SOURCE;
    case BuildPhaseType::DOWNLOAD_SOURCE: return BuildPhaseType::INSTALL;
    case BuildPhaseType::INSTALL: return BuildPhaseType::PRE_BUILD;
    case BuildPhaseType::PRE_BUILD: return BuildPhaseType::BUILD;
    case BuildPhaseType::BUILD: return BuildPhaseType::POST_BUILD;
    case BuildPhaseType::POST_BUILD: return BuildPhaseType::UPLOAD_ARTIFACTS;
    case BuildPhaseType::UPLOAD_ARTIFACTS: return BuildPhaseType::FINALIZING;
    default: return BuildPhaseType::COMPLETED;
  }
}

}  // namespace

BuildPhaseType::Value NextPhase(const kiln::v1::PhaseResult& result) {
  const BuildPhaseType::Value phase = result.phase();
  if (phase == BuildPhaseType::FINALIZING) return BuildPhaseType::COMPLETED;
  switch (result.status()) {
    case BuildStatus::SUCCEEDED:
      return Successor(phase);
    case BuildStatus::FAILED:
      if (result.skip_to_finalizing()) return BuildPhaseType::FINALIZING;
      if (result.continue_on_failure()) return Successor(phase);
      switch (phase) {
        case BuildPhaseType::BUILD: return BuildPhaseType::POST_BUILD;
        case BuildPhaseType::POST_BUILD: return BuildPhaseType::UPLOAD_ARTIFACTS;
        default: return BuildPhaseType::FINALIZING;
      }
    default:  // TIMED_OUT, STOPPED, FAULT, or a malformed status
      return BuildPhaseType::FINALIZING;
  }
}

BuildStatus::Value FinalStatus(const kiln::v1::Build& build) {
  bool timed_out = false, stopped = false, fault = false, failed = false;
  for (const auto& p : build.phases()) {
    switch (p.phase_status()) {
      case BuildStatus::TIMED_OUT: timed_out = true; break;
      case BuildStatus::STOPPED: stopped = true; break;
      case BuildStatus::FAULT: fault = true; break;
      case BuildStatus::FAILED: failed = true; break;
      default: break;
    }
  }
  if (timed_out) return BuildStatus::TIMED_OUT;
  if (stopped) return BuildStatus::STOPPED;
  if (fault) return BuildStatus::FAULT;
  if (failed) return BuildStatus::FAILED;
  return BuildStatus::SUCCEEDED;
}

}  // namespace kiln::coordinator
