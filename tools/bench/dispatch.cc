// dispatch: benchmark of the coordinator's scheduling and dispatch path.
//
// Starts the real kiln-coordinator binary as a child process (127.0.0.1, free ports, temp data dir),
// connects N simulated agents (the real AgentClient over real gRPC streams, with a runner whose every
// phase logs one line and succeeds at once, standing in for `true`), creates one project and submits
// M builds from K client threads, then reports throughput, latencies from the build records, and the
// coordinator's CPU time and memory.
//
// By default the agents live in this process, where gRPC pools their identical channels onto ONE TCP
// connection (50 HTTP/2 streams); --agent-procs spreads them over child processes (one connection
// each) when that matters. --tmp-dir chooses the filesystem of the coordinator's data dir: on
// this VM's journal-less ext4, creating the per-build log files after a previous run deleted
// thousands of files is slow (ext4 recently_deleted scan), so compare runs on one filesystem.
//
// Completion is detected by polling the coordinator's /metrics (kiln_builds_completed_total) every
// --poll-ms: one mutex and a few hundred bytes per poll; its cost is calibrated on the idle
// coordinator before the run and printed, so it can be checked to be negligible. The build records
// are read with GetBuild once the run is over (outside the measured window).
//
// Exit status: 0 when every build SUCCEEDED, 1 otherwise (or when the setup failed).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "agent/client/agent_client.h"
#include "common/logging.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::bench {
namespace {

using kiln::v1::BuildPhaseType;
using kiln::v1::BuildStatus;

constexpr char kProject[] = "bench-dispatch";
constexpr char kFakeCommit[] = "0123456789abcdef0123456789abcdef01234567";

struct Flags {
  int agents = 50;
  int builds = 5000;
  int slots = 1;
  int submitters = 4;
  double rate = 0;  // builds/s over all submitters; 0 = as fast as possible
  int poll_ms = 200;
  int timeout_s = 300;
  // 0: agents run in this process (gRPC pools identical channels, so they share one TCP connection);
  // P > 0: agents are spread over P child processes (one connection per process).
  int agent_procs = 0;
  std::string coordinator_bin;
  // Parent of the temp dir (data dir, logs, agent dirs). Empty: $TMPDIR, else /tmp.
  std::string tmp_dir;
  bool keep_data = false;
};

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t Millis(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::TimestampToMilliseconds(t);
}

std::chrono::system_clock::time_point Deadline(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// ---- /proc readers ------------------------------------------------------------------------------

// utime + stime of `pid` in milliseconds (from /proc/<pid>/stat; tick resolution, usually 10 ms).
absl::StatusOr<double> CpuMillis(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return absl::NotFoundError(absl::StrCat("no /proc/", pid, "/stat"));
  // Fields after the ")" closing the command name: state(3) ppid(4) ... utime(14) stime(15).
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string s; rest >> s && f.size() < 13;) f.push_back(s);
  int64_t utime = 0, stime = 0;
  if (f.size() < 13 || !absl::SimpleAtoi(f[11], &utime) || !absl::SimpleAtoi(f[12], &stime)) {
    return absl::InternalError(absl::StrCat("cannot parse /proc/", pid, "/stat"));
  }
  return 1000.0 * static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmHWM and VmRSS of `pid` in KiB.
struct Memory {
  int64_t hwm_kib = 0;
  int64_t rss_kib = 0;
};
Memory ReadMemory(pid_t pid) {
  Memory m;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    std::string key;
    int64_t kib = 0;
    s >> key >> kib;
    if (key == "VmHWM:") m.hwm_kib = kib;
    if (key == "VmRSS:") m.rss_kib = kib;
  }
  return m;
}

double SelfCpuMillis() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& t) { return t.tv_sec * 1000.0 + t.tv_usec / 1000.0; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

// ---- the coordinator child process --------------------------------------------------------------

class CoordinatorProcess {
 public:
  // Forks and execs `bin` with stdout/stderr to `log_path`, then waits (up to 30 s) for the line
  // announcing its ports. REQUIRES: no threads started yet (fork).
  static absl::StatusOr<std::unique_ptr<CoordinatorProcess>> Start(const std::string& bin,
                                                                   const std::string& data_dir,
                                                                   const std::string& log_path) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {
      int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the benchmark
      if (getppid() != parent) _exit(127);
      const std::string data_flag = "--data-dir=" + data_dir;
      execl(bin.c_str(), bin.c_str(), data_flag.c_str(), "--grpc-listen=127.0.0.1:0",
            "--http-listen=127.0.0.1:0", static_cast<char*>(nullptr));
      _exit(127);
    }
    std::unique_ptr<CoordinatorProcess> p(new CoordinatorProcess(pid));
    const std::regex ready(R"(coordinator listening: gRPC 127\.0\.0\.1:(\d+), HTTP port (\d+))");
    for (int i = 0; i < 1500; ++i) {
      std::ifstream in(log_path);
      std::stringstream text;
      text << in.rdbuf();
      const std::string s = text.str();
      std::smatch m;
      if (std::regex_search(s, m, ready)) {
        p->grpc_port_ = std::stoi(m[1]);
        p->http_port_ = std::stoi(m[2]);
        return p;
      }
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        p->pid_ = -1;
        return absl::InternalError(absl::StrCat(bin, " exited before listening; its log:\n", s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return absl::DeadlineExceededError(absl::StrCat(bin, " did not announce its ports within 30 s"));
  }

  CoordinatorProcess(const CoordinatorProcess&) = delete;
  CoordinatorProcess& operator=(const CoordinatorProcess&) = delete;
  ~CoordinatorProcess() { Stop(); }

  // SIGTERM, then SIGKILL if it has not exited within 10 s. Returns its exit code (-1: signalled).
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1000; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) break;
      if (i == 999) {
        std::cerr << "kiln-coordinator did not stop within 10 s; killing it\n";
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return exit_code_;
  }

  pid_t pid() const { return pid_; }
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }

 private:
  explicit CoordinatorProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  int exit_code_ = -1;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

// ---- the simulated agents' runner ---------------------------------------------------------------

// Every phase prints one line, as a buildspec whose only command is `true` would, and succeeds.
class TrueRunner final : public agent::BuildRunner {
 public:
  explicit TrueRunner(std::function<void(std::string_view)> output) : output_(std::move(output)) {}

  kiln::v1::PhaseResult RunPhase(BuildPhaseType::Value phase, bool build_succeeding) override {
    output_(absl::StrCat("[Container] Entering phase ", BuildPhaseType::Value_Name(phase),
                         "; Running command true\n"));
    kiln::v1::PhaseResult r;
    r.set_status(BuildStatus::SUCCEEDED);
    if (phase == BuildPhaseType::DOWNLOAD_SOURCE) r.set_resolved_source_version(kFakeCommit);
    return r;
  }
  void Stop(BuildStatus::Value, std::string) override {}  // RunPhase never blocks

 private:
  std::function<void(std::string_view)> output_;
};

agent::RunnerFactory TrueRunnerFactory() {
  return [](const kiln::v1::BuildJob&, agent::RunnerContext ctx) -> absl::StatusOr<std::unique_ptr<agent::BuildRunner>> {
    return std::unique_ptr<agent::BuildRunner>(new TrueRunner(std::move(ctx.output)));
  };
}

// ---- gRPC helpers --------------------------------------------------------------------------------

// Each client gets its own connection, as separate CLI processes would.
std::unique_ptr<kiln::v1::KilnService::Stub> NewKilnStub(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return kiln::v1::KilnService::NewStub(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

absl::Status ToStatus(const grpc::Status& s, const char* what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

absl::Status PutProject(kiln::v1::KilnService::Stub& stub) {
  kiln::v1::PutProjectRequest req;
  auto* p = req.mutable_project();
  p->set_name(kProject);
  p->mutable_source()->set_type("git");
  p->mutable_source()->set_location("/nonexistent");  // never read: the runner is fake
  p->mutable_source()->set_branch("main");
  p->mutable_source()->set_buildspec("buildspec.yml");
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  kiln::v1::PutProjectResponse resp;
  return ToStatus(stub.PutProject(&ctx, req, &resp), "PutProject");
}

absl::StatusOr<int> ConnectedAgents(kiln::v1::KilnService::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  kiln::v1::ListAgentsResponse resp;
  grpc::Status s = stub.ListAgents(&ctx, kiln::v1::ListAgentsRequest(), &resp);
  if (!s.ok()) return ToStatus(s, "ListAgents");
  int n = 0;
  for (const auto& a : resp.agents()) n += a.connected();
  return n;
}

// Sum of kiln_builds_completed_total over statuses, from the coordinator's /metrics.
absl::StatusOr<int64_t> CompletedBuilds(httplib::Client& http) {
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return absl::UnavailableError("GET /metrics failed");
  int64_t total = 0;
  std::istringstream in(res->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("kiln_builds_completed_total{", 0) != 0) continue;
    int64_t n = 0;
    if (absl::SimpleAtoi(line.substr(line.rfind(' ') + 1), &n)) total += n;
  }
  return total;
}

// Nearest-rank percentile of a sorted vector.
double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1]);
}

std::string DefaultCoordinatorBin() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "kiln-coordinator";
  // <build>/tools/bench/dispatch -> <build>/coordinator/kiln-coordinator
  return (self.parent_path() / ".." / ".." / "coordinator" / "kiln-coordinator").lexically_normal();
}

