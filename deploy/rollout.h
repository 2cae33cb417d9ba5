// Rollout: which hosts of a deployment group to deploy to next, and whether the deployment
// succeeded, by the deployment configuration's minimum healthy hosts
// (reference/aws-semantics.md §4.9). Pure logic for the coordinator; not thread-safe (the caller
// serialises calls).
//
// Algorithm (rules 1-6 of §4.9):
//  * min = HOST_COUNT n, or ceil(N * p / 100) for FLEET_PERCENT p; OneAtATime is min = N - 1 with
//    one host in flight at a time (the API's MOST_CONCURRENCY 1).
//  * healthy = hosts that are healthy and not in flight (not yet started, or succeeded).
//  * NextBatch() takes not-yet-started hosts in the order unhealthy, then revision Unknown, Old,
//    Current (rule 1; ties keep the input order). An unhealthy host can always be taken (it does
//    not lower the healthy count); a healthy one only while healthy - min > 0 (rule 2), so with
//    min 0 the whole fleet goes at once, and a group that started below min only deploys to its
//    unhealthy hosts until successes raise the count (rule 3's exception).
//  * The deployment fails at once if min >= N (rule 4; never for OneAtATime). It stops (no new
//    batches; hosts in flight finish) when it can no longer reach the required successes, or
//    when nothing is in flight and no waiting host may be taken (rule 3). OneAtATime also stops
//    at its first failure unless no host is left to deploy (the last host may fail).
//  * Success needs max(min, 1) successful hosts (rule 5); a stopped host counts as failed
//    (rule 6: report it with HostFinished(id, false)).
// Examples, 9 healthy hosts: HalfAtATime → batches of 4, needs 5; HOST_COUNT 6 → 3 at a time,
// needs 6; FLEET_PERCENT 40 → 5 at a time, needs 4; AllAtOnce → all 9, needs 1.
#ifndef KILN_DEPLOY_ROLLOUT_H_
#define KILN_DEPLOY_ROLLOUT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::deploy {

enum class RevisionHealth { kUnknown, kOld, kCurrent };

struct HostState {
  std::string id;
  bool healthy = true;  // instance health: false = last attempt failed or nothing deployed
  RevisionHealth revision = RevisionHealth::kUnknown;
};

struct DeploymentConfig {
  enum class Type { kOneAtATime, kHostCount, kFleetPercent };
  Type type = Type::kOneAtATime;
  int value = 1;

  static DeploymentConfig OneAtATime() { return {Type::kOneAtATime, 1}; }
  static DeploymentConfig HalfAtATime() { return {Type::kFleetPercent, 50}; }
  static DeploymentConfig AllAtOnce() { return {Type::kFleetPercent, 0}; }
  static DeploymentConfig HostCount(int n) { return {Type::kHostCount, n}; }
  static DeploymentConfig FleetPercent(int p) { return {Type::kFleetPercent, p}; }
  // "CodeDeployDefault.OneAtATime" | ".HalfAtATime" | ".AllAtOnce"; empty = OneAtATime (the
  // default). Errors: NOT_FOUND for any other name.
  static absl::StatusOr<DeploymentConfig> FromName(std::string_view name);
};

enum class HostStatus { kPending, kInProgress, kSucceeded, kFailed, kSkipped };

struct Outcome {
  bool done = false;
  bool succeeded = false;
  int succeeded_hosts = 0;
  int failed_hosts = 0;
  std::string message;  // why it failed; "" while running or on success
};

class Rollout {
 public:
  Rollout(std::vector<HostState> hosts, DeploymentConfig config);

  int min_healthy() const { return min_healthy_; }
  int required_successes() const;

  // Hosts to start now (marked in progress); empty when nothing may start now or Done(). Call
  // it after every HostFinished: it is also where a stall (rule 3) ends the rollout.
  std::vector<std::string> NextBatch();
  // Reports a host started by NextBatch. Unknown ids and hosts not in progress are ignored.
  void HostFinished(std::string_view id, bool succeeded);
  // True when nothing is in flight and nothing more will start.
  bool Done() const;
  Outcome Result() const;
  // kSkipped for hosts never started once the rollout is Done().
  HostStatus StatusOf(std::string_view id) const;

 private:
  struct Host {
    HostState state;
    HostStatus status = HostStatus::kPending;
  };
  int Count(HostStatus s) const;
  int Healthy() const;
  bool CanTakeMore() const;  // no stop condition reached

  std::vector<Host> hosts_;  // in scheduling order (rule 1)
  DeploymentConfig config_;
  int min_healthy_ = 0;
  std::string stop_reason_;
};

}  // namespace kiln::deploy

#endif  // KILN_DEPLOY_ROLLOUT_H_
