// The scheduler: which queued build runs next, and on which agent. Pure logic: no gRPC, no storage,
// no clock; the build controller feeds it events and persists the decisions it returns.
//
// Rules (ARCHITECTURE.md "Scheduling"):
//  - per-project FIFO queues (by queue_seq); projects are served round robin, one build per turn;
//  - a project never has more than its concurrent-build limit running (0 = no limit); a project whose
//    head build cannot run yet is skipped, not blocking other projects (FIFO holds within a project);
//  - fleet capacity = the connected agents' free slots;
//  - routing: the agent must carry every required label; among those, prefer an agent that holds
//    the project's buildspec cache (warm cache), then the agent that last ran a build of the
//    project (Docker layers), then the one with the most free slots.
//
// Not thread-safe: the owner serialises calls (the build controller holds its mutex).
#ifndef KILN_COORDINATOR_SCHEDULER_SCHEDULER_H_
#define KILN_COORDINATOR_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace kiln::coordinator {

using Labels = std::map<std::string, std::string>;

struct QueuedBuild {
  std::string build_id;
  std::string project;
  // Global submission order; lower runs first within a project.
  int64_t queue_seq = 0;
  // Labels an agent must carry.
  Labels required_labels;
};

struct Assignment {
  std::string build_id;
  std::string project;
  std::string agent_id;
};

class Scheduler {
 public:
  Scheduler() = default;
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Sets a project's concurrent-build limit; 0 = unlimited. Takes effect at the next Schedule().
  void SetProjectLimit(const std::string& project, int limit);

  // An agent can take builds. Re-adding an agent updates its labels and slots and keeps its running
  // builds. REQUIRES: slots >= 1.
  void AddAgent(const std::string& agent_id, const Labels& labels, int slots);
  // The agent takes no new builds. The builds it holds still count against its project's limit until
  // Release(); they no longer use fleet capacity.
  void RemoveAgent(const std::string& agent_id);
  bool HasAgent(const std::string& agent_id) const { return agents_.count(agent_id) > 0; }
  // Projects whose buildspec cache the agent holds (AgentHello.warm_cache_projects). No-op for an
  // unknown agent.
  void SetWarmProjects(const std::string& agent_id, std::set<std::string> projects);
  // The agent saved `project`'s cache (PhaseResult.cache_saved).
  void AddWarmProject(const std::string& agent_id, const std::string& project);

  // Adds a build to its project's queue, in queue_seq order (a requeued build goes back to its place).
  void Enqueue(QueuedBuild build);
  // Removes a queued build (stopped, or queued timeout). False if it was not queued.
  bool RemoveQueued(const std::string& build_id);
  bool IsQueued(const std::string& build_id) const { return queued_index_.count(build_id) > 0; }

  // Records a build as running on `agent_id` without going through Schedule() (recovery after a
  // coordinator restart). The agent need not be connected.
  void MarkRunning(const std::string& build_id, const std::string& project,
                   const std::string& agent_id);
  // A running build ended or lost its agent: frees its slot and its place in the project's limit.
  // No-op for unknown builds.
  void Release(const std::string& build_id);

  // Running builds of `project` (assigned, not yet released).
  int RunningCount(const std::string& project) const;
  // Queued builds of `project`.
  int QueuedCount(const std::string& project) const;
  int TotalQueued() const { return static_cast<int>(queued_index_.size()); }
  int TotalRunning() const { return static_cast<int>(running_.size()); }
  // Free slots over connected agents.
  int FreeSlots() const;

  // Makes every assignment currently possible and records them as running. Deterministic for a
  // given sequence of calls.
  std::vector<Assignment> Schedule();

 private:
  struct Agent {
    Labels labels;
    int slots = 0;
    int running = 0;
    std::set<std::string> warm_projects;
  };
  struct Running {
    std::string project;
    std::string agent_id;
  };
  struct ProjectQueue {
    std::deque<QueuedBuild> queue;  // sorted by queue_seq
    int limit = 0;
    int running = 0;
    std::string last_agent;
  };

  // The agent to run `b` on, or nullptr.
  const std::string* PickAgent(const QueuedBuild& b, const ProjectQueue& pq) const;

  std::map<std::string, Agent> agents_;
  std::map<std::string, ProjectQueue> projects_;
  std::map<std::string, Running> running_;           // build id -> where
  std::map<std::string, std::string> queued_index_;  // build id -> project
  std::string rr_cursor_;                            // last project served
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_SCHEDULER_SCHEDULER_H_