// ---- agents --------------------------------------------------------------------------------------

// Creates and starts agents number [first, first + count).
absl::StatusOr<std::vector<std::unique_ptr<agent::AgentClient>>> StartAgents(const Flags& flags,
                                                                           const std::string& target,
                                                                           const std::string& root,
                                                                           int first, int count) {
  std::vector<std::unique_ptr<agent::AgentClient>> agents;
  for (int i = first; i < first + count; ++i) {
    agent::AgentClient::Options o;
    o.coordinators = {target};
    o.work_dir = absl::StrCat(root, "/agents/", i);
    o.agent_id = absl::StrFormat("bench-agent-%04d", i);
    o.hostname = "bench";
    o.slots = flags.slots;
    o.runner_factory = TrueRunnerFactory();
    auto a = agent::AgentClient::Create(std::move(o));
    if (!a.ok()) return a.status();
    (*a)->Start();
    agents.push_back(*std::move(a));
  }
  return agents;
}

// Forks a process that runs agents [first, first + count) until SIGTERM. REQUIRES: this process
// has not used gRPC yet (fork).
absl::StatusOr<pid_t> ForkAgentHost(const Flags& flags, const std::string& target, const std::string& root,
                                    int first, int count) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid > 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(1);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
  auto agents = StartAgents(flags, target, root, first, count);
  if (!agents.ok()) {
    std::cerr << "dispatch: agent host: " << agents.status() << "\n";
    _exit(1);
  }
  int sig = 0;
  sigwait(&set, &sig);
  agents->clear();
  _exit(0);
}

