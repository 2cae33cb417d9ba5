// A whole coordinator in one object: RocksDB store, parameter store, log store, build controller,
// gRPC server (AgentService + KilnService, callback API), HTTP listener (webhooks, /healthz,
// /metrics), the recorded webhook deliveries, the source poller (its own thread) and the ticker
// thread. Used by kiln-coordinator's main() and by in-process integration tests and benchmarks.
//
// Data directory layout: <data_dir>/db (RocksDB), <data_dir>/logs (build logs),
// <data_dir>/secret.key (AES-256 key for secure parameters, mode 0600).
//
// Thread-safety: Start/Shutdown from one thread; accessors are thread-safe.
#ifndef KILN_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_
#define KILN_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "coordinator/builds/build_controller.h"

namespace grpc {
class Server;
}

namespace kiln::coordinator {

class CoordinatorServer {
 public:
  struct Options {
    std::string data_dir;
    // host:port; port 0 picks a free one (see grpc_port()). Loopback unless configured otherwise.
    std::string grpc_listen = "127.0.0.1:7070";
    // Empty: no HTTP listener.
    std::string http_listen = "127.0.0.1:7080";
    int64_t heartbeat_interval_millis = 2000;
    int64_t lease_millis = 10000;
    // How often leases and timeouts are checked (milliseconds).
    int64_t tick_interval_millis = 250;
    // fsync every store write (power-loss durability) instead of relying on the OS page cache.
    bool sync_writes = false;
    // Largest artifact zip accepted (bytes).
    int64_t max_artifact_bytes = int64_t{8} << 30;
    // Milliseconds per minute of build and queued timeouts (BuildController::Options::minute_millis);
    // 60000 except in tests.
    int64_t minute_millis = 60000;
  };

  // Opens the data directory (creating it) and starts serving. Errors: Unavailable (address in use),
  // InvalidArgument (bad address), FailedPrecondition (key file mode), store errors.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const Options& options);
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;
  ~CoordinatorServer();  // Shutdown()

  int grpc_port() const { return grpc_port_; }
  int http_port() const;
  BuildController* controller() { return controller_.get(); }

  // Stops accepting, cancels streams, stops the ticker and closes the store. Idempotent.
  void Shutdown();

 private:
  struct Impl;
  CoordinatorServer();
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<BuildController> controller_;
  int grpc_port_ = 0;
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_SERVICE_COORDINATOR_SERVER_H_
