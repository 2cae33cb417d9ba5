// Durable key-value state of the coordinator. Every durable change is one atomic batch, and callers
// act on a change only after Write() returned OK (so that an etcd transaction can replace RocksDB's
// WriteBatch in HA mode without changing callers).
//
// Key space (all keys are printable ASCII; numbers zero-padded to sort):
//   project/<name>                 kiln.v1.Project
//   build/<id>                     kiln.v1.Build
//   build-by-project/<project>/<build_number:020>   build id
//   build-by-time/<queue_seq:020>  build id (all projects, submission order)
//   active/<build id>              "" while the build is not COMPLETED (queued or running)
//   counter/<name>                 decimal int64 (counter/queue_seq, counter/build_number/<project>)
//   param/<name>                   JSON parameter record (params/parameter_store.h)
//   agent/<id>                     kiln.v1.AgentInfo
//   log/<build id>                 JSON log index {size, next_seq} (logs/log_store.h)
//   webhook-delivery/<n:020>       kiln.v1.WebhookDelivery, n increasing; the newest 10000 are kept
//                                  (http/webhook_deliveries.h)
//   webhook-delivery-projects/<n:020>  projects delivery n was evaluated against, '\n'-separated
//   webhook-delivery-id/<delivery id>  decimal n of the newest authenticated record of that
//                                  X-GitHub-Delivery (redelivery de-duplication across restarts)
//   poll/<project>                 JSON {location, branch, commit}: the source poller's last-seen
//                                  commit (poller/source_poller.h)
//   deploy-app/<application>       kiln.v1.Application (deployments/deployment_controller.h)
//   deploy-group/<application>/<group>  kiln.v1.DeploymentGroup
//   deployment/<id>                kiln.v1.Deployment
//   deployment-by-time/<seq:020>   deployment id (creation order; counter/deployment_seq)
//   deployment-active/<id>         JSON rollout record {hosts, finished} while the deployment or one
//                                  of its hosts runs (replayed into deploy::Rollout at restart)
//   deployment-instance/<group id>/<agent id>  JSON {healthy, revision}: instance health (§4.9)
//   log/<deployment id>/<agent id> JSON log index of one host's deployment log (logs/log_store.h)
//   pipeline/<name>                kiln.v1.Pipeline (pipelines/pipeline_controller.h)
//   pipeline-version/<name>/<version:010>  kiln.v1.Pipeline, every version (executions run the one
//                                  they started with)
//   pipeline-execution/<name>/<seq:020>  kiln.v1.PipelineExecution
//   pipeline-execution-id/<id>     "<name>/<seq:020>" of execution <id>
//   pipeline-active/<seq:020>      "<name>" while the execution is unfinished (Tick resumes it)
//   counter/pipeline_execution_seq
//
// Implementations are thread-safe. A failed write makes the store fail every later write with the same
// error (sticky, like leveldb's bg_error_): the coordinator must not act on state it could not persist.
#ifndef KILN_COORDINATOR_STORE_STORE_H_
#define KILN_COORDINATOR_STORE_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::coordinator {

// The smallest key that is greater than every key starting with `prefix`: `prefix` with its trailing
// 0xFF bytes dropped and its last remaining byte incremented ("a/b" -> "a/c", "a\xff" -> "b"). nullopt
// if no such key exists (empty prefix, or only 0xFF bytes): the range is unbounded above. Used by
// Scan implementations (RocksDB SeekForPrev, an etcd range_end).
inline std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xff) s.pop_back();
  if (s.empty()) return std::nullopt;
  s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

// An ordered list of puts and deletes applied atomically by Store::Write.
class WriteBatch {
 public:
  struct Op {
    bool is_delete;
    std::string key;
    std::string value;
  };
  void Put(std::string_view key, std::string_view value) {
    ops_.push_back({false, std::string(key), std::string(value)});
  }
  void Delete(std::string_view key) { ops_.push_back({true, std::string(key), {}}); }
  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<Op> ops_;
};

class Store {
 public:
  virtual ~Store() = default;

  // The value of `key`, or nullopt if absent. Errors: the store's sticky error; DataLoss / Internal
  // from the engine.
  virtual absl::StatusOr<std::optional<std::string>> Get(std::string_view key) = 0;

  // Applies every op of `batch` or none. Durable against a crash of this process once it returns OK
  // (RocksDB WAL; with Options::sync also against power loss). Errors: Internal/DataLoss/Unavailable
  // from the engine; after one failure every later call returns that error.
  virtual absl::Status Write(const WriteBatch& batch) = 0;

  // Key/value pairs whose key starts with `prefix`, in ascending key order (descending if `reverse`),
  // at most `limit` of them (0 = no limit).
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Scan(
      std::string_view prefix, size_t limit = 0, bool reverse = false) = 0;
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_STORE_STORE_H_
