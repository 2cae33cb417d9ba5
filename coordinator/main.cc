// kiln-coordinator: the farm's only stateful process. See coordinator/service/coordinator_server.h.
#include <csignal>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/logging.h"
#include "coordinator/service/coordinator_server.h"


int main(int argc, char** argv) {
  kiln::coordinator::CoordinatorServer::Options options;
  CLI::App app{"kiln-coordinator: queues builds and dispatches their phases to agents"};
  app.add_option("--data-dir", options.data_dir, "Directory for RocksDB, logs and the secret key")->required();
  app.add_option("--grpc-listen", options.grpc_listen, "gRPC address (agents, CLI)")->capture_default_str();
  app.add_option("--http-listen", options.http_listen, "HTTP address (webhooks, /metrics, /healthz); empty to disable")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", options.heartbeat_interval_millis, "Agent heartbeat interval")->capture_default_str();
  app.add_option("--lease-ms", options.lease_millis, "Build lease after an agent's last message")->capture_default_str();
  app.add_flag("--sync-writes", options.sync_writes, "fsync every state change (power-loss durability)");
  app.add_option("--max-artifact-bytes", options.max_artifact_bytes, "Largest artifact zip accepted")
      ->capture_default_str();
  app.add_option("--minute-ms", options.minute_millis,
                 "Milliseconds per minute of build/queued timeouts (tests shorten it)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // Debian builds absl without NDEBUG: its lock-order graph costs ~4% of coordinator CPU. Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Block SIGINT/SIGTERM in every thread; the main thread waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto server = kiln::coordinator::CoordinatorServer::Start(options);
  if (!server.ok()) {
    std::cerr << "kiln-coordinator: " << server.status() << "\n";
    return 1;
  }
  int sig = 0;
  sigwait(&set, &sig);
  KILN_LOG(INFO) << "signal " << sig << ": shutting down";
  (*server)->Shutdown();
  return 0;
}