// ---- the benchmark -------------------------------------------------------------------------------

int Run(const Flags& flags) {
  std::string tmp_dir = flags.tmp_dir;
  if (tmp_dir.empty()) tmp_dir = getenv("TMPDIR") != nullptr ? getenv("TMPDIR") : "/tmp";
  std::string tmpl = tmp_dir + "/kiln-bench-dispatch-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::cerr << "dispatch: cannot create a temp dir under " << tmp_dir << "\n";
    return 1;
  }
  const std::string root = tmpl;
  struct Cleanup {
    std::string root;
    bool keep;
    ~Cleanup() {
      if (keep) {
        std::cout << "data kept in " << root << "\n";
      } else {
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
      }
    }
  } cleanup{root, flags.keep_data};

  auto coordinator = CoordinatorProcess::Start(flags.coordinator_bin, root + "/data", root + "/coordinator.log");
  if (!coordinator.ok()) {
    std::cerr << "dispatch: " << coordinator.status() << "\n";
    return 1;
  }
  CoordinatorProcess& coord = **coordinator;
  const std::string target = absl::StrCat("127.0.0.1:", coord.grpc_port());
  // Agents: in this process, or in child processes forked before this process uses gRPC.
  std::vector<std::unique_ptr<agent::AgentClient>> agents;
  std::vector<pid_t> agent_hosts;
  auto stop_agent_hosts = [&agent_hosts] {
    for (pid_t pid : agent_hosts) kill(pid, SIGTERM);
    for (pid_t pid : agent_hosts) waitpid(pid, nullptr, 0);
    agent_hosts.clear();
  };
  struct HostReaper {
    std::function<void()> fn;
    ~HostReaper() { fn(); }
  } host_reaper{stop_agent_hosts};
  const int procs = std::min(flags.agent_procs, flags.agents);
  for (int p = 0; p < procs; ++p) {
    const int first = flags.agents * p / procs;
    auto pid = ForkAgentHost(flags, target, root, first, flags.agents * (p + 1) / procs - first);
    if (!pid.ok()) {
      std::cerr << "dispatch: " << pid.status() << "\n";
      return 1;
    }
    agent_hosts.push_back(*pid);
  }
  auto admin = NewKilnStub(target);
  httplib::Client http("127.0.0.1", coord.http_port());
  http.set_connection_timeout(5);
  http.set_read_timeout(10);
  if (absl::Status s = PutProject(*admin); !s.ok()) {
    std::cerr << "dispatch: " << s << "\n";
    return 1;
  }
  if (procs == 0) {
    auto started = StartAgents(flags, target, root, 0, flags.agents);
    if (!started.ok()) {
      std::cerr << "dispatch: agent: " << started.status() << "\n";
      return 1;
    }
    agents = *std::move(started);
  }
  // CPU of the agents and clients: this process plus the agent hosts.
  auto bench_cpu = [&agent_hosts] {
    double ms = SelfCpuMillis();
    for (pid_t pid : agent_hosts) ms += CpuMillis(pid).value_or(0);
    return ms;
  };
  for (int i = 0;; ++i) {
    auto n = ConnectedAgents(*admin);
    if (n.ok() && *n == flags.agents) break;
    if (i == 600) {
      std::cerr << "dispatch: only " << (n.ok() ? *n : 0) << " of " << flags.agents
                << " agents connected within 30 s\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  // Calibrate the completion poll on the idle coordinator.
  constexpr int kCalibrationPolls = 300;
  auto cal0 = CpuMillis(coord.pid());
  for (int i = 0; i < kCalibrationPolls; ++i) {
    if (!CompletedBuilds(http).ok()) {
      std::cerr << "dispatch: GET /metrics failed\n";
      return 1;
    }
  }
  auto cal1 = CpuMillis(coord.pid());
  const double poll_cpu_ms = cal0.ok() && cal1.ok() ? (*cal1 - *cal0) / kCalibrationPolls : 0;

  // The run: submit, then poll until every accepted build completed.
  std::vector<std::string> ids(flags.builds);
  std::atomic<int> next{0};
  std::atomic<int> accepted{0};
  std::atomic<int> submitters_left{flags.submitters};
  absl::Mutex err_mu;
  std::map<std::string, int> submit_errors;
  std::atomic<int64_t> submit_end_ms{0};
  std::atomic<bool> stop_submitting{false};  // set on timeout

  auto cpu0 = CpuMillis(coord.pid());
  const double self_cpu0 = bench_cpu();
  const int64_t t0_ms = UnixMillisNow();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> submitters;
  for (int k = 0; k < flags.submitters; ++k) {
    submitters.emplace_back([&] {
      auto stub = NewKilnStub(target);
      for (int i; !stop_submitting.load() && (i = next.fetch_add(1)) < flags.builds;) {
        if (flags.rate > 0) {
          std::this_thread::sleep_until(t0 + std::chrono::duration<double>(i / flags.rate));
        }
        kiln::v1::StartBuildRequest req;
        req.set_project_name(kProject);
        req.set_initiator("bench");
        kiln::v1::StartBuildResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(Deadline(30));
        grpc::Status s = stub->StartBuild(&ctx, req, &resp);
        if (s.ok()) {
          ids[i] = resp.build().id();
          accepted.fetch_add(1);
        } else {
          absl::MutexLock l(&err_mu);
          submit_errors[s.error_message()]++;
        }
      }
      if (submitters_left.fetch_sub(1) == 1) submit_end_ms = UnixMillisNow();
    });
  }
  int polls = 0;
  bool timed_out = false;
  int64_t completed = 0;
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(flags.poll_ms));
    auto c = CompletedBuilds(http);
    ++polls;
    if (c.ok()) completed = *c;
    if (submitters_left.load() == 0 && completed >= accepted.load()) break;
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(flags.timeout_s)) {
      timed_out = true;
      break;
    }
  }
  const int64_t stop_ms = UnixMillisNow();
  auto cpu1 = CpuMillis(coord.pid());
  const Memory mem = ReadMemory(coord.pid());
  const double self_cpu1 = bench_cpu();
  stop_submitting = true;
  for (auto& t : submitters) t.join();

  // Read the records (outside the measured window).
  std::vector<kiln::v1::Build> records(flags.builds);
  std::atomic<int> read_next{0};
  std::atomic<int> read_errors{0};
  std::vector<std::thread> readers;
  for (int k = 0; k < flags.submitters; ++k) {
    readers.emplace_back([&] {
      auto stub = NewKilnStub(target);
      for (int i; (i = read_next.fetch_add(1)) < flags.builds;) {
        if (ids[i].empty()) continue;
        kiln::v1::GetBuildRequest req;
        req.set_id(ids[i]);
        kiln::v1::GetBuildResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(Deadline(30));
        if (stub->GetBuild(&ctx, req, &resp).ok()) {
          records[i] = resp.build();
        } else {
          read_errors.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : readers) t.join();

  agents.clear();  // closes the streams (every build is released by now)
  stop_agent_hosts();
  const int coordinator_exit = coord.Stop();

  // Figures.
  std::vector<int64_t> queued_to_started, submitted_to_completed;
  std::map<std::string, int> outcome;
  int succeeded = 0;
  int64_t last_end_ms = 0;
  for (const auto& b : records) {
    if (b.id().empty()) continue;
    // After a timeout, builds that completed later count as not completed.
    const bool complete = b.build_complete() && Millis(b.end_time()) <= stop_ms;
    outcome[complete ? BuildStatus::Value_Name(b.build_status()) : "NOT_COMPLETED"]++;
    if (!complete) continue;
    if (b.build_status() == BuildStatus::SUCCEEDED) ++succeeded;
    last_end_ms = std::max(last_end_ms, Millis(b.end_time()));
    submitted_to_completed.push_back(Millis(b.end_time()) - Millis(b.start_time()));
    std::optional<int64_t> queued, provisioning;
    for (const auto& p : b.phases()) {
      if (p.phase_type() == BuildPhaseType::QUEUED && !queued) queued = Millis(p.start_time());
      if (p.phase_type() == BuildPhaseType::PROVISIONING) provisioning = Millis(p.start_time());
    }
    if (queued && provisioning) queued_to_started.push_back(*provisioning - *queued);
  }
  std::sort(queued_to_started.begin(), queued_to_started.end());
  std::sort(submitted_to_completed.begin(), submitted_to_completed.end());
  const int done = static_cast<int>(submitted_to_completed.size());
  const double wall_s = std::max<int64_t>(1, last_end_ms - t0_ms) / 1000.0;
  const double submit_s = std::max<int64_t>(1, submit_end_ms.load() - t0_ms) / 1000.0;
  const double cpu_ms = cpu0.ok() && cpu1.ok() ? *cpu1 - *cpu0 : 0;

  std::cout << absl::StrFormat("kiln dispatch benchmark: %d agents x %d slot%s, %d builds, %d submitters%s%s\n",
                               flags.agents, flags.slots, flags.slots == 1 ? "" : "s", flags.builds,
                               flags.submitters,
                               flags.rate > 0 ? absl::StrFormat(", paced at %.0f/s", flags.rate) : "",
                               procs > 0 ? absl::StrFormat(", agents in %d processes", procs) : "");
  std::cout << absl::StrFormat("builds/s: %.1f   wall: %.2f s   (submission: %.2f s, %.0f StartBuild/s)\n",
                               done / wall_s, wall_s, submit_s, accepted.load() / submit_s);
  std::cout << absl::StrFormat("queued->started       p50 %.0f ms  p99 %.0f ms  max %.0f ms\n",
                               Percentile(queued_to_started, 50), Percentile(queued_to_started, 99),
                               Percentile(queued_to_started, 100));
  std::cout << absl::StrFormat("submitted->completed  p50 %.0f ms  p99 %.0f ms  max %.0f ms\n",
                               Percentile(submitted_to_completed, 50), Percentile(submitted_to_completed, 99),
                               Percentile(submitted_to_completed, 100));
  std::cout << absl::StrFormat("coordinator CPU: %.2f ms/build (%.2f s total)   RSS: %.1f MiB (peak %.1f MiB)\n",
                               cpu_ms / flags.builds, cpu_ms / 1000.0, mem.rss_kib / 1024.0,
                               mem.hwm_kib / 1024.0);
  std::cout << absl::StrFormat(
      "bench process CPU (agents + clients): %.2f s;  completion polling: %d x GET /metrics, "
      "~%.3f ms coordinator CPU each (%.2f%% of its run CPU)\n",
      (self_cpu1 - self_cpu0) / 1000.0, polls, poll_cpu_ms,
      cpu_ms > 0 ? 100.0 * polls * poll_cpu_ms / cpu_ms : 0.0);

  bool ok = succeeded == flags.builds;
  if (timed_out) std::cout << "TIMEOUT: gave up after " << flags.timeout_s << " s (figures above cover the builds completed by then)\n";
  for (const auto& [msg, n] : submit_errors) std::cout << "StartBuild failed " << n << "x: " << msg << "\n";
  if (read_errors.load() > 0) std::cout << "GetBuild failed for " << read_errors.load() << " builds\n";
  if (coordinator_exit != 0) {
    std::cout << "kiln-coordinator exited with " << coordinator_exit << " (see --keep-data)\n";
    ok = false;
  }
  if (succeeded == flags.builds) {
    std::cout << "result: all " << flags.builds << " builds SUCCEEDED\n";
  } else {
    std::cout << "result: " << (flags.builds - succeeded) << " of " << flags.builds << " builds did not succeed (";
    bool first = true;
    for (const auto& [status, n] : outcome) {
      if (status == "SUCCEEDED") continue;
      std::cout << (first ? "" : ", ") << status << ": " << n;
      first = false;
    }
    const int missing = flags.builds - accepted.load();
    if (missing > 0) std::cout << (first ? "" : ", ") << "not submitted: " << missing;
    if (read_errors.load() > 0) std::cout << (first && missing == 0 ? "" : ", ") << "unreadable: " << read_errors.load();
    std::cout << ")\n";
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  kiln::bench::Flags flags;
  CLI::App app{"dispatch: measures the kiln coordinator's scheduling and dispatch path with simulated "
               "agents and trivial builds"};
  app.add_option("--agents", flags.agents, "Simulated agents (real gRPC streams)")
      ->check(CLI::Range(1, 10000))->capture_default_str();
  app.add_option("--builds", flags.builds, "Builds to submit")->check(CLI::Range(1, 10000000))->capture_default_str();
  app.add_option("--slots", flags.slots, "Slots per agent")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--submitters", flags.submitters, "Concurrent StartBuild client threads")
      ->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--rate", flags.rate, "Submit at this many builds/s in total (0: as fast as possible)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--poll-ms", flags.poll_ms, "Completion poll interval (GET /metrics)")
      ->check(CLI::Range(10, 10000))->capture_default_str();
  app.add_option("--timeout-s", flags.timeout_s, "Give up after this many seconds")
      ->check(CLI::Range(1, 86400))->capture_default_str();
  app.add_option("--agent-procs", flags.agent_procs,
                 "Run the agents in this many child processes (0: in this process, where they share one "
                 "gRPC connection; --agent-procs equal to --agents gives each its own)")
      ->check(CLI::Range(0, 10000))->capture_default_str();
  app.add_option("--coordinator-bin", flags.coordinator_bin,
                 "kiln-coordinator binary (default: ../../coordinator/kiln-coordinator from this binary)");
  app.add_option("--tmp-dir", flags.tmp_dir,
                 "Where to create the temp dir (data dir, logs, agent dirs); default $TMPDIR or /tmp. "
                 "The coordinator's data dir lives there, so its filesystem matters");
  app.add_flag("--keep-data", flags.keep_data, "Keep the temp dir (data dir, coordinator.log, agent dirs)");
  CLI11_PARSE(app, argc, argv);
  if (flags.coordinator_bin.empty()) flags.coordinator_bin = kiln::bench::DefaultCoordinatorBin();
  if (access(flags.coordinator_bin.c_str(), X_OK) != 0) {
    std::cerr << "dispatch: " << flags.coordinator_bin << " is not executable (use --coordinator-bin)\n";
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  kiln::common::SetMinLogSeverity(kiln::common::LogSeverity::kWarning);  // no per-agent chatter
  return kiln::bench::Run(flags);
}
