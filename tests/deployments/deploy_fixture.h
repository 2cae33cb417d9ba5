// Test fixture for the deployment controller: a real BuildController and DeploymentController over
// an in-memory store, a fake clock, and fake agents (AgentConnection captures) that connect through
// BuildController::AgentConnected and answer through BuildController::HandleAgentMessage, the path
// real agents take. Test-only.
#ifndef KILN_TESTS_DEPLOYMENTS_DEPLOY_FIXTURE_H_
#define KILN_TESTS_DEPLOYMENTS_DEPLOY_FIXTURE_H_

#include <stdlib.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "coordinator/builds/build_controller.h"
#include "coordinator/deployments/deployment_controller.h"
#include "coordinator/logs/log_store.h"
#include "coordinator/params/parameter_store.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/mem_store.h"
#include "tests/testing/status_matchers.h"

namespace kiln::test {

using coordinator::AgentConnection;
using kiln::v1::CoordinatorMessage;
using kiln::v1::Deployment;

inline constexpr char kShaOne[] = "1111111111111111111111111111111111111111111111111111111111111111";
inline constexpr char kShaTwo[] = "2222222222222222222222222222222222222222222222222222222222222222";

// Records what the coordinator sends to one agent.
class FakeAgentConnection : public AgentConnection {
 public:
  void Send(const CoordinatorMessage& m) override {
    absl::MutexLock l(&mu_);
    sent_.push_back(m);
  }
  // Deployment ids of the DeployHost messages received, in order.
  std::vector<std::string> DeployHosts() {
    absl::MutexLock l(&mu_);
    std::vector<std::string> out;
    for (const auto& m : sent_) {
      if (m.has_deploy_host()) out.push_back(m.deploy_host().deployment_id());
    }
    return out;
  }
  std::vector<kiln::v1::DeployHost> DeployHostMessages() {
    absl::MutexLock l(&mu_);
    std::vector<kiln::v1::DeployHost> out;
    for (const auto& m : sent_) {
      if (m.has_deploy_host()) out.push_back(m.deploy_host());
    }
    return out;
  }
  std::vector<std::string> Stops() {
    absl::MutexLock l(&mu_);
    std::vector<std::string> out;
    for (const auto& m : sent_) {
      if (m.has_stop_deployment()) out.push_back(m.stop_deployment().deployment_id());
    }
    return out;
  }

