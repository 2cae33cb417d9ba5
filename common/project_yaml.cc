// project.yaml <-> kiln.v1.Project. Field rules live in the Check* functions, shared by the YAML
// parser (which reports file:line:col and the YAML key) and ValidateProject (proto field names).
#include "common/project_yaml.h"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/buildspec.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace kiln::common {
namespace {

using yaml::Describe;
using yaml::Entry;
using yaml::Ref;

using ::absl::StrCat;

constexpr int kDefaultTimeoutMinutes = 60;
constexpr int kDefaultQueuedTimeoutMinutes = 480;
constexpr size_t kMaxLabelBytes = 128;
constexpr int kMinPollSeconds = 10;
constexpr int kMaxPollSeconds = 86400;

using ::kiln::v1::WebhookFilter;
using ::kiln::v1::WebhookFilterGroup;

bool HasControlChar(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// ---- field rules: "" when acceptable, else the problem ----

std::string CheckName(const std::string& name) {
  if (name.empty()) return "missing; give the project a name such as flask-app";
  if (!IsValidProjectName(name)) {
    return StrCat("'", name,
                  "' is not a valid project name; use 2..255 characters of "
                  "A-Z a-z 0-9 _ - (reference §1.13)");
  }
  return "";
}

std::string CheckSourceType(const std::string& type) {
  if (type.empty()) return "missing; set it to git";
  if (type != "git") return StrCat("'", type, "' is not supported; the only source type is git");
  return "";
}

std::string CheckLocation(const std::string& location) {
  if (location.empty()) return "missing; give a git URL or the path of a git repository";
  if (HasControlChar(location)) return "contains control characters";
  return "";
}

// The rules of `git check-ref-format` that apply to a branch name.
std::string CheckBranch(const std::string& branch) {
  if (branch.empty()) return "empty; give a branch name such as main";
  bool bad = HasControlChar(branch) || branch == "@" || branch[0] == '-' ||
             branch.find_first_of(" ~^:?*[\\") != std::string::npos ||
             absl::StrContains(branch, "..") || absl::StrContains(branch, "@{") ||
             absl::EndsWith(branch, ".") || absl::EndsWith(branch, ".lock");
  for (absl::string_view part : absl::StrSplit(branch, '/')) {
    if (part.empty() || part[0] == '.') bad = true;
  }
  if (bad)
    return StrCat("'", branch, "' is not a valid git branch name (see git check-ref-format)");
  return "";
}

std::string CheckBuildspecPath(const std::string& path) {
  if (path.empty()) return "empty; give the path of the buildspec, such as buildspec.yml";
  if (HasControlChar(path)) return "contains control characters";
  if (path[0] == '/') {
    return StrCat("'", path, "' must be relative to the source root, such as buildspec.yml");
  }
  if (path.back() == '/') return StrCat("'", path, "' names a directory, not a file");
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return StrCat("'", path, "' must stay inside the source: no '..' components");
  }
  return "";
}

std::string CheckLimit(int64_t limit) {
  if (limit < 0) return StrCat(limit, " is negative; use 0 for no limit or a positive number");
  return "";
}

std::string CheckRange(int64_t value, int64_t lo, int64_t hi) {
  if (value != 0 && (value < lo || value > hi)) {
    return StrCat(value, " is outside ", lo, "..", hi, " (0 means the default)");
  }
  return "";
}

std::string CheckLabelKey(const std::string& key) {
  if (key.empty()) return "label keys must not be empty";
  if (key.size() > kMaxLabelBytes) {
    return StrCat("label key '", key.substr(0, 20), "...' is longer than 128 bytes");
  }
  return "";
}

std::string CheckLabelValue(const std::string& key, const std::string& value) {
  if (value.size() > kMaxLabelBytes)
    return StrCat("value of label '", key, "' is longer than 128 bytes");
  return "";
}

std::string CheckVariableName(const std::string& name) {
  if (IsValidEnvironmentVariableName(name)) return "";
  if (absl::StartsWith(name, "CODEBUILD_")) {
    return StrCat("'", name,
                  "' is reserved: names starting with CODEBUILD_ are set by Kiln "
                  "(reference §1.4); rename the variable");
  }
  return StrCat("'", name,
                "' is not a valid variable name; use letters, digits and _, "
                "not starting with a digit");
}

std::string CheckParameterName(const std::string& name) {
  if (IsValidParameterName(name)) return "";
  return StrCat("'", name,
                "' is not a valid parameter name; use characters A-Z a-z 0-9 _ . - / "
                "as in /my-app/db-password");
}

std::string CheckPollInterval(int64_t seconds) {
  if (seconds != 0 && (seconds < kMinPollSeconds || seconds > kMaxPollSeconds)) {
    return StrCat(seconds, " is outside ", kMinPollSeconds, "..", kMaxPollSeconds,
                  " seconds (0 means no polling)");
  }
  return "";
}

// A Docker image reference as `docker pull` accepts it (the grammar of distribution/reference):
// [domain[:port]/]path[/path...][:tag][@algorithm:hex].
std::string CheckImage(const std::string& image) {
  static const RE2* const kReference = new RE2(
      "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
      "(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?"
      "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
      "(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
      "(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?");
  if (image.empty()) {
    return "empty; give a Docker image such as python:3.11-slim, or leave image out to run the "
           "phases on the agent host";
  }
  if (image.size() > 512 || !RE2::FullMatch(image, *kReference)) {
    return StrCat("'", image.substr(0, 80),
                  "' is not a valid Docker image reference; use one such as python:3.11-slim or "
                  "registry.example.com:5000/team/app:1.0 (lowercase repository, no spaces)");
  }
  return "";
}

// The pattern of one filter: EVENT lists known event types, the others compile with RE2.
std::string CheckFilterPattern(WebhookFilter::Type type, const std::string& pattern) {
  if (type == WebhookFilter::EVENT) {
    std::vector<std::string> events = SplitEventPattern(pattern);
    if (events.empty()) {
      return StrCat("empty; list event types such as PUSH, PULL_REQUEST_CREATED (one of ",
                    absl::StrJoin(WebhookEventTypes(), ", "), ")");
    }
    for (const std::string& e : events) {
      const auto& known = WebhookEventTypes();
      if (std::find(known.begin(), known.end(), e) == known.end()) {
        return StrCat("'", e, "' is not an event type Kiln supports; use ",
                      absl::StrJoin(known, ", "), " (reference §2.1)");
      }
    }
    return "";
  }
  if (pattern.empty()) return "empty; give an RE2 regular expression such as ^refs/heads/main$";
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(pattern, options);
  if (!re.ok()) {
    return StrCat("'", pattern, "' is not a valid RE2 regular expression: ", re.error());
  }
  return "";
}

// "" if `type` is a usable filter type.
std::string CheckFilterType(int type) {
  if (type == WebhookFilter::UNKNOWN || !WebhookFilter::Type_IsValid(type)) {
    return StrCat(type, " is not a filter type; use EVENT, HEAD_REF, BASE_REF, FILE_PATH, "
                        "COMMIT_MESSAGE or ACTOR_ACCOUNT_ID");
  }
  return "";
}

// Reference §2.1: every group has exactly one EVENT filter.
std::string CheckGroupEvents(const WebhookFilterGroup& group) {
  int events = 0;
  for (const WebhookFilter& f : group.filters()) events += f.type() == WebhookFilter::EVENT;
  if (events != 1) {
    return StrCat("a filter group needs exactly one EVENT filter, this one has ", events,
                  " (reference §2.1)");
  }
  return "";
}

// ---- YAML access ----

class Parser : public yaml::ErrorReporter {
 public:
  explicit Parser(std::string_view file) : ErrorReporter(file) {}

