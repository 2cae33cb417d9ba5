// Buildspec parser: yaml-cpp node tree -> validated Buildspec (reference/aws-semantics.md
// §1.2-§1.11). Every yaml-cpp exception is caught in ParseBuildspec; nothing here throws to the
// caller.
#include "common/buildspec.h"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace kiln::common {
namespace {

using yaml::Describe;
using yaml::Entry;
using yaml::Ref;

using ::absl::StrCat;

// A node together with where it is and how to name it in messages.
constexpr const char* kQuoteHint =
    "a command containing ': ' must be quoted, for example - 'echo a: b' (reference §1.1)";

// "the string 'x'", "a list", ... for "expected X, got Y" messages.
// Edit distance, for "did you mean" hints on misspelt keys.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string Suggestion(std::string_view key, const std::vector<std::string>& allowed) {
  std::string lower = absl::AsciiStrToLower(absl::string_view(key.data(), key.size()));
  for (const std::string& a : allowed) {
    if (EditDistance(lower, a) <= 2) return StrCat(" (did you mean '", a, "'?)");
  }
  return "";
}

bool IsShellName(std::string_view name) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return absl::ascii_isalnum(c) || c == '_'; });
}

bool AllDigits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isdigit(c); });
}

class Parser : public yaml::ErrorReporter {
 public:
  Parser(std::string_view text, std::string_view file) : ErrorReporter(file), text_(text) {}

  absl::StatusOr<Buildspec> Run(const YAML::Node& root);

  // "buildspec.yml:3:14" from a 0-based mark.

 private:
  // ---- generic typed access ----
  absl::StatusOr<std::vector<Entry>> Map(const Ref& r, std::string_view expected) const;
  absl::StatusOr<std::vector<Ref>> Seq(const Ref& r, std::string_view expected) const;
  absl::StatusOr<std::string> Str(const Ref& r, std::string_view expected = "a string") const;
  absl::StatusOr<std::vector<std::string>> StrList(const Ref& r, std::string_view expected) const;
  absl::StatusOr<bool> YesNo(const Ref& r) const;
  absl::Status Unknown(const Entry& e, std::string_view what,
                       const std::vector<std::string>& allowed) const;
  absl::Status Missing(const Ref& parent, std::string_view key, std::string_view hint) const;
  YAML::Mark NullItemMark(const YAML::Mark& m) const;
  void Warn(const YAML::Mark& m, std::string_view path, std::string_view consequence);

  // ---- sections ----
  absl::Status ParseVersion(const Ref& r);
  absl::StatusOr<std::string> RunAs(const Ref& r) const;
  absl::Status ParseEnv(const Ref& r);
  absl::Status ParseEnvironmentVariables01(const Ref& r);
  absl::Status ParseVariables(const Ref& r);
  absl::Status DefineVariable(const Entry& e);
  absl::Status ParsePhases(const Ref& r);
  absl::StatusOr<BuildspecPhase> ParsePhase(const Entry& phase);
  absl::StatusOr<std::vector<std::string>> Commands(const Ref& r) const;
  absl::Status CheckOnFailure(const Ref& r, const std::string& value) const;
  absl::Status ParseProxy(const Ref& r);
  absl::Status ParseBatch(const Ref& r);
  absl::Status ParseBatchTasks(const Ref& r, bool graph) const;
  absl::Status ParseReports(const Ref& r);
  absl::StatusOr<BuildspecArtifacts> ParseArtifactSet(const Ref& r, bool primary);
  absl::Status ParseCache(const Ref& r);

  std::string_view text_;
  Buildspec out_;
};

