// In-process farm for integration tests: a real coordinator (RocksDB in a temp dir, gRPC and HTTP on
// 127.0.0.1:0) and N real agents (real executors, bash, git), talking over real gRPC streams.
#ifndef KILN_TESTS_INTEGRATION_FARM_FIXTURE_H_
#define KILN_TESTS_INTEGRATION_FARM_FIXTURE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/client/agent_client.h"
#include "coordinator/service/coordinator_server.h"
#include "gtest/gtest.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/testing/git_repo.h"

namespace kiln::test {

class Farm {
 public:
  explicit Farm(std::string dir) : dir_(std::move(dir)) {}
  ~Farm();

  // Starts (or restarts on the same data dir) the coordinator.
  void StartCoordinator(int64_t lease_millis = 3000);
  void StopCoordinator();
  // Starts an agent; returns its index.
  int StartAgent(int slots = 1, std::map<std::string, std::string> labels = {});
  void StopAgent(int index);

  kiln::v1::KilnService::Stub& stub() { return *stub_; }
  coordinator::CoordinatorServer& coordinator() { return *coordinator_; }
  const std::string& dir() const { return dir_; }

  kiln::v1::Project PutProject(const std::string& name, const std::string& repo, int limit = 0,
                               std::map<std::string, std::string> labels = {});
  kiln::v1::Build StartBuild(const std::string& project, const std::string& version = "");
  // Follows the build's log until it completes; returns the final record and fills `log`.
  kiln::v1::Build WaitForCompletion(const std::string& id, std::string* log = nullptr);
  // Follows the build until its current phase is `phase` (or it completed); returns that record.
  kiln::v1::Build WaitForPhase(const std::string& id, kiln::v1::BuildPhaseType::Value phase);
  // Follows the build's log until it contains `text` (or the build completed); returns the log.
  std::string WaitForLog(const std::string& id, const std::string& text);
  void PutParameter(const std::string& name, const std::string& value, bool secure);

 private:
  // Follows the build's stream until it completes or `done(last build record, log so far)` holds.
  kiln::v1::Build Follow(const std::string& id,
                         const std::function<bool(const kiln::v1::Build&, const std::string&)>& done,
                         std::string* log = nullptr);

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<coordinator::CoordinatorServer> coordinator_;
  std::unique_ptr<kiln::v1::KilnService::Stub> stub_;
  std::vector<std::unique_ptr<agent::AgentClient>> agents_;
};

}  // namespace kiln::test

#endif  // KILN_TESTS_INTEGRATION_FARM_FIXTURE_H_
