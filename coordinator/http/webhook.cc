#include "coordinator/http/webhook.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <unordered_set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "coordinator/http/webhook_filter.h"
#include "nlohmann/json.hpp"

namespace kiln::coordinator {
namespace {

using nlohmann::json;

constexpr std::string_view kSignaturePrefix = "sha256=";
constexpr std::string_view kZeroSha = "0000000000000000000000000000000000000000";
// Bounds on what a recorded delivery keeps of untrusted input.
constexpr size_t kMaxHeaderChars = 128;
constexpr size_t kMaxReasonBytes = 4096;

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes application/x-www-form-urlencoded text ('+' is a space, %XX a byte).
absl::StatusOr<std::string> UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      int hi = i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("malformed percent-encoding at byte ", i, " of the form body"));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Reads obj[key] as a string into *out. Absent or null: error if `required`, else leaves *out.
absl::Status ReadString(const json& obj, const char* key, bool required, std::string* out,
                        std::string_view where = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("missing field \"", AbslView(where), key, "\""));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field \"", AbslView(where), key, "\" must be a string"));
  }
  *out = it->get_ref<const std::string&>();
  return absl::OkStatus();
}

absl::Status ReadBool(const json& obj, const char* key, bool* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat("field \"", key, "\" must be a boolean"));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

// Reads an optional object field; *out is nullptr when absent or null.
absl::Status ReadObject(const json& obj, const char* key, bool required, const json** out,
                        std::string_view where = "") {
  *out = nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing field \"", AbslView(where), key, "\""));
    }
    return absl::OkStatus();
  }
  if (!it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field \"", AbslView(where), key, "\" must be an object"));
  }
  *out = &*it;
  return absl::OkStatus();
}