absl::StatusOr<std::vector<Entry>> Parser::Map(const Ref& r, std::string_view expected) const {
  if (!r.node.IsMap()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Entry> entries;
  std::map<std::string, int> seen;  // key -> 1-based line
  for (auto it = r.node.begin(); it != r.node.end(); ++it) {
    YAML::Node k = it->first;
    YAML::Node v = it->second;
    if (!k.IsScalar()) {
      return Error(k.Mark(), r.path, StrCat("expected a key name, got ", Describe(k)));
    }
    std::string key = k.Scalar();
    std::string path = r.path.empty() ? key : StrCat(r.path, ".", key);
    auto [pos, inserted] = seen.emplace(key, k.Mark().line + 1);
    if (!inserted) {
      return Error(k.Mark(), path,
                   StrCat("duplicate key '", key, "' (first on line ", pos->second,
                          "); YAML would silently keep only one of them, so merge the two"));
    }
    entries.push_back(Entry{key, k.Mark(), Ref{v, v.IsNull() ? k.Mark() : v.Mark(), path}});
  }
  return entries;
}

// yaml-cpp marks an empty block list item ("-" alone) at the next token; walk back to its dash.
YAML::Mark Parser::NullItemMark(const YAML::Mark& m) const {
  if (m.pos <= 0 || static_cast<size_t>(m.pos) > text_.size()) return m;
  int p = m.pos - 1;
  while (p >= 0 && absl::ascii_isspace(text_[p])) --p;
  if (p < 0 || text_[p] != '-') return m;
  YAML::Mark out;
  out.pos = p;
  out.line = static_cast<int>(std::count(text_.begin(), text_.begin() + p, '\n'));
  size_t line_start = text_.rfind('\n', p);
  out.column = line_start == std::string_view::npos ? p : p - static_cast<int>(line_start) - 1;
  return out;
}

absl::StatusOr<std::vector<Ref>> Parser::Seq(const Ref& r, std::string_view expected) const {
  if (!r.node.IsSequence()) {
    std::string hint;
    if (r.node.IsScalar()) hint = StrCat("; write each entry as a list item: - ", r.node.Scalar());
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node), hint));
  }
  std::vector<Ref> items;
  int i = 0;
  for (const YAML::Node& item : r.node) {
    items.push_back(Ref{item, item.IsNull() ? NullItemMark(item.Mark()) : item.Mark(),
                        StrCat(r.path, "[", i++, "]")});
  }
  return items;
}

absl::StatusOr<std::string> Parser::Str(const Ref& r, std::string_view expected) const {
  if (!r.node.IsScalar()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  return r.node.Scalar();
}

absl::StatusOr<std::vector<std::string>> Parser::StrList(const Ref& r,
                                                         std::string_view expected) const {
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> items, Seq(r, expected));
  std::vector<std::string> out;
  for (const Ref& item : items) {
    KILN_ASSIGN_OR_RETURN(std::string s, Str(item));
    if (s.empty()) return Error(item, "empty entry; remove it or fill it in");
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<bool> Parser::YesNo(const Ref& r) const {
  KILN_ASSIGN_OR_RETURN(std::string s, Str(r, "yes or no"));
  std::string v = absl::AsciiStrToLower(s);
  if (v == "yes" || v == "true") return true;
  if (v == "no" || v == "false") return false;
  return Error(r, StrCat("'", s, "' is not a yes/no value; use yes or no"));
}

absl::Status Parser::Unknown(const Entry& e, std::string_view what,
                             const std::vector<std::string>& allowed) const {
  return Error(e.key_mark, e.value.path,
               StrCat("unknown ", std::string(what), " '", e.key, "'; allowed ", std::string(what),
                      "s are ", absl::StrJoin(allowed, ", "), Suggestion(e.key, allowed)));
}

absl::Status Parser::Missing(const Ref& parent, std::string_view key, std::string_view hint) const {
  return Error(parent,
               StrCat("missing required key '", std::string(key), "'; ", std::string(hint)));
}

void Parser::Warn(const YAML::Mark& m, std::string_view path, std::string_view consequence) {
  out_.warnings.push_back(StrCat(Where(m), ": ", std::string(path),
                                 ": accepted but not yet supported by Kiln; ",
                                 std::string(consequence)));
}

// ---- top level ----

absl::StatusOr<Buildspec> Parser::Run(const YAML::Node& root) {
  Ref top{root, root.Mark(), ""};
  if (!root.IsMap()) {
    return Error(root.Mark(), "(top level)",
                 StrCat("expected a map with version, env and phases, got ", Describe(root)));
  }
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(top, "a map"));
  auto version = std::find_if(entries.begin(), entries.end(),
                              [](const Entry& e) { return e.key == "version"; });
  if (version == entries.end()) {
    return Error(YAML::Mark(), "version",
                 "missing; a buildspec must start with 'version: 0.2' (reference §1.3)");
  }
  KILN_RETURN_IF_ERROR(ParseVersion(version->value));

  static const std::vector<std::string> kTopKeys = {
      "version", "run-as", "env", "proxy", "batch", "phases", "reports", "artifacts", "cache"};
  bool have_phases = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "version") continue;
    if (e.key == "run-as") {
      KILN_ASSIGN_OR_RETURN(out_.run_as, RunAs(v));
    } else if (e.key == "env") {
      KILN_RETURN_IF_ERROR(ParseEnv(v));
    } else if (e.key == "environment_variables") {
      if (out_.version != "0.1") {
        return Error(e.key_mark, v.path,
                     "'environment_variables' is the version 0.1 name; in version 0.2 use "
                     "env.variables (reference §1.1)");
      }
      KILN_RETURN_IF_ERROR(ParseEnvironmentVariables01(v));
    } else if (e.key == "phases") {
      have_phases = true;
      KILN_RETURN_IF_ERROR(ParsePhases(v));
    } else if (e.key == "proxy") {
      KILN_RETURN_IF_ERROR(ParseProxy(v));
      Warn(e.key_mark, v.path, "the proxy settings are ignored");
    } else if (e.key == "batch") {
      KILN_RETURN_IF_ERROR(ParseBatch(v));
      Warn(e.key_mark, v.path, "the build runs as a single build, not as a batch");
    } else if (e.key == "reports") {
      KILN_RETURN_IF_ERROR(ParseReports(v));
    } else if (e.key == "artifacts") {
      KILN_ASSIGN_OR_RETURN(BuildspecArtifacts a, ParseArtifactSet(v, /*primary=*/true));
      a.line = e.key_mark.line + 1;
      out_.artifacts = std::move(a);
    } else if (e.key == "cache") {
      KILN_RETURN_IF_ERROR(ParseCache(v));
      out_.cache->line = e.key_mark.line + 1;
    } else {
      return Unknown(e, "key", kTopKeys);
    }
  }
  if (!have_phases) {
    return Error(root.Mark(), "phases",
                 "missing; a buildspec needs a phases map with at least one of install, "
                 "pre_build, build, post_build (reference §1.6)");
  }
  return std::move(out_);
}

