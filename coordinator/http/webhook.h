// GitHub webhook deliveries: signature check, payload parsing, project matching, and the processor that
// turns an authenticated `push` into builds (reference aws-semantics.md §2). No HTTP library here: the
// HTTP adapter (http_server.h) hands over lowercase headers and the raw body.
//
// Thread-safety: the free functions are pure and thread-safe. WebhookProcessor is thread-safe; it calls
// its WebhookBackend from the calling thread, concurrently when deliveries arrive concurrently.
#ifndef KILN_COORDINATOR_HTTP_WEBHOOK_H_
#define KILN_COORDINATOR_HTTP_WEBHOOK_H_

#include <cstddef>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kiln/v1/build.pb.h"

namespace kiln::coordinator {

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
  // repository.{clone_url, ssh_url, git_url, html_url, svn_url}, in that order, when present.
  std::vector<std::string> repository_urls;
  std::string repository_full_name;
  std::string head_commit_message;  // empty when head_commit is null
  // Union of added/modified/removed over commits[], first occurrence order, no duplicates.
  std::vector<std::string> changed_files;
  std::string sender_id;  // sender.id as a decimal string
};

// Parses a delivery. `content_type` is `application/json` (also with parameters such as charset) or
// `application/x-www-form-urlencoded` with the JSON in the `payload` field. A `push` needs `ref`,
// `before`, `after` (strings) and `repository` (object); `ping` needs only `zen`/`hook_id` (repository
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

// What the processor needs from the coordinator. Implementations must be thread-safe.
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
//   the repository; 503 a secret or the project list could not be read; 200 {"message":"pong"}
//   for an authenticated ping; 202 for other events ("not handled yet"), deleted refs and refs no
//   project builds; 200 with "builds" when at least one build started (or was started before for the
//   same X-GitHub-Delivery); else 429 if every StartBuild failed RESOURCE_EXHAUSTED, 503 if every one
//   failed UNAVAILABLE, 500 otherwise, with "errors": [{"project","code","message"}].
// Redelivery: the build ids started for the last `dedupe_capacity` delivery ids are kept (LRU); a
// repeated delivery re-uses them and starts builds only for projects that have none yet.
class WebhookProcessor {
 public:
  // `backend` is borrowed and must outlive the processor.
  explicit WebhookProcessor(WebhookBackend* backend, size_t dedupe_capacity = 10000);
  WebhookProcessor(const WebhookProcessor&) = delete;
  WebhookProcessor& operator=(const WebhookProcessor&) = delete;

  // `lowercase_headers`: header names in lowercase. `body`: the exact bytes received.
  HttpResult HandleGitHub(const std::map<std::string, std::string>& lowercase_headers,
                          std::string_view body);

 private:
  using ProjectBuilds = std::vector<std::pair<std::string, std::string>>;  // project name, build id

  HttpResult HandlePush(const GitHubDelivery& d, const std::vector<kiln::v1::Project>& projects);
  // Dedupe cache: copy of the builds recorded for `delivery_id` (empty if none); marks it in flight.
  // Returns false if the same delivery is being processed right now by another thread.
  bool BeginDelivery(const std::string& delivery_id, ProjectBuilds* previous);
  void EndDelivery(const std::string& delivery_id, const ProjectBuilds& builds);

  WebhookBackend* const backend_;
  const size_t dedupe_capacity_;
  absl::Mutex mu_;
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  std::unordered_map<std::string, std::pair<ProjectBuilds, std::list<std::string>::iterator>>
      recorded_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_HTTP_WEBHOOK_H_