 protected:
  absl::Mutex mu_;
  std::vector<CoordinatorMessage> sent_ ABSL_GUARDED_BY(mu_);
};

class DeployFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-deployments-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    SeedBuild("app:1", kiln::v1::BuildStatus::SUCCEEDED, kShaOne);
    SeedBuild("app:2", kiln::v1::BuildStatus::SUCCEEDED, kShaTwo);
    SeedBuild("app:3", kiln::v1::BuildStatus::FAILED, "");
    Open();
    kiln::v1::Project p;
    p.set_name("app");
    p.mutable_source()->set_type("git");
    p.mutable_source()->set_location("/srv/git/app.git");
    p.mutable_source()->set_branch("main");
    p.mutable_source()->set_buildspec("buildspec.yml");
    ASSERT_THAT(builds_->PutProject(p).status(), IsOk());
    ASSERT_THAT(deployments_->CreateApplication("web").status(), IsOk());
  }
  void TearDown() override {
    Close();
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }

  void Close() {
    deployments_.reset();
    builds_.reset();
    conns_.clear();
    old_conns_.clear();
    logs_.reset();
    params_.reset();
  }

  // (Re)creates both controllers over the same store: a coordinator restart. Agents must reconnect.
  void Open() {
    Close();
    auto logs = coordinator::LogStore::Open(&store_, dir_ + "/logs");
    ASSERT_THAT(logs.status(), IsOk());
    logs_ = *std::move(logs);
    auto params = coordinator::ParameterStore::Create(&store_, dir_ + "/secret.key");
    ASSERT_THAT(params.status(), IsOk());
    params_ = *std::move(params);
    coordinator::BuildController::Options o;
    o.store = &store_;
    o.logs = logs_.get();
    o.params = params_.get();
    o.clock = &clock_;
    o.lease_millis = kLeaseMillis;
    auto b = coordinator::BuildController::Create(o);
    ASSERT_THAT(b.status(), IsOk());
    builds_ = *std::move(b);
    coordinator::DeploymentController::Options d;
    d.store = &store_;
    d.logs = logs_.get();
    d.builds = builds_.get();
    d.clock = &clock_;
    d.lease_millis = kLeaseMillis;
    auto c = coordinator::DeploymentController::Create(d);
    ASSERT_THAT(c.status(), IsOk());
    deployments_ = *std::move(c);
  }

  // A completed build record, as the BuildController stores it.
  void SeedBuild(const std::string& id, kiln::v1::BuildStatus::Value status, const std::string& sha) {
    kiln::v1::Build b;
    b.set_id(id);
    b.set_project_name("app");
    b.set_build_status(status);
    b.set_build_complete(true);
    if (!sha.empty()) {
      kiln::v1::BuildArtifact* a = b.add_artifacts();
      a->set_name("app");
      a->set_sha256(sha);
      a->set_size_bytes(3);
    }
    coordinator::WriteBatch batch;
    batch.Put("build/" + id, b.SerializeAsString());
    ASSERT_THAT(store_.Write(batch), IsOk());
  }

  virtual std::unique_ptr<FakeAgentConnection> NewConnection(const std::string& agent) {
    return std::make_unique<FakeAgentConnection>();
  }

  FakeAgentConnection* Connect(const std::string& agent,
                               std::map<std::string, std::string> labels = {{"role", "web"}}) {
    auto conn = NewConnection(agent);
    FakeAgentConnection* raw = conn.get();
    kiln::v1::AgentHello h;
    h.set_protocol_version(kiln::v1::ProtocolVersion::V1);
    h.set_agent_id(agent);
    h.set_hostname("host-" + agent);
    h.set_slots(1);
    for (const auto& [k, v] : labels) (*h.mutable_labels())[k] = v;
    EXPECT_THAT(builds_->AgentConnected(h, raw), IsOk());
    // A reconnect keeps the old connection alive until Close().
    if (auto it = conns_.find(agent); it != conns_.end()) old_conns_.push_back(std::move(it->second));
    conns_[agent] = std::move(conn);
    return raw;
  }
  void Disconnect(const std::string& agent) { builds_->AgentDisconnected(agent, conns_[agent].get()); }
  FakeAgentConnection* Conn(const std::string& agent) { return conns_[agent].get(); }

  void PutGroup(const std::string& name, const std::string& config,
                kiln::v1::MinimumHealthyHosts* mhh = nullptr, bool auto_rollback = false) {
    kiln::v1::DeploymentGroup g;
    g.set_application("web");
    g.set_name(name);
    (*g.mutable_agent_labels())["role"] = "web";
    g.set_deployment_config_name(config);
    if (mhh) *g.mutable_minimum_healthy_hosts() = *mhh;
    g.set_auto_rollback_on_failure(auto_rollback);
    ASSERT_THAT(deployments_->PutDeploymentGroup(g).status(), IsOk());
  }

  absl::StatusOr<Deployment> Deploy(const std::string& build_id, const std::string& group = "prod") {
    kiln::v1::CreateDeploymentRequest req;
    req.set_application("web");
    req.set_deployment_group(group);
    req.mutable_revision()->mutable_build_artifact()->set_build_id(build_id);
    return deployments_->CreateDeployment(req);
  }

  void Event(const std::string& agent, const std::string& id, const std::string& name,
             const std::string& status, bool host_done = false, int error_code = 0,
             const std::string& message = "") {
    kiln::v1::AgentMessage m;
    auto* r = m.mutable_deploy_event_result();
    r->set_deployment_id(id);
    r->mutable_event()->set_name(name);
    r->mutable_event()->set_status(status);
    r->mutable_event()->set_duration_millis(100);
    r->mutable_event()->set_error_code(error_code);
    r->mutable_event()->set_message(message);
    r->set_host_done(host_done);
    builds_->HandleAgentMessage(agent, m);
  }
  void Log(const std::string& agent, const std::string& id, const std::string& data) {
    kiln::v1::AgentMessage m;
    m.mutable_deploy_log()->set_deployment_id(id);
    m.mutable_deploy_log()->set_data(data);
    builds_->HandleAgentMessage(agent, m);
  }
  static const std::vector<std::string>& Events() {
    static const std::vector<std::string> kEvents = {"ApplicationStop", "DownloadBundle",
                                                     "BeforeInstall",   "Install",
                                                     "AfterInstall",    "ApplicationStart",
                                                     "ValidateService"};
    return kEvents;
  }
  void HostSucceeds(const std::string& agent, const std::string& id) {
    for (size_t i = 0; i < Events().size(); ++i) {
      Event(agent, id, Events()[i], "Succeeded", i + 1 == Events().size());
    }
  }
  // Fails at `failing` (exit status, ScriptFailed); the later events are Skipped.
  void HostFails(const std::string& agent, const std::string& id,
                 const std::string& failing = "BeforeInstall") {
    bool failed = false;
    for (size_t i = 0; i < Events().size(); ++i) {
      const std::string& e = Events()[i];
      const bool last = i + 1 == Events().size();
      if (e == failing) {
        Event(agent, id, e, "Failed", last, 4, "script exited with status 1");
        failed = true;
      } else {
        Event(agent, id, e, failed ? "Skipped" : "Succeeded", last);
      }
    }
  }

  Deployment Get(const std::string& id) {
    auto d = deployments_->GetDeployment(id);
    EXPECT_THAT(d.status(), IsOk());
    return d.ok() ? *d : Deployment();
  }
  static std::string TargetStatus(const Deployment& d, const std::string& agent) {
    for (const auto& t : d.targets()) {
      if (t.agent_id() == agent) return t.status();
    }
    return "(none)";
  }

  static constexpr int64_t kLeaseMillis = 10000;
  std::string dir_;
  MemStore store_;
  FakeClock clock_;
  std::unique_ptr<coordinator::LogStore> logs_;
  std::unique_ptr<coordinator::ParameterStore> params_;
  std::unique_ptr<coordinator::BuildController> builds_;
  std::unique_ptr<coordinator::DeploymentController> deployments_;
  std::map<std::string, std::unique_ptr<FakeAgentConnection>> conns_;
  std::vector<std::unique_ptr<FakeAgentConnection>> old_conns_;
};

}  // namespace kiln::test

#endif  // KILN_TESTS_DEPLOYMENTS_DEPLOY_FIXTURE_H_