absl::Status Parser::ParseVersion(const Ref& r) {
  if (r.node.IsScalar()) {
    // Unquoted `0.2` and quoted "0.2" both arrive as the text 0.2.
    const std::string& v = r.node.Scalar();
    if (v == "0.1" || v == "0.2") {
      out_.version = v;
      return absl::OkStatus();
    }
  }
  std::string got = r.node.IsScalar() ? StrCat("'", r.node.Scalar(), "'") : Describe(r.node);
  return Error(r, StrCat(got,
                         " is not a buildspec version; allowed versions are 0.1 and 0.2 "
                         "(use 0.2; reference §1.1)"));
}

absl::StatusOr<std::string> Parser::RunAs(const Ref& r) const {
  KILN_ASSIGN_OR_RETURN(std::string user, Str(r, "a Linux user name"));
  bool ok = !user.empty() && user.size() <= 32 && user[0] != '-' &&
            std::all_of(user.begin(), user.end(), [](char c) {
              return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
            });
  if (!ok) {
    return Error(r, StrCat("'", user,
                           "' is not a Linux user name; use up to 32 characters of "
                           "A-Z a-z 0-9 _ - . (reference §1.3)"));
  }
  return user;
}

// ---- env (§1.4) ----

absl::Status Parser::ParseEnv(const Ref& r) {
  static const std::vector<std::string> kKeys = {"shell",           "variables",
                                                 "parameter-store", "exported-variables",
                                                 "secrets-manager", "git-credential-helper"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                        Map(r, "a map with shell, variables, parameter-store, ..."));
  std::vector<Ref> exported_refs;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "shell") {
      KILN_ASSIGN_OR_RETURN(std::string shell, Str(v, "a shell name"));
      if (shell == "powershell.exe" || shell == "cmd.exe") {
        return Error(v, StrCat("'", shell,
                               "': Windows shells are not supported; Kiln agents run "
                               "Linux shells: bash or /bin/sh"));
      }
      if (shell != "bash" && shell != "/bin/sh") {
        return Error(v, StrCat("unknown shell '", shell, "'; allowed shells are bash, /bin/sh"));
      }
      out_.shell = shell;
    } else if (e.key == "variables") {
      KILN_RETURN_IF_ERROR(ParseVariables(v));
    } else if (e.key == "parameter-store") {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> params,
                            Map(v, "a map of NAME: /parameter/name entries"));
      for (const Entry& p : params) {
        KILN_RETURN_IF_ERROR(DefineVariable(p));
        KILN_ASSIGN_OR_RETURN(std::string name, Str(p.value, "a parameter name"));
        if (!IsValidParameterName(name)) {
          return Error(p.value, StrCat("'", name,
                                       "' is not a valid parameter name; use characters "
                                       "A-Z a-z 0-9 _ . - / as in /my-app/db-password"));
        }
        out_.parameter_store.emplace_back(p.key, name);
      }
    } else if (e.key == "exported-variables") {
      KILN_ASSIGN_OR_RETURN(std::vector<Ref> items, Seq(v, "a list of variable names"));
      exported_refs = items;
      for (const Ref& item : items) {
        KILN_ASSIGN_OR_RETURN(std::string name, Str(item, "a variable name"));
        if (!IsShellName(name)) {
          return Error(item, StrCat("'", name,
                                    "' is not a valid variable name; use letters, "
                                    "digits and _, not starting with a digit"));
        }
        if (absl::StartsWith(name, "AWS_")) {
          return Error(item, StrCat("'", name,
                                    "' cannot be exported: names starting with AWS_ "
                                    "are not exportable (reference §1.4)"));
        }
        out_.exported_variables.push_back(name);
      }
    } else if (e.key == "secrets-manager") {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> secrets,
                            Map(v, "a map of NAME: secret-id:json-key:version-stage:version-id"));
      std::vector<std::string> names;
      for (const Entry& s : secrets) {
        KILN_RETURN_IF_ERROR(DefineVariable(s));
        KILN_ASSIGN_OR_RETURN(std::string ref, Str(s.value, "a secret reference"));
        // An ARN secret id itself holds 6 colons:
        // arn:aws:secretsmanager:region:account:secret:name.
        std::vector<std::string> parts = absl::StrSplit(ref, ':');
        size_t id_parts = absl::StartsWith(ref, "arn:") ? 7 : 1;
        bool ok = parts.size() >= id_parts && parts.size() <= id_parts + 3 && !parts[0].empty();
        if (ok && parts.size() == id_parts + 3 && !parts[id_parts + 1].empty() &&
            !parts[id_parts + 2].empty()) {
          return Error(s.value, "give version-stage or version-id, not both (reference §1.4)");
        }
        if (!ok) {
          return Error(s.value, StrCat("'", ref,
                                       "' is not a secret reference; use "
                                       "secret-id[:json-key[:version-stage[:version-id]]]"));
        }
        out_.secrets_manager.emplace_back(s.key, ref);
      }
    } else if (e.key == "git-credential-helper") {
      KILN_ASSIGN_OR_RETURN(out_.git_credential_helper, YesNo(v));
    } else {
      return Unknown(e, "key", kKeys);
    }
  }
  // Values from the parameter store or Secrets Manager cannot be exported (reference §1.4): they
  // would leave the build unmasked as pipeline variables.
  for (const Ref& item : exported_refs) {
    const std::string name = item.node.Scalar();
    auto secret = [&](const std::vector<std::pair<std::string, std::string>>& vars) {
      return std::any_of(vars.begin(), vars.end(), [&](const auto& kv) { return kv.first == name; });
    };
    if (secret(out_.parameter_store) || secret(out_.secrets_manager)) {
      return Error(item, StrCat("'", name,
                                "' cannot be exported: it comes from the parameter store or "
                                "Secrets Manager (reference §1.4)"));
    }
  }
  return absl::OkStatus();
}

