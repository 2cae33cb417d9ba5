#include "coordinator/http/webhook_filter.h"

#include <re2/re2.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/project_yaml.h"

namespace kiln::coordinator {
namespace {

using ::kiln::v1::WebhookFilter;
using ::kiln::v1::WebhookFilterGroup;

constexpr size_t kMaxQuoted = 80;  // characters of a value shown in a reason

// `s` in double quotes for a reason: quotes, backslashes and control characters escaped, cut to
// kMaxQuoted bytes (on a UTF-8 character boundary) with "..." appended.
std::string Quote(std::string_view s) {
  bool cut = false;
  if (s.size() > kMaxQuoted) {
    size_t n = kMaxQuoted;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s = s.substr(0, n);
    cut = true;
  }
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return absl::StrCat(out, cut ? "...\"" : "\"");
}

// "HEAD_REF \"^refs/heads/main$\"", plus " (exclude_matched_pattern)" when inverted.
std::string Describe(const WebhookFilter& f) {
  return absl::StrCat(WebhookFilter::Type_Name(f.type()), " ", Quote(f.pattern()),
                      f.exclude_matched_pattern() ? " (exclude_matched_pattern)" : "");
}

// "" if filter `f` passes for `e`, else why not.
std::string FilterFailure(const WebhookFilter& f, const WebhookEvent& e) {
  const bool exclude = f.exclude_matched_pattern();
  if (f.type() == WebhookFilter::EVENT) {
    std::vector<std::string> types = common::SplitEventPattern(f.pattern());
    const bool matched = std::find(types.begin(), types.end(), e.type) != types.end();
    if (matched != exclude) return "";
    return absl::StrCat(Describe(f), matched ? " matched " : " did not match ", Quote(e.type));
  }
  if (f.type() == WebhookFilter::UNKNOWN || !WebhookFilter::Type_IsValid(f.type())) {
    return absl::StrCat("filter type ", static_cast<int>(f.type()), " is not supported");
  }
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(f.pattern(), options);
  if (!re.ok()) return absl::StrCat(Describe(f), " is not a valid RE2 pattern: ", re.error());

  // The values the pattern is searched in; the filter matches if it is found in any of them.
  std::vector<const std::string*> values;
  std::string none;  // why there is no value at all
  switch (f.type()) {
    case WebhookFilter::HEAD_REF:
      values = {&e.head_ref};
      break;
    case WebhookFilter::BASE_REF:
      if (e.base_ref.empty()) {
        none = "there is no base ref (pull-request events only)";
      } else {
        values = {&e.base_ref};
      }
      break;
    case WebhookFilter::FILE_PATH:
      for (const std::string& path : e.file_paths) values.push_back(&path);
      if (values.empty()) {
        none = absl::StartsWith(e.type, "PULL_REQUEST_")
                   ? "there are no changed files (GitHub sends none with pull-request events)"
                   : "there are no changed files";
      }
      break;
    case WebhookFilter::COMMIT_MESSAGE:
      values = {&e.commit_message};
      break;
    case WebhookFilter::ACTOR_ACCOUNT_ID:
      values = {&e.actor_account_id};
      break;
    default:
      break;
  }
  const std::string* hit = nullptr;
  for (const std::string* v : values) {
    if (RE2::PartialMatch(*v, re)) {
      hit = v;
      break;
    }
  }
  const bool matched = hit != nullptr;
  if (matched != exclude) return "";
  if (matched) return absl::StrCat(Describe(f), " matched ", Quote(*hit));
  if (!none.empty()) return absl::StrCat(Describe(f), " did not match: ", none);
  if (values.size() == 1) return absl::StrCat(Describe(f), " did not match ", Quote(*values[0]));
  return absl::StrCat(Describe(f), " did not match any of the ", values.size(), " changed files");
}

// "" if every filter of the group passes, else the first failure (EVENT checked first).
std::string GroupFailure(const WebhookFilterGroup& group, const WebhookEvent& e) {
  const auto is_event = [](const WebhookFilter& f) { return f.type() == WebhookFilter::EVENT; };
  const auto events = std::count_if(group.filters().begin(), group.filters().end(), is_event);
  if (events != 1) {
    return absl::StrCat("has ", events, " EVENT filters; exactly one is required (reference §2.1)");
  }
  for (const WebhookFilter& f : group.filters()) {
    if (is_event(f)) {
      if (std::string why = FilterFailure(f, e); !why.empty()) return why;
    }
  }
  for (const WebhookFilter& f : group.filters()) {
    if (is_event(f)) continue;
    if (std::string why = FilterFailure(f, e); !why.empty()) return why;
  }
  return "";
}

}  // namespace

std::string GitHubEventType(std::string_view github_event, std::string_view action, bool merged) {
  if (github_event == "push") return "PUSH";
  if (github_event != "pull_request") return "";
  if (action == "opened") return "PULL_REQUEST_CREATED";
  if (action == "reopened") return "PULL_REQUEST_REOPENED";
  if (action == "synchronize") return "PULL_REQUEST_UPDATED";
  if (action == "closed") return merged ? "PULL_REQUEST_MERGED" : "PULL_REQUEST_CLOSED";
  return "";
}

std::string NormalizeBranchRef(std::string_view ref) {
  if (ref.empty() || ref.substr(0, 5) == "refs/") return std::string(ref);
  return absl::StrCat("refs/heads/", absl::string_view(ref.data(), ref.size()));
}

WebhookEvent WebhookEventFromGitHub(const GitHubDelivery& d) {
  WebhookEvent e;
  e.type = GitHubEventType(d.event, d.action, d.pull_request_merged);
  e.actor_account_id = d.sender_id;
  e.commit_message = d.head_commit_message;
  if (d.event == "pull_request") {
    e.head_ref = NormalizeBranchRef(d.pr_head_ref);
    e.base_ref = NormalizeBranchRef(d.pr_base_ref);
  } else {
    e.head_ref = d.ref;
    e.file_paths = d.changed_files;
    e.deleted = d.deleted;
  }
  return e;
}

FilterDecision EvaluateFilterGroups(const kiln::v1::Project& project, const WebhookEvent& e) {
  if (e.type.empty()) return {false, "the delivery maps to no event type"};
  if (e.deleted) return {false, absl::StrCat(e.head_ref, " was deleted; nothing to build")};
  if (project.webhook_filter_groups().empty()) {
    const std::string branch = project.source().branch().empty() ? "main" : project.source().branch();
    const std::string want = absl::StrCat("refs/heads/", branch);
    if (e.type == "PUSH" && e.head_ref == want) return {true, ""};
    return {false, absl::StrCat("no filter groups: only a PUSH to ", want, " builds, not ", e.type,
                                " ", Quote(e.head_ref))};
  }
  std::vector<std::string> failures;
  for (int i = 0; i < project.webhook_filter_groups_size(); ++i) {
    std::string why = GroupFailure(project.webhook_filter_groups(i), e);
    if (why.empty()) return {true, ""};
    failures.push_back(absl::StrCat("group ", i + 1, ": ", why));
  }
  return {false, absl::StrJoin(failures, "; ")};
}

}  // namespace kiln::coordinator
