// kiln-agent: runs build phases for a coordinator. See agent/client/agent_client.h.
#include <csignal>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_split.h"
#include "agent/client/agent_client.h"
#include "agent/executor/process_tree.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  kiln::agent::AgentClient::Options options;
  std::string coordinators = "127.0.0.1:7070";
  std::string labels;
  CLI::App app{"kiln-agent: runs buildspec phases for a Kiln coordinator"};
  app.add_option("--coordinator", coordinators, "Coordinator address(es), comma-separated")->capture_default_str();
  app.add_option("--work-dir", options.work_dir, "Directory for the agent id and build workspaces")->required();
  app.add_option("--slots", options.slots, "Builds this agent runs at once")->capture_default_str();
  app.add_option("--labels", labels, "Extra labels, k=v,k=v (os, arch and docker are added)");
  app.add_option("--agent-id", options.agent_id, "Agent id (default: kept in <work-dir>/agent-id)");
  CLI11_PARSE(app, argc, argv);
  // Debian builds absl without NDEBUG: its lock-order graph costs ~4% of coordinator CPU. Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  options.coordinators = absl::StrSplit(coordinators, ',', absl::SkipEmpty());
  for (absl::string_view kv : absl::StrSplit(labels, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first.empty()) {
      std::cerr << "kiln-agent: --labels: '" << kv << "' is not k=v\n";
      return 2;
    }
    options.labels[p.first] = p.second;
  }

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  if (absl::Status s = kiln::agent::BecomeChildSubreaper(); !s.ok()) {
    KILN_LOG(WARNING) << "cannot become a child subreaper: " << s;
  }

  auto client = kiln::agent::AgentClient::Create(options);
  if (!client.ok()) {
    std::cerr << "kiln-agent: " << client.status() << "\n";
    return 1;
  }
  (*client)->Start();
  KILN_LOG(INFO) << "agent " << (*client)->agent_id() << " starting";
  int sig = 0;
  sigwait(&set, &sig);
  KILN_LOG(INFO) << "signal " << sig << ": stopping";
  (*client)->Stop();
  return 0;
}