// Version 0.1: environment_variables: {plaintext: {NAME: value}} (reference §1.1).
absl::Status Parser::ParseEnvironmentVariables01(const Ref& r) {
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(r, "a map with plaintext"));
  for (const Entry& e : entries) {
    if (e.key != "plaintext") return Unknown(e, "key", {"plaintext"});
    KILN_RETURN_IF_ERROR(ParseVariables(e.value));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseVariables(const Ref& r) {
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> vars, Map(r, "a map of NAME: value entries"));
  for (const Entry& e : vars) {
    KILN_RETURN_IF_ERROR(DefineVariable(e));
    if (!e.value.node.IsScalar()) {
      std::string hint = e.value.node.IsNull()
                             ? StrCat("; write ", e.key, ": \"\" for an empty value")
                             : "; quote the value to keep it as text";
      return Error(e.value, StrCat("expected a text value, got ", Describe(e.value.node), hint));
    }
    // Literal source text: `PORT: 5000` -> "5000", `FLAG: yes` -> "yes", `P: $PATH:/x` ->
    // "$PATH:/x".
    out_.variables.emplace_back(e.key, e.value.node.Scalar());
  }
  return absl::OkStatus();
}

// Checks a variable name being defined and that no other env section defined it already.
absl::Status Parser::DefineVariable(const Entry& e) {
  if (!IsShellName(e.key)) {
    return Error(e.key_mark, e.value.path,
                 StrCat("'", e.key,
                        "' is not a valid variable name; use letters, digits and _, "
                        "not starting with a digit"));
  }
  if (absl::StartsWith(e.key, "CODEBUILD_")) {
    return Error(e.key_mark, e.value.path,
                 StrCat("'", e.key,
                        "' is reserved: names starting with CODEBUILD_ are set by "
                        "Kiln (reference §1.4); rename the variable"));
  }
  // A name may appear in several env sections: parameter-store replaces variables, and
  // secrets-manager replaces both (reference §1.4); within one section YAML's duplicate-key check
  // applies.
  return absl::OkStatus();
}

// ---- phases (§1.6) ----

