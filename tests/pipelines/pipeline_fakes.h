// Fakes for the pipeline controller's collaborators (test-only): builds that tests complete by hand,
// and deployments whose status tests set. Thread-safe.
#ifndef KILN_TESTS_PIPELINES_PIPELINE_FAKES_H_
#define KILN_TESTS_PIPELINES_PIPELINE_FAKES_H_

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/pipelines/pipeline_controller.h"

namespace kiln::test {

class FakeBuilds final : public coordinator::PipelineBuildBackend {
 public:
  void AddProject(const std::string& name, const std::string& branch = "main") {
    absl::MutexLock l(&mu_);
    kiln::v1::Project p;
    p.set_name(name);
    p.mutable_source()->set_branch(branch);
    projects_[name] = p;
  }
  absl::StatusOr<kiln::v1::Project> GetProject(const std::string& name) override {
    absl::MutexLock l(&mu_);
    auto it = projects_.find(name);
    if (it == projects_.end()) return absl::NotFoundError(absl::StrCat("project ", name, " not found"));
    return it->second;
  }
  absl::StatusOr<kiln::v1::Build> StartBuild(const kiln::v1::StartBuildRequest& req) override {
    absl::MutexLock l(&mu_);
    if (projects_.count(req.project_name()) == 0) {
      return absl::NotFoundError(absl::StrCat("project ", req.project_name(), " not found"));
    }
    kiln::v1::Build b;
    b.set_id(absl::StrCat(req.project_name(), ":", ++n_));
    b.set_project_name(req.project_name());
    b.set_source_version(req.source_version());
    b.set_initiator(req.initiator());
    b.set_build_status(kiln::v1::BuildStatus::IN_PROGRESS);
    *b.mutable_environment_variables() = req.environment_variables_override();
    builds_[b.id()] = b;
    started_.push_back(b.id());
    return b;
  }
  absl::StatusOr<kiln::v1::Build> GetBuild(const std::string& id) override {
    absl::MutexLock l(&mu_);
    auto it = builds_.find(id);
    if (it == builds_.end()) return absl::NotFoundError(absl::StrCat("build ", id, " not found"));
    return it->second;
  }
  absl::StatusOr<kiln::v1::BuildArtifact> FindArtifact(const std::string& build_id,
                                                       const std::string& name) override {
    absl::MutexLock l(&mu_);
    auto it = builds_.find(build_id);
    if (it == builds_.end()) return absl::NotFoundError("no such build");
    for (const auto& a : it->second.artifacts()) {
      if (a.identifier() == name) return a;
    }
    return absl::NotFoundError(absl::StrCat("build ", build_id, " has no artifact '", name, "'"));
  }

  // Completes build `id` with `status`, exported variables and artifacts (identifiers; "" = primary).
  void Complete(const std::string& id, kiln::v1::BuildStatus::Value status,
                const std::map<std::string, std::string>& exported = {},
                const std::vector<std::string>& artifacts = {""}) {
    absl::MutexLock l(&mu_);
    kiln::v1::Build& b = builds_.at(id);
    b.set_build_status(status);
    b.set_build_complete(true);
    for (const auto& [k, v] : exported) (*b.mutable_exported_variables())[k] = v;
    for (const std::string& a : artifacts) b.add_artifacts()->set_identifier(a);
  }
  // Build ids in start order.
  std::vector<std::string> started() {
    absl::MutexLock l(&mu_);
    return started_;
  }
  kiln::v1::Build build(const std::string& id) {
    absl::MutexLock l(&mu_);
    return builds_.at(id);
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, kiln::v1::Project> projects_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, kiln::v1::Build> builds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
  int n_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeDeployments final : public coordinator::DeploymentStarter {
 public:
  struct Started {
    std::string application, group, build_id, artifact;
  };
  absl::StatusOr<std::string> Start(const std::string& application, const std::string& group,
                                    const std::string& build_id,
                                    const std::string& artifact_name) override {
    absl::MutexLock l(&mu_);
    std::string id = absl::StrCat("d-", ++n_);
    started_.push_back({application, group, build_id, artifact_name});
    status_[id] = "InProgress";
    return id;
  }
  absl::StatusOr<std::string> Status(const std::string& id) override {
    absl::MutexLock l(&mu_);
    auto it = status_.find(id);
    if (it == status_.end()) return absl::NotFoundError(absl::StrCat("deployment ", id, " not found"));
    return it->second;
  }
  void Set(const std::string& id, const std::string& status) {
    absl::MutexLock l(&mu_);
    status_[id] = status;
  }
  std::vector<Started> started() {
    absl::MutexLock l(&mu_);
    return started_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::string> status_ ABSL_GUARDED_BY(mu_);
  std::vector<Started> started_ ABSL_GUARDED_BY(mu_);
  int n_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiln::test

#endif  // KILN_TESTS_PIPELINES_PIPELINE_FAKES_H_
