// Rollout by minimum healthy hosts (reference/aws-semantics.md §4.9).
#include "deploy/rollout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kiln::deploy {
namespace {

int Rank(const HostState& h) {  // rule 1
  if (!h.healthy) return 0;
  switch (h.revision) {
    case RevisionHealth::kUnknown:
      return 1;
    case RevisionHealth::kOld:
      return 2;
    case RevisionHealth::kCurrent:
      return 3;
  }
  return 3;
}

}  // namespace

absl::StatusOr<DeploymentConfig> DeploymentConfig::FromName(std::string_view name) {
  if (name.empty() || name == "CodeDeployDefault.OneAtATime") return OneAtATime();
  if (name == "CodeDeployDefault.HalfAtATime") return HalfAtATime();
  if (name == "CodeDeployDefault.AllAtOnce") return AllAtOnce();
  return absl::NotFoundError(absl::StrCat(
      "unknown deployment configuration '", std::string(name),
      "'; predefined ones are CodeDeployDefault.OneAtATime, CodeDeployDefault.HalfAtATime and "
      "CodeDeployDefault.AllAtOnce"));
}

Rollout::Rollout(std::vector<HostState> hosts, DeploymentConfig config) : config_(config) {
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const HostState& a, const HostState& b) { return Rank(a) < Rank(b); });
  for (HostState& h : hosts) hosts_.push_back(Host{std::move(h)});
  const int n = static_cast<int>(hosts_.size());
  switch (config_.type) {
    case DeploymentConfig::Type::kOneAtATime:
      min_healthy_ = std::max(n - 1, 0);
      break;
    case DeploymentConfig::Type::kHostCount:
      min_healthy_ = std::max(config_.value, 0);
      break;
    case DeploymentConfig::Type::kFleetPercent:  // rounded up (§4.9)
      min_healthy_ = (n * std::max(config_.value, 0) + 99) / 100;
      break;
  }
  if (n == 0) {
    stop_reason_ = "the deployment group has no instances";
  } else if (config_.type != DeploymentConfig::Type::kOneAtATime && min_healthy_ >= n) {
    stop_reason_ = absl::StrCat("the minimum number of healthy instances (", min_healthy_,
                                ") is not less than the number of instances (", n,
                                "), so no instance can be taken offline (§4.9 rule 4)");
  }
}

int Rollout::required_successes() const { return std::max(min_healthy_, 1); }

int Rollout::Count(HostStatus s) const {
  return static_cast<int>(
      std::count_if(hosts_.begin(), hosts_.end(), [s](const Host& h) { return h.status == s; }));
}

int Rollout::Healthy() const {
  int healthy = 0;
  for (const Host& h : hosts_) {
    if (h.status == HostStatus::kSucceeded ||
        (h.status == HostStatus::kPending && h.state.healthy)) {
      ++healthy;
    }
  }
  return healthy;
}

bool Rollout::CanTakeMore() const { return stop_reason_.empty(); }

std::vector<std::string> Rollout::NextBatch() {
  std::vector<std::string> batch;
  if (!CanTakeMore()) return batch;
  const bool one_at_a_time = config_.type == DeploymentConfig::Type::kOneAtATime;
  int in_flight = Count(HostStatus::kInProgress);
  int room = Healthy() - min_healthy_;  // healthy hosts that may go offline now (rule 2)
  for (Host& h : hosts_) {
    if (h.status != HostStatus::kPending) continue;
    if (one_at_a_time && in_flight > 0) break;
    if (h.state.healthy) {
      if (room <= 0) continue;
      --room;
    }
    h.status = HostStatus::kInProgress;
    ++in_flight;
    batch.push_back(h.state.id);
  }
  if (in_flight == 0 && Count(HostStatus::kPending) > 0) {
    // Nothing runs and nothing may start: the healthy count is at the minimum (rule 3).
    stop_reason_ = absl::StrCat("too few healthy instances: ", Healthy(),
                                " healthy, and the minimum is ", min_healthy_, " (§4.9 rule 3)");
  }
  return batch;
}

void Rollout::HostFinished(std::string_view id, bool succeeded) {
  auto it = std::find_if(hosts_.begin(), hosts_.end(),
                         [&](const Host& h) { return h.state.id == id; });
  if (it == hosts_.end() || it->status != HostStatus::kInProgress) return;
  it->status = succeeded ? HostStatus::kSucceeded : HostStatus::kFailed;
  if (succeeded || !CanTakeMore()) return;
  const int pending = Count(HostStatus::kPending);
  const int reachable = Count(HostStatus::kSucceeded) + Count(HostStatus::kInProgress) + pending;
  if (config_.type == DeploymentConfig::Type::kOneAtATime && pending > 0) {
    stop_reason_ = absl::StrCat("instance ", it->state.id,
                                " failed; CodeDeployDefault.OneAtATime stops at the first failure "
                                "unless it is the last instance");
  } else if (reachable < required_successes()) {
    stop_reason_ = absl::StrCat("instance ", it->state.id, " failed; at most ", reachable,
                                " instances can still succeed and ", required_successes(),
                                " must");
  }
}

bool Rollout::Done() const {
  if (Count(HostStatus::kInProgress) > 0) return false;
  return !CanTakeMore() || Count(HostStatus::kPending) == 0;
}

Outcome Rollout::Result() const {
  Outcome o;
  o.done = Done();
  o.succeeded_hosts = Count(HostStatus::kSucceeded);
  o.failed_hosts = Count(HostStatus::kFailed);
  if (!o.done) return o;
  if (!stop_reason_.empty()) {
    o.message = stop_reason_;
  } else if (o.succeeded_hosts < required_successes()) {  // rule 5
    o.message = absl::StrCat(o.succeeded_hosts, " instances succeeded and ",
                             required_successes(), " must");
  } else {
    o.succeeded = true;
  }
  return o;
}

HostStatus Rollout::StatusOf(std::string_view id) const {
  for (const Host& h : hosts_) {
    if (h.state.id != id) continue;
    if (h.status == HostStatus::kPending && Done()) return HostStatus::kSkipped;
    return h.status;
  }
  return HostStatus::kSkipped;
}

}  // namespace kiln::deploy