  // Returns Error(r, problem) unless `problem` is empty.
  absl::Status Check(const Ref& r, const std::string& problem) const {
    return problem.empty() ? absl::OkStatus() : Error(r, problem);
  }

  absl::StatusOr<kiln::v1::Project> Run(const YAML::Node& root);

 private:
  absl::StatusOr<std::vector<Entry>> Map(const Ref& r, std::string_view expected) const;
  absl::StatusOr<std::string> Str(const Ref& r, std::string_view expected = "a string") const;
  absl::StatusOr<int32_t> Int(const Ref& r) const;
  absl::StatusOr<bool> Bool(const Ref& r) const;
  absl::StatusOr<std::vector<Ref>> List(const Ref& r, std::string_view expected) const;
  absl::Status Unknown(const Entry& e, const std::vector<std::string>& allowed) const;
  absl::Status ParseSource(const Ref& r, kiln::v1::ProjectSource* source) const;
  absl::Status ParseEnvironment(const Ref& r, kiln::v1::Project* project) const;
  absl::Status ParseWebhook(const Ref& r, kiln::v1::Project* project) const;
  absl::Status ParseFilterGroups(const Ref& r, kiln::v1::Project* project) const;
};

absl::StatusOr<std::vector<Entry>> Parser::Map(const Ref& r, std::string_view expected) const {
  if (!r.node.IsMap()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Entry> entries;
  std::map<std::string, int> seen;
  for (auto it = r.node.begin(); it != r.node.end(); ++it) {
    YAML::Node k = it->first;
    YAML::Node v = it->second;
    if (!k.IsScalar()) return Error(k.Mark(), r.path, StrCat("expected a key, got ", Describe(k)));
    std::string key = k.Scalar();
    std::string path = r.path.empty() ? key : StrCat(r.path, ".", key);
    auto [pos, inserted] = seen.emplace(key, k.Mark().line + 1);
    if (!inserted) {
      return Error(k.Mark(), path,
                   StrCat("duplicate key '", key, "' (first on line ", pos->second, ")"));
    }
    entries.push_back(Entry{key, k.Mark(), Ref{v, v.IsNull() ? k.Mark() : v.Mark(), path}});
  }
  return entries;
}

absl::StatusOr<std::string> Parser::Str(const Ref& r, std::string_view expected) const {
  if (!r.node.IsScalar()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  return r.node.Scalar();
}

absl::StatusOr<int32_t> Parser::Int(const Ref& r) const {
  KILN_ASSIGN_OR_RETURN(std::string text, Str(r, "a whole number"));
  int32_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return Error(r, StrCat("expected a whole number, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<bool> Parser::Bool(const Ref& r) const {
  KILN_ASSIGN_OR_RETURN(std::string text, Str(r, "true or false"));
  std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true") return true;
  if (lower == "false") return false;
  return Error(r, StrCat("expected true or false, got '", text, "'"));
}

absl::StatusOr<std::vector<Ref>> Parser::List(const Ref& r, std::string_view expected) const {
  if (!r.node.IsSequence()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Ref> items;
  for (size_t i = 0; i < r.node.size(); ++i) {
    YAML::Node item = r.node[i];
    items.push_back(Ref{item, item.IsNull() ? r.mark : item.Mark(), StrCat(r.path, "[", i, "]")});
  }
  return items;
}

absl::Status Parser::Unknown(const Entry& e, const std::vector<std::string>& allowed) const {
  return Error(
      e.key_mark, e.value.path,
      StrCat("unknown key '", e.key, "'; allowed keys are ", absl::StrJoin(allowed, ", ")));
}

absl::StatusOr<kiln::v1::Project> Parser::Run(const YAML::Node& root) {
  static const std::vector<std::string> kKeys = {
      "name",         "source",          "concurrent_build_limit",
      "on_limit",     "timeout_minutes", "queued_timeout_minutes",
      "agent_labels", "environment",     "webhook"};
  kiln::v1::Project p;
  if (!root.IsMap()) {
    return Error(root.Mark(), "(top level)",
                 StrCat("expected a map with name and source, got ", Describe(root)));
  }
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(Ref{root, root.Mark(), ""}, "a map"));
  bool have_name = false, have_source = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "name") {
      have_name = true;
      KILN_ASSIGN_OR_RETURN(*p.mutable_name(), Str(v, "a project name"));
      KILN_RETURN_IF_ERROR(Check(v, CheckName(p.name())));
    } else if (e.key == "source") {
      have_source = true;
      KILN_RETURN_IF_ERROR(ParseSource(v, p.mutable_source()));
    } else if (e.key == "concurrent_build_limit") {
      KILN_ASSIGN_OR_RETURN(int32_t limit, Int(v));
      KILN_RETURN_IF_ERROR(Check(v, CheckLimit(limit)));
      p.set_concurrent_build_limit(limit);
    } else if (e.key == "on_limit") {
      KILN_ASSIGN_OR_RETURN(std::string policy, Str(v, "queue or reject"));
      std::string lower = absl::AsciiStrToLower(policy);
      if (lower == "queue") {
        p.set_on_limit(kiln::v1::OnLimit::QUEUE);
      } else if (lower == "reject") {
        p.set_on_limit(kiln::v1::OnLimit::REJECT);
      } else {
        return Error(v, StrCat("'", policy, "' is not valid; use queue or reject"));
      }
    } else if (e.key == "timeout_minutes") {
      KILN_ASSIGN_OR_RETURN(int32_t minutes, Int(v));
      KILN_RETURN_IF_ERROR(Check(v, CheckRange(minutes, 5, 2160)));
      p.set_timeout_in_minutes(minutes);
    } else if (e.key == "queued_timeout_minutes") {
      KILN_ASSIGN_OR_RETURN(int32_t minutes, Int(v));
      KILN_RETURN_IF_ERROR(Check(v, CheckRange(minutes, 5, 480)));
      p.set_queued_timeout_in_minutes(minutes);
    } else if (e.key == "agent_labels") {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> labels, Map(v, "a map of label: value entries"));
      for (const Entry& l : labels) {
        KILN_RETURN_IF_ERROR(
            Check(Ref{l.value.node, l.key_mark, l.value.path}, CheckLabelKey(l.key)));
        if (l.value.node.IsNull()) {
          return Error(l.value, StrCat("expected a text value, got an empty value; write ", l.key,
                                       ": \"\" for an empty value"));
        }
        KILN_ASSIGN_OR_RETURN(std::string value, Str(l.value, "a text value"));
        KILN_RETURN_IF_ERROR(Check(l.value, CheckLabelValue(l.key, value)));
        (*p.mutable_agent_labels())[l.key] = value;
      }
    } else if (e.key == "environment") {
      KILN_RETURN_IF_ERROR(ParseEnvironment(v, &p));
    } else if (e.key == "webhook") {
      KILN_RETURN_IF_ERROR(ParseWebhook(v, &p));
    } else {
      return Unknown(e, kKeys);
    }
  }
  if (!have_name)
    return Error(root.Mark(), "name", "missing; give the project a name such as flask-app");
  if (!have_source) {
    return Error(root.Mark(), "source",
                 "missing; add source: {type: git, location: <git URL or repository path>}");
  }
  if (p.timeout_in_minutes() == 0) p.set_timeout_in_minutes(kDefaultTimeoutMinutes);
  if (p.queued_timeout_in_minutes() == 0) {
    p.set_queued_timeout_in_minutes(kDefaultQueuedTimeoutMinutes);
  }
  return p;
}

absl::Status Parser::ParseSource(const Ref& r, kiln::v1::ProjectSource* source) const {
  static const std::vector<std::string> kKeys = {"type",      "location",
                                                 "branch",    "buildspec",
                                                 "poll_interval_seconds", "credentials_parameter"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                        Map(r, "a map with type, location, branch, buildspec"));
  source->set_branch("main");
  source->set_buildspec("buildspec.yml");
  bool have_type = false, have_location = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (std::find(kKeys.begin(), kKeys.end(), e.key) == kKeys.end()) return Unknown(e, kKeys);
    if (e.key == "poll_interval_seconds") {
      KILN_ASSIGN_OR_RETURN(int32_t seconds, Int(v));
      KILN_RETURN_IF_ERROR(Check(v, CheckPollInterval(seconds)));
      source->set_poll_interval_seconds(seconds);
      continue;
    }
    KILN_ASSIGN_OR_RETURN(std::string value, Str(v));
    if (e.key == "credentials_parameter") {
      if (!value.empty()) KILN_RETURN_IF_ERROR(Check(v, CheckParameterName(value)));  // "": none
      source->set_credentials_parameter(value);
      continue;
    }
    if (e.key == "type") {
      have_type = true;
      KILN_RETURN_IF_ERROR(Check(v, CheckSourceType(value)));
      source->set_type(value);
    } else if (e.key == "location") {
      have_location = true;
      KILN_RETURN_IF_ERROR(Check(v, CheckLocation(value)));
      source->set_location(value);
    } else if (e.key == "branch") {
      KILN_RETURN_IF_ERROR(Check(v, CheckBranch(value)));
      source->set_branch(value);
    } else {
      KILN_RETURN_IF_ERROR(Check(v, CheckBuildspecPath(value)));
      source->set_buildspec(value);
    }
  }
  if (!have_type) return Error(r.mark, StrCat(r.path, ".type"), "missing; set it to git");
  if (!have_location) {
    return Error(r.mark, StrCat(r.path, ".location"),
                 "missing; give a git URL or the path of a git repository");
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseEnvironment(const Ref& r, kiln::v1::Project* project) const {
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> sections,
                        Map(r, "a map with image, privileged, variables, parameter_store"));
  std::map<std::string, std::string> defined;  // name -> where
  for (const Entry& s : sections) {
    if (s.key == "image") {
      KILN_ASSIGN_OR_RETURN(std::string image, Str(s.value, "a Docker image reference"));
      KILN_RETURN_IF_ERROR(Check(s.value, CheckImage(image)));
      project->mutable_environment()->set_image(image);
      continue;
    }
    if (s.key == "privileged") {
      KILN_ASSIGN_OR_RETURN(bool privileged, Bool(s.value));
      project->mutable_environment()->set_privileged_mode(privileged);
      continue;
    }
    bool plaintext = s.key == "variables";
    if (!plaintext && s.key != "parameter_store") {
      return Unknown(s, {"image", "privileged", "variables", "parameter_store"});
    }
    KILN_ASSIGN_OR_RETURN(std::vector<Entry> vars, Map(s.value, "a map of NAME: value entries"));
    for (const Entry& v : vars) {
      KILN_RETURN_IF_ERROR(
          Check(Ref{v.value.node, v.key_mark, v.value.path}, CheckVariableName(v.key)));
      auto [it, inserted] =
          defined.emplace(v.key, StrCat(v.value.path, " on line ", v.key_mark.line + 1));
      if (!inserted) {
        return Error(
            v.key_mark, v.value.path,
            StrCat("'", v.key, "' is already defined at ", it->second, "; define it once"));
      }
      if (v.value.node.IsNull()) {
        return Error(v.value, plaintext
                                  ? StrCat("expected a text value, got an empty value; write ",
                                           v.key, ": \"\" for an empty value")
                                  : "expected a parameter name, got an empty value");
      }
      KILN_ASSIGN_OR_RETURN(std::string value, Str(v.value, "a text value"));
      if (!plaintext) KILN_RETURN_IF_ERROR(Check(v.value, CheckParameterName(value)));
      kiln::v1::EnvironmentVariable* var = project->add_environment_variables();
      var->set_name(v.key);
      var->set_value(value);
      var->set_type(plaintext ? kiln::v1::EnvironmentVariable::PLAINTEXT
                              : kiln::v1::EnvironmentVariable::PARAMETER_STORE);
    }
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseWebhook(const Ref& r, kiln::v1::Project* project) const {
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> webhook,
                        Map(r, "a map with secret_parameter, filter_groups"));
  for (const Entry& w : webhook) {
    if (w.key == "filter_groups") {
      KILN_RETURN_IF_ERROR(ParseFilterGroups(w.value, project));
      continue;
    }
    if (w.key != "secret_parameter") return Unknown(w, {"secret_parameter", "filter_groups"});
    KILN_ASSIGN_OR_RETURN(*project->mutable_webhook_secret_parameter(),
                          Str(w.value, "a parameter name"));
    if (!project->webhook_secret_parameter().empty()) {  // empty: no webhook
      KILN_RETURN_IF_ERROR(Check(w.value, CheckParameterName(project->webhook_secret_parameter())));
    }
  }
  return absl::OkStatus();
}

// filter_groups: a list of groups, each a list of {type, pattern, exclude_matched_pattern} maps.
absl::Status Parser::ParseFilterGroups(const Ref& r, kiln::v1::Project* project) const {
  static const std::vector<std::string> kKeys = {"type", "pattern", "exclude_matched_pattern"};
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> groups,
                        List(r, "a list of filter groups (each a list of filters)"));
  for (const Ref& g : groups) {
    KILN_ASSIGN_OR_RETURN(std::vector<Ref> filters,
                          List(g, "a filter group: a list of {type, pattern} filters"));
    WebhookFilterGroup* group = project->add_webhook_filter_groups();
    for (const Ref& f : filters) {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                            Map(f, "a filter {type, pattern, exclude_matched_pattern}"));
      WebhookFilter* filter = group->add_filters();
      const Ref* pattern_ref = nullptr;
      bool have_type = false;
      for (const Entry& e : entries) {
        if (e.key == "type") {
          KILN_ASSIGN_OR_RETURN(std::string name, Str(e.value, "a filter type"));
          WebhookFilter::Type type = WebhookFilter::UNKNOWN;
          if (!WebhookFilter::Type_Parse(name, &type) || type == WebhookFilter::UNKNOWN) {
            return Error(e.value, StrCat("'", name,
                                         "' is not a filter type; use EVENT, HEAD_REF, BASE_REF, "
                                         "FILE_PATH, COMMIT_MESSAGE or ACTOR_ACCOUNT_ID"));
          }
          filter->set_type(type);
          have_type = true;
        } else if (e.key == "pattern") {
          KILN_ASSIGN_OR_RETURN(*filter->mutable_pattern(), Str(e.value, "a pattern"));
          pattern_ref = &e.value;
        } else if (e.key == "exclude_matched_pattern") {
          KILN_ASSIGN_OR_RETURN(bool exclude, Bool(e.value));
          filter->set_exclude_matched_pattern(exclude);
        } else {
          return Unknown(e, kKeys);
        }
      }
      if (!have_type) return Error(f.mark, StrCat(f.path, ".type"), "missing; e.g. type: EVENT");
      if (pattern_ref == nullptr) {
        return Error(f.mark, StrCat(f.path, ".pattern"),
                     filter->type() == WebhookFilter::EVENT
                         ? "missing; list event types such as PUSH, PULL_REQUEST_CREATED"
                         : "missing; give an RE2 regular expression");
      }
      KILN_RETURN_IF_ERROR(
          Check(*pattern_ref, CheckFilterPattern(filter->type(), filter->pattern())));
    }
    KILN_RETURN_IF_ERROR(Check(g, CheckGroupEvents(*group)));
  }
  return absl::OkStatus();
}

absl::Status FieldError(std::string_view field, const std::string& problem) {
  return absl::InvalidArgumentError(StrCat("project.", std::string(field), ": ", problem));
}

}  // namespace

