// SourcePoller: source-triggered builds for remotes that send no webhooks (CodeCommit-style polling;
// build.proto ProjectSource.poll_interval_seconds).
//
// For every project with source.poll_interval_seconds > 0 it runs, once per interval,
//   git ls-remote -- <source.location> refs/heads/<source.branch>
// as a child process (posix_spawn, no shell, own process group; the group is killed after
// Options::command_timeout; stdout is bounded by Options::max_output_bytes). The last commit seen per
// project is kept durably in the Store (key poll/<project>, JSON {location, branch, commit}):
//   - first poll of a project (or after its location or branch changed): record the commit, no build;
//   - the commit changed: start one build at the new commit (initiator "poll", WebhookTrigger{event
//     PUSH, head_ref refs/heads/<b>, prev_commit <old>, trigger branch/<b>, delivery_id poll-<n>}) and
//     record a WebhookDelivery (github_event "poll") together with the new last-seen commit in one
//     batch. If the build cannot be started, the last-seen commit is not advanced, so the next poll
//     tries again (and records another delivery with the reason).
// With source.credentials_parameter set, the parameter's "username:password" reaches git through a
// credential helper reading the child's environment; it never appears in argv or in logs.
// Only the file, git, http, https and ssh transports are allowed (GIT_ALLOW_PROTOCOL).
//
// Projects are polled one after another on one thread, so one slow remote delays the others (by at
// most command_timeout each).
//
// Thread-safety: thread-safe. Tick() may be called by tests directly (with a fake clock) instead of
// Start(); calls of Tick() are serialised.
#ifndef KILN_COORDINATOR_POLLER_SOURCE_POLLER_H_
#define KILN_COORDINATOR_POLLER_SOURCE_POLLER_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/http/webhook.h"
#include "coordinator/http/webhook_deliveries.h"
#include "coordinator/store/store.h"
#include "kiln/v1/build.pb.h"

namespace kiln::coordinator {

class SourcePoller {
 public:
  struct Options {
    // Projects, credential parameters, and StartBuild (which the coordinator gives initiator
    // "poll"). Not owned; must outlive the poller.
    WebhookBackend* backend = nullptr;
    Store* store = nullptr;                    // last-seen commits; not owned
    WebhookDeliveryLog* deliveries = nullptr;  // not owned
    const common::Clock* clock = common::RealClock::Default();
    // The git executable (looked up in PATH when it has no '/').
    std::string git = "git";
    // A `git ls-remote` running longer is killed (with its process group) and the poll fails.
    absl::Duration command_timeout = absl::Seconds(30);
    // More stdout than this fails the poll (bytes). ls-remote of one ref prints one line.
    size_t max_output_bytes = 64 << 10;
    // How often the thread started by Start() calls Tick().
    absl::Duration tick_interval = absl::Seconds(1);
  };

  // Errors: InvalidArgument (backend, store or deliveries missing).
  static absl::StatusOr<std::unique_ptr<SourcePoller>> Create(const Options& options);
  SourcePoller(const SourcePoller&) = delete;
  SourcePoller& operator=(const SourcePoller&) = delete;
  ~SourcePoller();  // Stop()

  // Starts a thread calling Tick() every options.tick_interval. At most once.
  void Start();
  // Stops and joins that thread; a running git is killed. Idempotent.
  void Stop();

  // Polls every project whose interval has passed since its last poll at clock->Now() (a project not
  // polled yet by this object is due at once). Returns the number of projects polled. Failures (git,
  // store, StartBuild) are logged and retried at the next interval; they never stop other projects.
  int Tick();

 private:
  explicit SourcePoller(const Options& options) : options_(options) {}
  // One poll of `project`; returns what went wrong (for the log), OK otherwise.
  absl::Status Poll(const kiln::v1::Project& project, absl::Time now);
  absl::StatusOr<std::string> LsRemote(const kiln::v1::Project& project, const std::string& ref);

  const Options options_;
  absl::Mutex tick_mu_;  // serialises Tick()
  std::map<std::string, absl::Time> last_poll_ ABSL_GUARDED_BY(tick_mu_);
  absl::Notification stop_;
  absl::Mutex thread_mu_;
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_POLLER_SOURCE_POLLER_H_