absl::Status Parser::ParsePhases(const Ref& r) {
  static const std::vector<std::string> kPhases = {"install", "pre_build", "build", "post_build"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                        Map(r, "a map of phases (install, pre_build, build, post_build)"));
  if (entries.empty()) {
    return Error(r, "no phases; add at least one of install, pre_build, build, post_build");
  }
  for (const Entry& e : entries) {
    std::optional<BuildspecPhase>* slot = nullptr;
    if (e.key == "install") slot = &out_.install;
    if (e.key == "pre_build") slot = &out_.pre_build;
    if (e.key == "build") slot = &out_.build;
    if (e.key == "post_build") slot = &out_.post_build;
    if (slot == nullptr) return Unknown(e, "phase", kPhases);
    KILN_ASSIGN_OR_RETURN(*slot, ParsePhase(e));
  }
  return absl::OkStatus();
}

absl::StatusOr<BuildspecPhase> Parser::ParsePhase(const Entry& phase) {
  static const std::vector<std::string> kKeys = {"run-as", "on-failure", "runtime-versions",
                                                 "commands", "finally"};
  const Ref& r = phase.value;
  bool install = phase.key == "install";
  if (r.node.IsNull()) {
    return Error(r, install ? "the phase is empty; add commands or runtime-versions, or remove "
                              "the phase"
                            : "the phase is empty; add a commands list or remove the phase");
  }
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                        Map(r, "a map with commands (and optionally finally, run-as, on-failure)"));
  BuildspecPhase out;
  out.line = phase.key_mark.line + 1;
  bool have_commands = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "commands") {
      have_commands = true;
      KILN_ASSIGN_OR_RETURN(out.commands, Commands(v));
    } else if (e.key == "finally") {
      KILN_ASSIGN_OR_RETURN(out.finally, Commands(v));
    } else if (e.key == "run-as") {
      KILN_ASSIGN_OR_RETURN(out.run_as, RunAs(v));
    } else if (e.key == "on-failure") {
      KILN_ASSIGN_OR_RETURN(out.on_failure, Str(v, "ABORT, CONTINUE or RETRY"));
      KILN_RETURN_IF_ERROR(CheckOnFailure(v, out.on_failure));
    } else if (e.key == "runtime-versions") {
      if (!install) {
        return Error(e.key_mark, v.path,
                     "runtime-versions is only allowed in the install phase (reference §1.6)");
      }
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> runtimes,
                            Map(v, "a map of runtime: version entries, e.g. python: 3.11"));
      if (runtimes.empty()) return Error(v, "name at least one runtime, e.g. python: 3.11");
      for (const Entry& rt : runtimes) {
        KILN_ASSIGN_OR_RETURN(std::string version, Str(rt.value, "a version such as 3.11"));
        if (version.empty()) return Error(rt.value, "empty version; use e.g. 3.11, 3.x or latest");
        out.runtime_versions.emplace_back(rt.key, version);
      }
    } else {
      return Unknown(e, "key", kKeys);
    }
  }
  if (!have_commands && !install) {
    return Missing(r, "commands",
                   "every phase except install needs a commands list (reference §1.6)");
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Parser::Commands(const Ref& r) const {
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> items, Seq(r, "a list of commands"));
  std::vector<std::string> out;
  for (const Ref& item : items) {
    if (item.node.IsMap()) {
      // `- echo a: b` parses as the map {"echo a": "b"}. Quote the source line in the message.
      std::string line;
      if (item.mark.pos >= 0 && static_cast<size_t>(item.mark.pos) < text_.size()) {
        std::string_view rest = text_.substr(item.mark.pos);
        line = std::string(rest.substr(0, rest.find('\n')));
        absl::StripTrailingAsciiWhitespace(&line);
      }
      std::string quoted = absl::StrReplaceAll(line, {{"'", "''"}});
      return Error(item, StrCat("this item is a map, not a command: YAML read the ': ' in `", line,
                                "` as a key/value separator; a command containing ': ' must be "
                                "quoted, for example - '",
                                quoted, "'"));
    }
    if (item.node.IsSequence()) return Error(item, "expected a command string, got a list");
    if (item.node.IsNull()) return Error(item, "empty list item; write a command after the '-'");
    const std::string& command = item.node.Scalar();
    if (absl::StripAsciiWhitespace(command).empty()) {
      return Error(item, "empty command; remove the item or write a command");
    }
    out.push_back(command);
  }
  return out;
}

