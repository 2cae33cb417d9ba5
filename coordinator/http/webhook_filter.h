// CodeBuild webhook filter groups (reference aws-semantics.md §2.1), as pure functions: which event
// type a GitHub delivery is, what each filter type looks at, and whether a project's filter groups let
// the event start a build (with a human reason when they do not).
//
//   - A GitHub delivery maps to an event type by X-GitHub-Event and `action` (§2.1 table): push ->
//     PUSH; pull_request opened/reopened/synchronize -> PULL_REQUEST_CREATED/REOPENED/UPDATED;
//     closed -> PULL_REQUEST_MERGED when `pull_request.merged`, else PULL_REQUEST_CLOSED. Everything
//     else maps to no event type and never builds.
//   - Groups are OR-ed, the filters of a group AND-ed; a non-EVENT pattern is an RE2 *search*
//     (PartialMatch: unanchored unless the pattern anchors itself); exclude_matched_pattern inverts a
//     filter. A project without filter groups keeps Kiln's default: a PUSH to refs/heads/<branch>.
//   - A push that deleted its ref never builds (nothing to check out).
//
// Thread-safety: all functions are pure and thread-safe.
#ifndef KILN_COORDINATOR_HTTP_WEBHOOK_FILTER_H_
#define KILN_COORDINATOR_HTTP_WEBHOOK_FILTER_H_

#include <string>
#include <string_view>
#include <vector>

#include "coordinator/http/webhook.h"
#include "kiln/v1/build.pb.h"

namespace kiln::coordinator {

// What the filters of §2.1 see of one event.
struct WebhookEvent {
  // EVENT: "PUSH", "PULL_REQUEST_CREATED", ...; empty when the delivery maps to no event type.
  std::string type;
  // HEAD_REF: a push's `ref` ("refs/heads/x", "refs/tags/v1"); a pull request's head branch,
  // normalised to "refs/heads/<name>".
  std::string head_ref;
  // BASE_REF: a pull request's base branch, normalised like head_ref. Empty for pushes: a BASE_REF
  // filter then has nothing to match (it fails, or passes with exclude_matched_pattern).
  std::string base_ref;
  // FILE_PATH: for a push the union of added/modified/removed over `commits[]`. GitHub sends no file
  // list with pull-request events, so for them the set is empty: a FILE_PATH filter fails on every
  // pull-request event unless it has exclude_matched_pattern (then it passes).
  std::vector<std::string> file_paths;
  // COMMIT_MESSAGE: `head_commit.message`. Pull-request payloads carry no head commit (the PR title is
  // not a commit message), so this is empty for them unless the payload has `head_commit`.
  std::string commit_message;
  // ACTOR_ACCOUNT_ID: `sender.id` as a decimal string.
  std::string actor_account_id;
  // A push that deleted head_ref (`deleted`, or `after` all zeros).
  bool deleted = false;
};

// The event type of a GitHub delivery (§2.1 table), or "" when it maps to none. `merged` is
// `pull_request.merged` and only matters for action "closed".
std::string GitHubEventType(std::string_view github_event, std::string_view action, bool merged);

// "refs/heads/<ref>" for a bare branch name; a ref already starting with "refs/" and "" unchanged.
std::string NormalizeBranchRef(std::string_view ref);

// The filter view of a parsed delivery (see WebhookEvent for each field's source).
WebhookEvent WebhookEventFromGitHub(const GitHubDelivery& delivery);

struct FilterDecision {
  bool build = false;
  // Why not, when !build: every group's first failing filter, "; "-joined, e.g.
  //   group 1: HEAD_REF "^refs/heads/main$" did not match "refs/heads/dev"
  // (without the project name; callers prefix it). Empty when build is true.
  std::string reason;
};

// Whether `event` starts a build of `project` (see the file comment). In a group the EVENT filter is
// checked first, then the others in order; a group without exactly one EVENT filter, an unknown filter
// type or a pattern RE2 cannot compile (possible only for projects stored before validation) fails
// with a reason saying so.
FilterDecision EvaluateFilterGroups(const kiln::v1::Project& project, const WebhookEvent& event);

}  // namespace kiln::coordinator

#endif  // KILN_COORDINATOR_HTTP_WEBHOOK_FILTER_H_