const std::vector<std::string>& WebhookEventTypes() {
  static const std::vector<std::string>* const kTypes = new std::vector<std::string>{
      "PUSH",
      "PULL_REQUEST_CREATED",
      "PULL_REQUEST_UPDATED",
      "PULL_REQUEST_REOPENED",
      "PULL_REQUEST_MERGED",
      "PULL_REQUEST_CLOSED"};
  return *kTypes;
}

std::vector<std::string> SplitEventPattern(std::string_view pattern) {
  std::vector<std::string> events;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(pattern.data(), pattern.size()), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) events.emplace_back(part);
  }
  return events;
}

absl::StatusOr<kiln::v1::Project> ParseProjectYaml(std::string_view yaml_text,
                                                   std::string_view file_name) {
  Parser parser(file_name);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat(parser.Where(e.mark), ": YAML syntax error: ", e.msg));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return absl::InvalidArgumentError(StrCat(parser.Where(YAML::Mark()),
                                             ": the project file is empty; it needs at least name "
                                             "and source"));
  }
  if (docs.size() > 1) {
    return parser.Error(docs[1].Mark(), "(document 2)",
                        "a project file is one YAML document; remove the second '---' section");
  }
  absl::StatusOr<kiln::v1::Project> project;
  try {
    project = parser.Run(docs[0]);
  } catch (const YAML::Exception& e) {
    // Not expected: all access above checks node types first.
    return absl::InvalidArgumentError(StrCat(parser.Where(e.mark), ": ", e.msg));
  }
  if (!project.ok()) return project.status();
  if (absl::Status s = ValidateProject(*project); !s.ok()) {
    return absl::InvalidArgumentError(
        StrCat(file_name.empty() ? "" : std::string(file_name), ": ", s.message()));
  }
  return project;
}

