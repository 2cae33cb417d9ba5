// GitHub webhook deliveries: signature check, payload parsing, project matching, and the processor that
// turns an authenticated `push` or `pull_request` into builds through the projects' filter groups
// (reference aws-semantics.md §2; webhook_filter.h) and records every request (webhook_deliveries.h).
// No HTTP library here: the HTTP adapter (http_server.h) hands over lowercase headers and the raw body.
//
// Thread-safety: the free functions are pure and thread-safe. WebhookProcessor is thread-safe; it calls
// its WebhookBackend from the calling thread, concurrently when deliveries arrive concurrently.
#ifndef KILN_COORDINATOR_HTTP_WEBHOOK_H_
#define KILN_COORDINATOR_HTTP_WEBHOOK_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "coordinator/http/webhook_deliveries.h"
#include "kiln/v1/build.pb.h"

namespace kiln::coordinator {

struct WebhookEvent;  // webhook_filter.h

// The X-Hub-Signature-256 value GitHub sends for `body` keyed with `secret`: "sha256=<64 lowercase hex>".
std::string ComputeGitHubSignature(std::string_view body, std::string_view secret);

// True if `header_value` (X-Hub-Signature-256) is `sha256=` + 64 hex digits equal to
// HMAC-SHA256(key = secret, data = body), compared in constant time (§2.3). Uppercase hex is accepted.
// False for an empty secret, an empty/missing header, a missing prefix, a wrong length or non-hex.
bool VerifyGitHubSignature(std::string_view body, std::string_view secret,
                           std::string_view header_value);

// The fields of a delivery Kiln uses (§2.2). Strings are empty and booleans false when absent.
struct GitHubDelivery {
  std::string event;        // X-GitHub-Event: "push", "ping", "pull_request", ...
  std::string delivery_id;  // X-GitHub-Delivery (GUID); the dedupe key
  std::string ref, before, after;  // push: "refs/heads/main", 40-hex SHAs (all zeros on create/delete)
  bool created = false, deleted = false, forced = false;
  // repository.{clone_url, ssh_url, git_url, html_url, svn_url}, in that order, when present; for a
  // pull request followed by the same fields of pull_request.base.repo (no duplicates).
  std::vector<std::string> repository_urls;
  // pull_request events: `action` ("opened", "synchronize", ...), `number`, pull_request.merged,
  // pull_request.head.{ref,sha} and pull_request.base.ref as GitHub sends them (bare branch names).
  // `before` is also read for pull requests (synchronize events carry it).
  std::string action;
  int64_t pull_request_number = 0;
  bool pull_request_merged = false;
  std::string pr_head_ref, pr_head_sha, pr_base_ref;
  std::string repository_full_name;
  std::string head_commit_message;  // empty when head_commit is null
  // Union of added/modified/removed over commits[], first occurrence order, no duplicates.
  std::vector<std::string> changed_files;
  std::string sender_id;  // sender.id as a decimal string
};

// Parses a delivery. `content_type` is `application/json` (also with parameters such as charset) or
// `application/x-www-form-urlencoded` with the JSON in the `payload` field. A `push` needs `ref`,
// `before`, `after` (strings) and `repository` (object); a `pull_request` needs `action`, `number` and
// `pull_request` with head.ref, head.sha and base.ref; `ping` needs only `zen`/`hook_id` (repository
// is read when present); other events are parsed leniently (repository and sender when present).
// `deleted` is also true when `after` is 40 zeros.
// Errors: INVALID_ARGUMENT (empty event, unsupported content type, malformed encoding or JSON, a
// non-object document, a missing push field, a field of the wrong type).
absl::StatusOr<GitHubDelivery> ParseGitHubDelivery(std::string_view event_header,
                                                   std::string_view delivery_header,
                                                   std::string_view content_type,
                                                   std::string_view body);

// True if `source.location` names the same repository as one of `d.repository_urls`. Both sides are
// normalised: `file://`, repeated `/`, and trailing `/` and `.git` stripped; remote URLs (scheme://[user@]host[:port]/p
// and scp-like user@host:p) reduce to lowercase host + path, so `git@github.com:o/r.git` equals
// `https://github.com/o/r`. Paths compare case-sensitively; ports and user names are ignored. An empty
// location never matches.
bool RepositoryMatches(const kiln::v1::ProjectSource& source, const GitHubDelivery& d);

// True if d.ref is `refs/heads/<source.branch>` (branch defaults to "main" when empty).
bool BranchMatches(const kiln::v1::ProjectSource& source, const GitHubDelivery& d);

// What source triggers (the webhook processor, the source poller) need from the coordinator.
// Implementations must be thread-safe.
class WebhookBackend {
 public:
  virtual ~WebhookBackend() = default;
  virtual absl::StatusOr<std::vector<kiln::v1::Project>> ListProjects() = 0;
  // The secret value of parameter `parameter_name`. NOT_FOUND if there is no such parameter.
  virtual absl::StatusOr<std::string> GetSecret(const std::string& parameter_name) = 0;
  // Queues a build of `project` at commit `source_version`; returns the build id.
  // RESOURCE_EXHAUSTED when the project's limit refuses it (answered 429).
  virtual absl::StatusOr<std::string> StartBuild(const kiln::v1::Project& project,
                                                 const std::string& source_version,
                                                 const kiln::v1::WebhookTrigger& trigger) = 0;
};

// An HTTP answer: status code and a JSON body.
struct HttpResult {
  int status = 500;
  std::string body;
};

// Handles POST /webhooks/github. The signature is verified over the raw body against every project
// with a webhook secret *before* the body is parsed. Answers (body is JSON with "message", plus
// "builds" and "errors"):
//   400 missing/invalid X-GitHub-Event, or (authenticated) malformed body; 401 no project's secret
//   verifies X-Hub-Signature-256 (nothing is parsed or started); 202 no authenticated project matches
//   the repository; 503 a secret, the project list or the recorded deliveries could not be read;
//   200 {"message":"pong"} for an authenticated ping; 202 for events that map to no event type
//   (WebhookEventFromGitHub) and when no project's filter groups match (the message gives each
//   project's reason); 200 with "builds" when at least one build started (or was started before for
//   the same X-GitHub-Delivery); else 429 if every StartBuild failed RESOURCE_EXHAUSTED, 503 if every
//   one failed UNAVAILABLE, 500 otherwise, with "errors": [{"project","code","message"}].
// Builds: a push builds at `after` with trigger branch/<b> or tag/<t>; a pull request builds at
// pull_request.head.sha with trigger "pr/<number>", pull_request_number and base_ref set.
// Recording: every request becomes one WebhookDelivery in `deliveries` (also 400s and 401s; a 401 is
// recorded with reason "signature mismatch" and nothing parsed), with the matched projects, the build
// ids and the reason when something was not built.
// Redelivery: an authenticated delivery whose X-GitHub-Delivery was recorded before re-uses the
// recorded builds (also across coordinator restarts, for as long as the record is kept) and starts
// builds only for matching projects that have none yet.
class WebhookProcessor {
 public:
  // `backend`, `deliveries` and `clock` are borrowed and must outlive the processor.
  WebhookProcessor(WebhookBackend* backend, WebhookDeliveryLog* deliveries,
                   const common::Clock* clock = common::RealClock::Default());
  WebhookProcessor(const WebhookProcessor&) = delete;
  WebhookProcessor& operator=(const WebhookProcessor&) = delete;

  // `lowercase_headers`: header names in lowercase. `body`: the exact bytes received.
  HttpResult HandleGitHub(const std::map<std::string, std::string>& lowercase_headers,
                          std::string_view body);

 private:
  // One request being handled: what will be recorded, and whether its delivery id is marked in flight.
  struct Pending {
    kiln::v1::WebhookDelivery record;
    WebhookDeliveryLog::RecordOptions options;
    bool in_flight = false;
  };

  HttpResult Process(const std::map<std::string, std::string>& lowercase_headers,
                     std::string_view body, Pending* pending);
  HttpResult StartBuilds(const GitHubDelivery& d, const WebhookEvent& event,
                         const std::vector<kiln::v1::Project>& projects, Pending* pending);
  // Marks `delivery_id` in flight; false if another thread is handling the same delivery right now.
  bool BeginDelivery(const std::string& delivery_id);
  void EndDelivery(const std::string& delivery_id);

  WebhookBackend* const backend_;
  WebhookDeliveryLog* const deliveries_;
  const common::Clock* const clock_;
  absl::Mutex mu_;
  std::unordered_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_HTTP_WEBHOOK_H_