// ABORT | CONTINUE | RETRY | RETRY-<count> | RETRY-<regex> | RETRY-<count>-<regex> (§1.6).
absl::Status Parser::CheckOnFailure(const Ref& r, const std::string& value) const {
  std::string upper = absl::AsciiStrToUpper(value);
  if (upper == "ABORT" || upper == "CONTINUE" || upper == "RETRY") return absl::OkStatus();
  if (!absl::StartsWith(upper, "RETRY-")) {
    return Error(r, StrCat("'", value,
                           "' is not valid; use ABORT, CONTINUE, RETRY, "
                           "RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>"));
  }
  std::string rest = value.substr(6);
  std::string count, regex;
  size_t dash = rest.find('-');
  if (AllDigits(rest)) {
    count = rest;
  } else if (dash != std::string::npos && AllDigits(rest.substr(0, dash))) {
    count = rest.substr(0, dash);
    regex = rest.substr(dash + 1);
    if (regex.empty()) return Error(r, StrCat("'", value, "' has an empty regex after the count"));
  } else {
    regex = rest;
  }
  if (rest.empty()) return Error(r, "RETRY- needs a count or a regex after the '-'");
  if (!count.empty() && (count.size() > 3 || std::stoi(count) > 100)) {
    return Error(r, StrCat("retry count ", count, " is outside 0..100"));
  }
  if (!regex.empty()) {
    RE2 re(regex, RE2::Quiet);
    if (!re.ok()) {
      return Error(r, StrCat("'", regex, "' is not a valid regular expression: ", re.error()));
    }
  }
  return absl::OkStatus();
}

// ---- keys Kiln validates but does not act on yet (§1.5, §1.9-§1.11) ----

absl::Status Parser::ParseProxy(const Ref& r) {
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(r, "a map with upload-artifacts, logs"));
  for (const Entry& e : entries) {
    if (e.key != "upload-artifacts" && e.key != "logs") {
      return Unknown(e, "key", {"upload-artifacts", "logs"});
    }
    KILN_RETURN_IF_ERROR(YesNo(e.value).status());
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseBatch(const Ref& r) {
  static const std::vector<std::string> kKeys = {"fast-fail", "build-list", "build-graph",
                                                 "build-matrix", "build-fanout"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                        Map(r,
                            "a map with fast-fail and one of build-list, build-graph, "
                            "build-matrix, build-fanout"));
  std::string type;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "fast-fail") {
      KILN_RETURN_IF_ERROR(YesNo(v).status());
      continue;
    }
    if (std::find(kKeys.begin(), kKeys.end(), e.key) == kKeys.end()) {
      return Unknown(e, "key", kKeys);
    }
    if (!type.empty()) {
      return Error(e.key_mark, v.path,
                   StrCat("a batch has one type; '", type, "' is already given"));
    }
    type = e.key;
    if (e.key == "build-list" || e.key == "build-graph") {
      KILN_RETURN_IF_ERROR(ParseBatchTasks(v, e.key == "build-graph"));
    } else if (e.key == "build-matrix") {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> m, Map(v, "a map with static, dynamic"));
      for (const Entry& x : m) {
        if (x.key != "static" && x.key != "dynamic")
          return Unknown(x, "key", {"static", "dynamic"});
        KILN_RETURN_IF_ERROR(Map(x.value, "a map").status());
      }
    } else {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> f, Map(v, "a map with parallelism, ignore-failure"));
      for (const Entry& x : f) {
        if (x.key == "parallelism") {
          KILN_ASSIGN_OR_RETURN(std::string n, Str(x.value, "a number"));
          if (!AllDigits(n)) return Error(x.value, StrCat("expected a number, got '", n, "'"));
        } else if (x.key == "ignore-failure") {
          KILN_RETURN_IF_ERROR(YesNo(x.value).status());
        } else {
          return Unknown(x, "key", {"parallelism", "ignore-failure"});
        }
      }
    }
  }
  if (type.empty()) {
    return Error(r,
                 "missing the batch type; add one of build-list, build-graph, build-matrix, "
                 "build-fanout");
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseBatchTasks(const Ref& r, bool graph) const {
  std::vector<std::string> keys = {"identifier", "buildspec", "debug-session", "env",
                                   "ignore-failure"};
  if (graph) keys.push_back("depend-on");
  static const std::vector<std::string> kEnvKeys = {"compute-type",    "fleet", "image",
                                                    "privileged-mode", "type",  "variables"};
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> tasks, Seq(r, "a list of build tasks"));
  for (const Ref& task : tasks) {
    KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(task, "a build task map"));
    bool have_id = false;
    for (const Entry& e : entries) {
      if (e.key == "identifier") {
        have_id = true;
        KILN_RETURN_IF_ERROR(Str(e.value, "a task identifier").status());
      } else if (e.key == "buildspec") {
        KILN_RETURN_IF_ERROR(Str(e.value, "a buildspec path").status());
      } else if (e.key == "debug-session" || e.key == "ignore-failure") {
        KILN_RETURN_IF_ERROR(YesNo(e.value).status());
      } else if (e.key == "depend-on" && graph) {
        KILN_RETURN_IF_ERROR(StrList(e.value, "a list of task identifiers").status());
      } else if (e.key == "env") {
        KILN_ASSIGN_OR_RETURN(std::vector<Entry> env, Map(e.value, "a map"));
        for (const Entry& x : env) {
          if (std::find(kEnvKeys.begin(), kEnvKeys.end(), x.key) == kEnvKeys.end()) {
            return Unknown(x, "key", kEnvKeys);
          }
          if (x.key == "variables") {
            KILN_RETURN_IF_ERROR(Map(x.value, "a map of NAME: value entries").status());
          } else if (x.key == "privileged-mode") {
            KILN_RETURN_IF_ERROR(YesNo(x.value).status());
          } else {
            KILN_RETURN_IF_ERROR(Str(x.value).status());
          }
        }
      } else {
        return Unknown(e, "key", keys);
      }
    }
    if (!have_id) return Missing(task, "identifier", "every batch task needs an identifier");
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseReports(const Ref& r) {
  static const std::vector<std::string> kKeys = {"files", "base-directory", "discard-paths",
                                                 "file-format"};
  static const std::vector<std::string> kFormats = {
      "CUCUMBERJSON",    "JUNITXML",  "NUNITXML",     "NUNIT3XML", "TESTNGXML",
      "VISUALSTUDIOTRX", "CLOVERXML", "COBERTURAXML", "JACOCOXML", "SIMPLECOV"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> groups, Map(r, "a map of report groups"));
  if (groups.size() > 5) {
    return Error(groups[5].key_mark, groups[5].value.path,
                 "at most 5 report groups are allowed (reference §1.9)");
  }
  for (const Entry& g : groups) {
    KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries,
                          Map(g.value, "a report group map with files"));
    BuildspecReportGroup group;
    group.name = g.key;
    group.line = g.key_mark.line + 1;
    bool have_files = false;
    for (const Entry& e : entries) {
      if (e.key == "files") {
        have_files = true;
        KILN_ASSIGN_OR_RETURN(group.files, StrList(e.value, "a list of paths"));
        if (group.files.empty()) return Error(e.value, "list at least one report file");
      } else if (e.key == "base-directory") {
        KILN_ASSIGN_OR_RETURN(group.base_directory, Str(e.value, "a directory"));
      } else if (e.key == "discard-paths") {
        KILN_ASSIGN_OR_RETURN(group.discard_paths, YesNo(e.value));
      } else if (e.key == "file-format") {
        KILN_ASSIGN_OR_RETURN(std::string format, Str(e.value, "a report file format"));
        group.file_format = absl::AsciiStrToUpper(format);
        if (std::find(kFormats.begin(), kFormats.end(), group.file_format) == kFormats.end()) {
          return Error(e.value, StrCat("unknown file-format '", format, "'; allowed formats are ",
                                       absl::StrJoin(kFormats, ", ")));
        }
      } else {
        return Unknown(e, "key", kKeys);
      }
    }
    if (!have_files) {
      return Missing(g.value, "files", "list the report files, e.g. files: ['reports/*.xml']");
    }
    out_.reports.push_back(std::move(group));
  }
  return absl::OkStatus();
}