absl::Status ValidateProject(const kiln::v1::Project& project) {
  std::string problem;
  if (!(problem = CheckName(project.name())).empty()) return FieldError("name", problem);
  const kiln::v1::ProjectSource& source = project.source();
  if (!(problem = CheckSourceType(source.type())).empty())
    return FieldError("source.type", problem);
  if (!(problem = CheckLocation(source.location())).empty()) {
    return FieldError("source.location", problem);
  }
  if (!(problem = CheckBranch(source.branch())).empty())
    return FieldError("source.branch", problem);
  if (!(problem = CheckBuildspecPath(source.buildspec())).empty()) {
    return FieldError("source.buildspec", problem);
  }
  if (!(problem = CheckPollInterval(source.poll_interval_seconds())).empty()) {
    return FieldError("source.poll_interval_seconds", problem);
  }
  if (!source.credentials_parameter().empty() &&
      !(problem = CheckParameterName(source.credentials_parameter())).empty()) {
    return FieldError("source.credentials_parameter", problem);
  }
  if (!project.environment().image().empty() &&
      !(problem = CheckImage(project.environment().image())).empty()) {
    return FieldError("environment.image", problem);
  }
  if (!(problem = CheckLimit(project.concurrent_build_limit())).empty()) {
    return FieldError("concurrent_build_limit", problem);
  }
  if (!kiln::v1::OnLimit::Value_IsValid(project.on_limit())) {
    return FieldError("on_limit", StrCat(project.on_limit(), " is not a valid OnLimit value"));
  }
  if (!(problem = CheckRange(project.timeout_in_minutes(), 5, 2160)).empty()) {
    return FieldError("timeout_in_minutes", problem);
  }
  if (!(problem = CheckRange(project.queued_timeout_in_minutes(), 5, 480)).empty()) {
    return FieldError("queued_timeout_in_minutes", problem);
  }
  // Sorted so the reported label does not depend on map iteration order.
  std::map<std::string, std::string> labels(project.agent_labels().begin(),
                                            project.agent_labels().end());
  for (const auto& [key, value] : labels) {
    if (!(problem = CheckLabelKey(key)).empty()) return FieldError("agent_labels", problem);
    if (!(problem = CheckLabelValue(key, value)).empty())
      return FieldError("agent_labels", problem);
  }
  std::set<std::string> names;
  for (int i = 0; i < project.environment_variables_size(); ++i) {
    const kiln::v1::EnvironmentVariable& var = project.environment_variables(i);
    std::string field = StrCat("environment_variables[", i, "]");
    if (!(problem = CheckVariableName(var.name())).empty()) {
      return FieldError(StrCat(field, ".name"), problem);
    }
    if (!names.insert(var.name()).second) {
      return FieldError(StrCat(field, ".name"),
                        StrCat("'", var.name(), "' is defined more than once"));
    }
    if (!kiln::v1::EnvironmentVariable::Type_IsValid(var.type())) {
      return FieldError(StrCat(field, ".type"), StrCat(var.type(), " is not a valid type"));
    }
    if (var.type() == kiln::v1::EnvironmentVariable::PARAMETER_STORE &&
        !(problem = CheckParameterName(var.value())).empty()) {
      return FieldError(StrCat(field, ".value"), problem);
    }
  }
  if (!project.webhook_secret_parameter().empty() &&
      !(problem = CheckParameterName(project.webhook_secret_parameter())).empty()) {
    return FieldError("webhook_secret_parameter", problem);
  }
  for (int g = 0; g < project.webhook_filter_groups_size(); ++g) {
    const WebhookFilterGroup& group = project.webhook_filter_groups(g);
    const std::string group_field = StrCat("webhook_filter_groups[", g, "]");
    for (int f = 0; f < group.filters_size(); ++f) {
      const WebhookFilter& filter = group.filters(f);
      const std::string field = StrCat(group_field, ".filters[", f, "]");
      if (!(problem = CheckFilterType(filter.type())).empty()) {
        return FieldError(StrCat(field, ".type"), problem);
      }
      if (!(problem = CheckFilterPattern(filter.type(), filter.pattern())).empty()) {
        return FieldError(StrCat(field, ".pattern"), problem);
      }
    }
    if (!(problem = CheckGroupEvents(group)).empty()) return FieldError(group_field, problem);
  }
  return absl::OkStatus();
}

}  // namespace kiln::common