// Appends the URLs of the repository object obj[key] (where = its path for messages) to
// d->repository_urls, skipping ones already there.
absl::Status ReadRepositoryUrls(const json& obj, const char* key, std::string_view where,
                                bool required, GitHubDelivery* d, const json** repo_out = nullptr) {
  const json* repo = nullptr;
  KILN_RETURN_IF_ERROR(ReadObject(obj, key, required, &repo, where));
  if (repo_out != nullptr) *repo_out = repo;
  if (repo == nullptr) return absl::OkStatus();
  const std::string prefix = absl::StrCat(AbslView(where), key, ".");
  for (const char* url_key : {"clone_url", "ssh_url", "git_url", "html_url", "svn_url"}) {
    std::string url;
    KILN_RETURN_IF_ERROR(ReadString(*repo, url_key, false, &url, prefix));
    if (!url.empty() && std::find(d->repository_urls.begin(), d->repository_urls.end(), url) ==
                            d->repository_urls.end()) {
      d->repository_urls.push_back(std::move(url));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadRepository(const json& doc, bool required, GitHubDelivery* d) {
  const json* repo = nullptr;
  KILN_RETURN_IF_ERROR(ReadRepositoryUrls(doc, "repository", "", required, d, &repo));
  if (repo == nullptr) return absl::OkStatus();
  return ReadString(*repo, "full_name", false, &d->repository_full_name, "repository.");
}

absl::Status ReadHeadCommitMessage(const json& doc, GitHubDelivery* d) {
  const json* head = nullptr;
  KILN_RETURN_IF_ERROR(ReadObject(doc, "head_commit", false, &head));
  if (head == nullptr) return absl::OkStatus();
  return ReadString(*head, "message", false, &d->head_commit_message, "head_commit.");
}

// pull_request events (reference §2.1): action, number, head/base branches and the head sha.
absl::Status ReadPullRequest(const json& doc, GitHubDelivery* d) {
  KILN_RETURN_IF_ERROR(ReadString(doc, "action", true, &d->action));
  auto number = doc.find("number");
  if (number == doc.end() || number->is_null()) {
    return absl::InvalidArgumentError("missing field \"number\"");
  }
  if (!number->is_number_integer() || number->get<int64_t>() <= 0) {
    return absl::InvalidArgumentError("field \"number\" must be a positive integer");
  }
  d->pull_request_number = number->get<int64_t>();
  const json* pr = nullptr;
  KILN_RETURN_IF_ERROR(ReadObject(doc, "pull_request", true, &pr));
  auto merged = pr->find("merged");
  if (merged != pr->end() && !merged->is_null()) {
    if (!merged->is_boolean()) {
      return absl::InvalidArgumentError("field \"pull_request.merged\" must be a boolean");
    }
    d->pull_request_merged = merged->get<bool>();
  }
  const json* head = nullptr;
  const json* base = nullptr;
  KILN_RETURN_IF_ERROR(ReadObject(*pr, "head", true, &head, "pull_request."));
  KILN_RETURN_IF_ERROR(ReadObject(*pr, "base", true, &base, "pull_request."));
  KILN_RETURN_IF_ERROR(ReadString(*head, "ref", true, &d->pr_head_ref, "pull_request.head."));
  KILN_RETURN_IF_ERROR(ReadString(*head, "sha", true, &d->pr_head_sha, "pull_request.head."));
  KILN_RETURN_IF_ERROR(ReadString(*base, "ref", true, &d->pr_base_ref, "pull_request.base."));
  KILN_RETURN_IF_ERROR(ReadString(doc, "before", false, &d->before));
  KILN_RETURN_IF_ERROR(ReadRepository(doc, /*required=*/false, d));
  KILN_RETURN_IF_ERROR(ReadRepositoryUrls(*base, "repo", "pull_request.base.", false, d));
  return ReadHeadCommitMessage(doc, d);
}

absl::Status ReadSender(const json& doc, GitHubDelivery* d) {
  const json* sender = nullptr;
  KILN_RETURN_IF_ERROR(ReadObject(doc, "sender", false, &sender));
  if (sender == nullptr) return absl::OkStatus();
  auto it = sender->find("id");
  if (it == sender->end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    d->sender_id = it->dump();
  } else if (it->is_string()) {
    d->sender_id = it->get_ref<const std::string&>();
  } else {
    return absl::InvalidArgumentError("field \"sender.id\" must be an integer");
  }
  return absl::OkStatus();
}

absl::Status ReadPush(const json& doc, GitHubDelivery* d) {
  KILN_RETURN_IF_ERROR(ReadString(doc, "ref", true, &d->ref));
  KILN_RETURN_IF_ERROR(ReadString(doc, "before", true, &d->before));
  KILN_RETURN_IF_ERROR(ReadString(doc, "after", true, &d->after));
  KILN_RETURN_IF_ERROR(ReadBool(doc, "created", &d->created));
  KILN_RETURN_IF_ERROR(ReadBool(doc, "deleted", &d->deleted));
  KILN_RETURN_IF_ERROR(ReadBool(doc, "forced", &d->forced));
  if (d->after == kZeroSha) d->deleted = true;
  KILN_RETURN_IF_ERROR(ReadRepository(doc, /*required=*/true, d));
  KILN_RETURN_IF_ERROR(ReadHeadCommitMessage(doc, d));

  auto commits = doc.find("commits");
  if (commits == doc.end() || commits->is_null()) return absl::OkStatus();
  if (!commits->is_array()) return absl::InvalidArgumentError("field \"commits\" must be an array");
  std::unordered_set<std::string> seen;
  for (const json& commit : *commits) {
    if (!commit.is_object()) {
      return absl::InvalidArgumentError("every element of \"commits\" must be an object");
    }
    for (const char* key : {"added", "modified", "removed"}) {
      auto files = commit.find(key);
      if (files == commit.end() || files->is_null()) continue;
      if (!files->is_array()) {
        return absl::InvalidArgumentError(absl::StrCat("field \"commits[].", key, "\" must be an array"));
      }
      for (const json& f : *files) {
        if (!f.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("field \"commits[].", key, "\" must hold strings"));
        }
        const std::string& path = f.get_ref<const std::string&>();
        if (seen.insert(path).second) d->changed_files.push_back(path);
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ParseBody(std::string_view content_type, std::string_view body) {
  std::string media(content_type.substr(0, content_type.find(';')));
  media = absl::AsciiStrToLower(absl::StripAsciiWhitespace(media));
  std::string json_text;
  if (media == "application/x-www-form-urlencoded") {
    bool found = false;
    for (absl::string_view pair : absl::StrSplit(AbslView(body), '&')) {
      if (!absl::StartsWith(pair, "payload=")) continue;
      KILN_ASSIGN_OR_RETURN(json_text, UrlDecode(std::string_view(pair.data() + 8, pair.size() - 8)));
      found = true;
      break;
    }
    if (!found) return absl::InvalidArgumentError("form-encoded delivery has no \"payload\" field");
  } else if (media == "application/json" || media.empty()) {
    json_text = std::string(body);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported Content-Type \"", media,
        "\": use application/json or application/x-www-form-urlencoded"));
  }
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed JSON payload: ", e.what()));
  }
  if (!doc.is_object()) return absl::InvalidArgumentError("JSON payload must be an object");
  return doc;
}

// A repository location reduced to a comparable key: "path:<local path>" or "url:<host>/<path>".
std::string NormalizeLocation(std::string_view raw) {
  std::string s(absl::StripAsciiWhitespace(AbslView(raw)));
  std::string host;
  bool remote = false;
  if (absl::StartsWith(s, "file://")) {
    s.erase(0, 7);
  } else if (size_t scheme = s.find("://"); scheme != std::string::npos) {
    std::string rest = s.substr(scheme + 3);
    size_t slash = rest.find('/');
    host = rest.substr(0, slash);
    s = slash == std::string::npos ? "" : rest.substr(slash);
    remote = true;
  } else if (size_t colon = s.find(':');
             colon != std::string::npos && colon < s.find('/') && colon > 1) {
    // scp-like "user@host:path" (a colon before any slash; "C:" drive letters excluded).
    host = s.substr(0, colon);
    s = s.substr(colon + 1);
    remote = true;
  }
  if (remote) {
    if (size_t at = host.rfind('@'); at != std::string::npos) host.erase(0, at + 1);
    size_t port = host.rfind(':');
    if (port != std::string::npos && host.find(']', port) == std::string::npos) host.erase(port);
    host = absl::AsciiStrToLower(host);
  }
  s.erase(std::unique(s.begin(), s.end(), [](char a, char b) { return a == '/' && b == '/'; }),
          s.end());  // "/tmp//x" names "/tmp/x"
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (absl::EndsWith(s, ".git")) s.erase(s.size() - 4);
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (!remote) return s.empty() ? "" : "path:" + s;
  while (!s.empty() && s.front() == '/') s.erase(0, 1);
  if (host.empty() || s.empty()) return "";
  return absl::StrCat("url:", host, "/", s);
}

std::string TriggerName(const std::string& ref) {
  if (absl::StartsWith(ref, "refs/heads/")) return "branch/" + ref.substr(11);
  if (absl::StartsWith(ref, "refs/tags/")) return "tag/" + ref.substr(10);
  return ref;
}

bool IsEventName(std::string_view e) {
  return !e.empty() && e.size() <= 64 && std::all_of(e.begin(), e.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string Header(const std::map<std::string, std::string>& headers, const std::string& name) {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

HttpResult Answer(int status, std::string_view message, json extra = json::object()) {
  extra["message"] = std::string(message);
  // Replace invalid UTF-8 (refs or names echoed from the request) instead of throwing.
  return {status, extra.dump(-1, ' ', false, json::error_handler_t::replace)};
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// HMAC-SHA256(secret, body) into mac (32 bytes).
void HmacSha256(std::string_view body, std::string_view secret, unsigned char mac[32]) {
  unsigned int mac_len = 0;
  // Cannot fail for SHA-256 with in-memory buffers: crash if it does.
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &mac_len) == nullptr ||
      mac_len != 32) {
    std::abort();
  }
}

// A header value as recorded: printable ASCII only (others become '?'), at most kMaxHeaderChars.
// Headers are untrusted, and proto3 strings must be valid UTF-8.
std::string CleanHeader(std::string_view v) {
  std::string out(v.substr(0, kMaxHeaderChars));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

// `s` cut to at most `max` bytes on a UTF-8 character boundary.
std::string CutUtf8(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* ts) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  ts->set_seconds(seconds);
  ts->set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(seconds)) / absl::Nanoseconds(1)));
}

// The project of a build id "<project>:<uuid>".
std::string ProjectOfBuild(const std::string& build_id) {
  return build_id.substr(0, build_id.find(':'));
}

kiln::v1::WebhookTrigger TriggerFor(const GitHubDelivery& d, const WebhookEvent& e) {
  kiln::v1::WebhookTrigger t;
  t.set_event(e.type);
  t.set_head_ref(e.head_ref);
  t.set_prev_commit(d.before);
  t.set_actor_account_id(d.sender_id);
  t.set_delivery_id(d.delivery_id);
  if (d.event == "pull_request") {
    t.set_base_ref(e.base_ref);
    t.set_trigger(absl::StrCat("pr/", d.pull_request_number));
    t.set_pull_request_number(d.pull_request_number);
  } else {
    t.set_trigger(TriggerName(d.ref));
  }
  return t;
}

}  // namespace

std::string ComputeGitHubSignature(std::string_view body, std::string_view secret) {
  unsigned char mac[32];
  HmacSha256(body, secret, mac);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kSignaturePrefix);
  for (unsigned char b : mac) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

bool VerifyGitHubSignature(std::string_view body, std::string_view secret,
                           std::string_view header_value) {
  if (secret.empty() || header_value.substr(0, kSignaturePrefix.size()) != kSignaturePrefix) {
    return false;
  }
  std::string_view hex = header_value.substr(kSignaturePrefix.size());
  unsigned char expected[32];
  if (hex.size() != 2 * sizeof(expected)) return false;
  for (size_t i = 0; i < sizeof(expected); ++i) {
    int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    expected[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  unsigned char mac[32];
  HmacSha256(body, secret, mac);
  return CRYPTO_memcmp(mac, expected, sizeof(expected)) == 0;
}

absl::StatusOr<GitHubDelivery> ParseGitHubDelivery(std::string_view event_header,
                                                   std::string_view delivery_header,
                                                   std::string_view content_type,
                                                   std::string_view body) {
  if (event_header.empty()) return absl::InvalidArgumentError("missing X-GitHub-Event header");
  KILN_ASSIGN_OR_RETURN(json doc, ParseBody(content_type, body));
  GitHubDelivery d;
  d.event = std::string(event_header);
  d.delivery_id = std::string(delivery_header);
  if (d.event == "push") {
    KILN_RETURN_IF_ERROR(ReadPush(doc, &d));
  } else if (d.event == "pull_request") {
    KILN_RETURN_IF_ERROR(ReadPullRequest(doc, &d));
  } else if (d.event == "ping") {
    if (!doc.contains("zen") && !doc.contains("hook_id")) {
      return absl::InvalidArgumentError("ping payload has neither \"zen\" nor \"hook_id\"");
    }
    KILN_RETURN_IF_ERROR(ReadRepository(doc, /*required=*/false, &d));
  } else {
    KILN_RETURN_IF_ERROR(ReadRepository(doc, /*required=*/false, &d));
  }
  KILN_RETURN_IF_ERROR(ReadSender(doc, &d));
  return d;
}

bool RepositoryMatches(const kiln::v1::ProjectSource& source, const GitHubDelivery& d) {
  std::string location = NormalizeLocation(source.location());
  if (location.empty()) return false;
  return std::any_of(d.repository_urls.begin(), d.repository_urls.end(),
                     [&](const std::string& url) { return NormalizeLocation(url) == location; });
}

bool BranchMatches(const kiln::v1::ProjectSource& source, const GitHubDelivery& d) {
  const std::string& branch = source.branch().empty() ? std::string("main") : source.branch();
  return d.ref == "refs/heads/" + branch;
}

WebhookProcessor::WebhookProcessor(WebhookBackend* backend, WebhookDeliveryLog* deliveries,
                                   const common::Clock* clock)
    : backend_(backend), deliveries_(deliveries), clock_(clock) {}

HttpResult WebhookProcessor::HandleGitHub(const std::map<std::string, std::string>& lowercase_headers,
                                          std::string_view body) {
  Pending pending;
  pending.record.set_delivery_id(CleanHeader(Header(lowercase_headers, "x-github-delivery")));
  pending.record.set_github_event(CleanHeader(Header(lowercase_headers, "x-github-event")));
  SetTimestamp(clock_->Now(), pending.record.mutable_received());
  HttpResult result = Process(lowercase_headers, body, &pending);
  pending.record.set_http_status(result.status);
  pending.record.set_reason(CutUtf8(pending.record.reason(), kMaxReasonBytes));
  // Recorded before the delivery id leaves the in-flight set, so a redelivery finds the builds.
  if (absl::Status s = deliveries_->Record(pending.record, pending.options); !s.ok()) {
    KILN_LOG(ERROR) << "webhook: cannot record delivery " << pending.record.delivery_id() << ": " << s;
  }
  if (pending.in_flight) EndDelivery(pending.record.delivery_id());
  return result;
}

HttpResult WebhookProcessor::Process(const std::map<std::string, std::string>& lowercase_headers,
                                     std::string_view body, Pending* pending) {
  kiln::v1::WebhookDelivery& record = pending->record;
  // Answers with `message`, which is also the recorded reason.
  const auto reject = [&record](int status, const std::string& message,
                                json extra = json::object()) {
    record.set_reason(message);
    return Answer(status, message, std::move(extra));
  };
  const json no_builds = {{"builds", json::array()}};
  const std::string event = Header(lowercase_headers, "x-github-event");
  if (!IsEventName(event)) return reject(400, "missing or invalid X-GitHub-Event header");

  absl::StatusOr<std::vector<kiln::v1::Project>> projects = backend_->ListProjects();
  if (!projects.ok()) {
    KILN_LOG(ERROR) << "webhook: cannot list projects: " << projects.status();
    return reject(503, "cannot list projects; retry later");
  }
  // §2.3: the signature is checked over the exact body bytes *before* anything parses them, so an
  // unauthenticated sender cannot make the coordinator parse (and allocate for) arbitrary JSON. Only
  // projects whose secret verifies may act on this delivery.
  const std::string signature = Header(lowercase_headers, "x-hub-signature-256");
  std::vector<kiln::v1::Project> authenticated;
  bool secret_unreadable = false;
  for (const kiln::v1::Project& p : *projects) {
    if (p.webhook_secret_parameter().empty()) continue;
    absl::StatusOr<std::string> secret = backend_->GetSecret(p.webhook_secret_parameter());
    if (!secret.ok()) {
      if (!absl::IsNotFound(secret.status())) {
        KILN_LOG(ERROR) << "webhook: cannot read the secret parameter of project " << p.name() << ": "
                        << secret.status().code();
        secret_unreadable = true;
      }
      continue;
    }
    if (VerifyGitHubSignature(body, *secret, signature)) authenticated.push_back(p);
  }
  if (authenticated.empty()) {
    if (secret_unreadable) return reject(503, "cannot read the webhook secret; retry later");
    KILN_LOG(WARNING) << "webhook: delivery " << record.delivery_id() << " (" << event
                      << ") rejected: no project's secret verifies its signature";
    record.set_reason("signature mismatch");
    return Answer(401, "invalid or missing X-Hub-Signature-256");
  }

  absl::StatusOr<GitHubDelivery> d =
      ParseGitHubDelivery(event, record.delivery_id(), Header(lowercase_headers, "content-type"), body);
  if (!d.ok()) return reject(400, std::string(d.status().message()));
  const WebhookEvent filter_event = WebhookEventFromGitHub(*d);
  record.set_event_type(filter_event.type);
  if (!d->repository_urls.empty()) record.set_repository(d->repository_urls.front());
  record.set_head_ref(filter_event.head_ref);
  record.set_commit(d->event == "pull_request" ? d->pr_head_sha : d->after);

  // Redelivery: carry the builds recorded for this delivery id into this record.
  if (!d->delivery_id.empty()) {
    if (!BeginDelivery(d->delivery_id)) {
      return reject(202, absl::StrCat("delivery ", d->delivery_id, " is already being processed"),
                    no_builds);
    }
    pending->in_flight = true;
    absl::StatusOr<std::optional<kiln::v1::WebhookDelivery>> previous =
        deliveries_->Find(d->delivery_id);
    if (!previous.ok()) {
      KILN_LOG(ERROR) << "webhook: cannot read recorded deliveries: " << previous.status();
      return reject(503, "cannot read recorded deliveries; retry later");
    }
    if (previous->has_value()) *record.mutable_build_ids() = (*previous)->build_ids();
    pending->options.index_delivery_id = true;
  }

  std::vector<kiln::v1::Project> candidates;
  for (const kiln::v1::Project& p : authenticated) {
    if (RepositoryMatches(p.source(), *d)) {
      candidates.push_back(p);
      pending->options.evaluated_projects.push_back(p.name());
    }
  }
  if (candidates.empty()) return reject(202, "no project matches this repository", no_builds);
  if (d->event == "ping") {
    record.set_reason("ping");
    return Answer(200, "pong");
  }
  if (filter_event.type.empty()) {
    return reject(202,
                  absl::StrCat("event \"", event, "\"",
                               d->action.empty() ? "" : absl::StrCat(" (action \"", d->action, "\")"),
                               " does not trigger builds"),
                  no_builds);
  }
  return StartBuilds(*d, filter_event, candidates, pending);
}

HttpResult WebhookProcessor::StartBuilds(const GitHubDelivery& d, const WebhookEvent& event,
                                         const std::vector<kiln::v1::Project>& projects,
                                         Pending* pending) {
  kiln::v1::WebhookDelivery& record = pending->record;
  std::vector<const kiln::v1::Project*> matching;
  std::vector<std::string> notes;  // why a project was skipped or could not build
  for (const kiln::v1::Project& p : projects) {
    FilterDecision decision = EvaluateFilterGroups(p, event);
    if (decision.build) {
      matching.push_back(&p);
      record.add_matched_projects(p.name());
    } else {
      notes.push_back(absl::StrCat(p.name(), ": ", decision.reason));
    }
  }
  if (matching.empty()) {
    const std::string reason = absl::StrCat("no project matched: ", absl::StrJoin(notes, "; "));
    record.set_reason(reason);
    return Answer(202, reason, {{"builds", json::array()}});
  }

  const size_t reused = record.build_ids_size();
  const kiln::v1::WebhookTrigger trigger = TriggerFor(d, event);
  const std::string& version = d.event == "pull_request" ? d.pr_head_sha : d.after;
  json errors = json::array();
  std::vector<absl::StatusCode> codes;
  for (const kiln::v1::Project* p : matching) {
    bool done = std::any_of(record.build_ids().begin(), record.build_ids().end(),
                            [&](const std::string& id) { return ProjectOfBuild(id) == p->name(); });
    if (done) continue;
    absl::StatusOr<std::string> id = backend_->StartBuild(*p, version, trigger);
    if (id.ok()) {
      KILN_LOG(INFO) << "webhook: delivery " << d.delivery_id << " started build " << *id;
      record.add_build_ids(*id);
    } else {
      codes.push_back(id.status().code());
      notes.push_back(absl::StrCat(p->name(), ": ", absl::StatusCodeToString(id.status().code()),
                                   ": ", id.status().message()));
      errors.push_back({{"project", p->name()},
                        {"code", absl::StatusCodeToString(id.status().code())},
                        {"message", std::string(id.status().message())}});
    }
  }

  json extra = {{"builds", json::array()}};
  for (const std::string& id : record.build_ids()) extra["builds"].push_back(id);
  if (!errors.empty()) extra["errors"] = errors;
  const size_t builds = record.build_ids_size();
  if (builds > 0) {
    if (builds == reused) notes.insert(notes.begin(), "duplicate delivery");
    record.set_reason(absl::StrJoin(notes, "; "));
    std::string message =
        builds == reused ? absl::StrCat("delivery ", d.delivery_id, " was already processed")
                         : absl::StrCat("started ", builds - reused, " build(s)");
    return Answer(200, message, std::move(extra));
  }
  record.set_reason(absl::StrCat("no build could be started: ", absl::StrJoin(notes, "; ")));
  int status = HttpStatusFor(codes.front());
  for (absl::StatusCode c : codes) {
    if (HttpStatusFor(c) != status) status = 500;
  }
  return Answer(status, "no build could be started", std::move(extra));
}

bool WebhookProcessor::BeginDelivery(const std::string& delivery_id) {
  absl::MutexLock lock(&mu_);
  return in_flight_.insert(delivery_id).second;
}

void WebhookProcessor::EndDelivery(const std::string& delivery_id) {
  absl::MutexLock lock(&mu_);
  in_flight_.erase(delivery_id);
}

}  // namespace kiln::coordinator