absl::StatusOr<BuildspecArtifacts> Parser::ParseArtifactSet(const Ref& r, bool primary) {
  std::vector<std::string> keys = {"files",          "name",          "discard-paths",
                                   "base-directory", "exclude-paths", "enable-symlinks",
                                   "s3-prefix"};
  if (primary) {
    keys.push_back("secondary-artifacts");
    keys.push_back("type");  // 0.1 name, deprecated in 0.2 (reference §1.1)
  }
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(r, "a map with files"));
  BuildspecArtifacts out;
  bool have_files = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (std::find(keys.begin(), keys.end(), e.key) == keys.end()) return Unknown(e, "key", keys);
    if (e.key == "files" || e.key == "exclude-paths") {
      KILN_ASSIGN_OR_RETURN(std::vector<std::string> paths, StrList(v, "a list of paths"));
      if (e.key == "files") {
        have_files = true;
        if (paths.empty()) return Error(v, "list at least one path, e.g. - '**/*'");
        out.files = std::move(paths);
      } else {
        out.exclude_paths = std::move(paths);
      }
    } else if (e.key == "discard-paths") {
      KILN_ASSIGN_OR_RETURN(out.discard_paths, YesNo(v));
    } else if (e.key == "enable-symlinks") {
      KILN_ASSIGN_OR_RETURN(out.enable_symlinks, YesNo(v));
    } else if (e.key == "secondary-artifacts") {
      KILN_ASSIGN_OR_RETURN(std::vector<Entry> secondary, Map(v, "a map of artifact identifiers"));
      for (const Entry& s : secondary) {
        if (!IsShellName(s.key) || s.key.size() > 128) {
          return Error(s.key_mark, s.value.path,
                       "an artifact identifier is 1..128 characters of [A-Za-z0-9_], not starting "
                       "with a digit");
        }
        KILN_ASSIGN_OR_RETURN(BuildspecArtifacts a, ParseArtifactSet(s.value, false));
        a.identifier = s.key;
        a.line = s.key_mark.line + 1;
        out_.secondary_artifacts.push_back(std::move(a));
      }
    } else if (e.key == "type") {
      KILN_RETURN_IF_ERROR(Str(v).status());
      Warn(e.key_mark, v.path, "artifacts.type is deprecated and ignored; artifacts are zip files");
    } else if (e.key == "name") {
      KILN_ASSIGN_OR_RETURN(out.name, Str(v));
    } else if (e.key == "base-directory") {
      KILN_ASSIGN_OR_RETURN(out.base_directory, Str(v));
    } else if (e.key == "s3-prefix") {
      KILN_ASSIGN_OR_RETURN(out.s3_prefix, Str(v));
      Warn(e.key_mark, v.path, "Kiln stores artifacts by content, not in S3; s3-prefix is ignored");
    }
  }
  if (!have_files) {
    return Missing(r, "files",
                   "artifacts need a files list, e.g. files: ['**/*'] (reference §1.10)");
  }
  return out;
}

