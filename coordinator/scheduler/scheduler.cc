#include "coordinator/scheduler/scheduler.h"

#include <algorithm>
#include <cassert>

namespace kiln::coordinator {

void Scheduler::SetProjectLimit(const std::string& project, int limit) {
  projects_[project].limit = std::max(0, limit);
}

void Scheduler::AddAgent(const std::string& agent_id, const Labels& labels, int slots) {
  Agent& a = agents_[agent_id];
  a.labels = labels;
  a.slots = slots;
  a.running = 0;
  for (const auto& [id, r] : running_) {
    if (r.agent_id == agent_id) ++a.running;
  }
}

void Scheduler::RemoveAgent(const std::string& agent_id) { agents_.erase(agent_id); }

void Scheduler::Enqueue(QueuedBuild build) {
  if (queued_index_.count(build.build_id) || running_.count(build.build_id)) return;
  queued_index_[build.build_id] = build.project;
  auto& q = projects_[build.project].queue;
  auto it = std::upper_bound(q.begin(), q.end(), build.queue_seq,
                             [](int64_t seq, const QueuedBuild& b) { return seq < b.queue_seq; });
  q.insert(it, std::move(build));
}

bool Scheduler::RemoveQueued(const std::string& build_id) {
  auto it = queued_index_.find(build_id);
  if (it == queued_index_.end()) return false;
  auto& q = projects_[it->second].queue;
  q.erase(std::remove_if(q.begin(), q.end(),
                         [&](const QueuedBuild& b) { return b.build_id == build_id; }),
          q.end());
  queued_index_.erase(it);
  return true;
}

void Scheduler::MarkRunning(const std::string& build_id, const std::string& project,
                            const std::string& agent_id) {
  RemoveQueued(build_id);
  if (running_.count(build_id)) return;
  running_[build_id] = {project, agent_id};
  projects_[project].running++;
  auto a = agents_.find(agent_id);
  if (a != agents_.end()) a->second.running++;
}

void Scheduler::Release(const std::string& build_id) {
  auto it = running_.find(build_id);
  if (it == running_.end()) return;
  auto p = projects_.find(it->second.project);
  if (p != projects_.end() && p->second.running > 0) p->second.running--;
  auto a = agents_.find(it->second.agent_id);
  if (a != agents_.end() && a->second.running > 0) a->second.running--;
  running_.erase(it);
}

int Scheduler::RunningCount(const std::string& project) const {
  auto p = projects_.find(project);
  return p == projects_.end() ? 0 : p->second.running;
}

int Scheduler::QueuedCount(const std::string& project) const {
  auto p = projects_.find(project);
  return p == projects_.end() ? 0 : static_cast<int>(p->second.queue.size());
}

int Scheduler::FreeSlots() const {
  int free = 0;
  for (const auto& [id, a] : agents_) free += std::max(0, a.slots - a.running);
  return free;
}

const std::string* Scheduler::PickAgent(const QueuedBuild& b, const ProjectQueue& pq) const {
  const std::string* best = nullptr;
  const std::string* last = nullptr;
  int best_free = -1;
  for (const auto& [id, a] : agents_) {
    int free = a.slots - a.running;
    if (free <= 0) continue;
    bool match = std::all_of(b.required_labels.begin(), b.required_labels.end(), [&](const auto& kv) {
      auto l = a.labels.find(kv.first);
      return l != a.labels.end() && l->second == kv.second;
    });
    if (!match) continue;
    if (a.warm_projects.count(b.project)) return &id;  // holds the project's buildspec cache
    if (id == pq.last_agent) last = &id;                // built it last: Docker layers, workspace
    if (free > best_free) {
      best = &id;
      best_free = free;
    }
  }
  return last != nullptr ? last : best;
}

void Scheduler::SetWarmProjects(const std::string& agent_id, std::set<std::string> projects) {
  auto it = agents_.find(agent_id);
  if (it != agents_.end()) it->second.warm_projects = std::move(projects);
}

void Scheduler::AddWarmProject(const std::string& agent_id, const std::string& project) {
  auto it = agents_.find(agent_id);
  if (it != agents_.end()) it->second.warm_projects.insert(project);
}

std::vector<Assignment> Scheduler::Schedule() {
  std::vector<Assignment> out;
  if (queued_index_.empty()) return out;
  bool progress = true;
  while (progress && !queued_index_.empty()) {
    progress = false;
    // One pass over the projects, round robin starting after the last one served.
    std::vector<std::string> order;
    order.reserve(projects_.size());
    for (auto it = projects_.upper_bound(rr_cursor_); it != projects_.end(); ++it) {
      order.push_back(it->first);
    }
    for (auto it = projects_.begin(); it != projects_.end() && it->first <= rr_cursor_; ++it) {
      order.push_back(it->first);
    }
    for (const std::string& name : order) {
      ProjectQueue& pq = projects_[name];
      if (pq.queue.empty()) continue;
      if (pq.limit > 0 && pq.running >= pq.limit) continue;
      const std::string* agent = PickAgent(pq.queue.front(), pq);
      if (agent == nullptr) continue;
      QueuedBuild b = std::move(pq.queue.front());
      pq.queue.pop_front();
      queued_index_.erase(b.build_id);
      running_[b.build_id] = {name, *agent};
      pq.running++;
      pq.last_agent = *agent;
      agents_[*agent].running++;
      out.push_back({b.build_id, name, *agent});
      rr_cursor_ = name;
      progress = true;
    }
  }
  return out;
}

}  // namespace kiln::coordinator