absl::Status Parser::ParseCache(const Ref& r) {
  static const std::vector<std::string> kKeys = {"key", "fallback-keys", "action", "paths"};
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(r, "a map with paths"));
  BuildspecCache cache;
  bool have_paths = false;
  for (const Entry& e : entries) {
    const Ref& v = e.value;
    if (e.key == "paths") {
      have_paths = true;
      KILN_ASSIGN_OR_RETURN(cache.paths, StrList(v, "a list of paths"));
      if (cache.paths.empty()) return Error(v, "list at least one path");
    } else if (e.key == "key") {
      KILN_ASSIGN_OR_RETURN(cache.key, Str(v, "a cache key"));
    } else if (e.key == "fallback-keys") {
      KILN_ASSIGN_OR_RETURN(cache.fallback_keys, StrList(v, "a list of keys"));
      if (cache.fallback_keys.size() > 5) return Error(v, "at most 5 fallback-keys are allowed");
    } else if (e.key == "action") {
      KILN_ASSIGN_OR_RETURN(std::string action, Str(v, "restore or save"));
      cache.action = absl::AsciiStrToLower(action);
      if (cache.action != "restore" && cache.action != "save") {
        return Error(v, StrCat("'", action, "' is not a cache action; use restore or save"));
      }
    } else {
      return Unknown(e, "key", kKeys);
    }
  }
  if (!have_paths) return Missing(r, "paths", "list what to cache, e.g. paths: ['/root/.m2/**/*']");
  out_.cache = std::move(cache);
  return absl::OkStatus();
}

}  // namespace

bool IsValidEnvironmentVariableName(std::string_view name) {
  return IsShellName(name) &&
         !absl::StartsWith(absl::string_view(name.data(), name.size()), "CODEBUILD_");
}

bool IsValidParameterName(std::string_view name) {
  if (name.empty() || name.size() > 2048) return false;
  bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-' || c == '/';
  });
  if (!chars_ok) return false;
  if (name.find('/') == std::string_view::npos) return name != "." && name != "..";
  if (name[0] != '/' || name.back() == '/') return false;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(name.data() + 1, name.size() - 1), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::StatusOr<Buildspec> ParseBuildspec(std::string_view yaml_text, std::string_view file_name) {
  Parser parser(yaml_text, file_name);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    std::string hint = "check the indentation and quoting near this position";
    if (absl::StrContains(e.msg, "tab")) {
      hint = "YAML does not allow tabs for indentation; use spaces";
    } else if (absl::StrContains(e.msg, "map")) {  // "illegal map value", "end of map not found"
      hint = kQuoteHint;
    }
    return absl::InvalidArgumentError(
        StrCat(parser.Where(e.mark), ": YAML syntax error: ", e.msg, "; ", hint));
  }
  if (docs.empty() || docs[0].IsNull()) {
    return absl::InvalidArgumentError(
        StrCat(parser.Where(YAML::Mark()),
               ": the buildspec is empty; it needs 'version: 0.2' and a phases map"));
  }
  if (docs.size() > 1) {
    return parser.Error(docs[1].Mark(), "(document 2)",
                        "a buildspec is one YAML document; remove the second '---' section");
  }
  try {
    return parser.Run(docs[0]);
  } catch (const YAML::Exception& e) {
    // Not expected: all access above checks node types first.
    return absl::InvalidArgumentError(StrCat(parser.Where(e.mark), ": ", e.msg));
  }
}

}  // namespace kiln::common
