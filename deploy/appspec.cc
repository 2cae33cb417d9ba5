// appspec.yml parser (reference/aws-semantics.md §4.1-§4.4). yaml-cpp exceptions are caught in
// ParseAppSpec; nothing here throws to the caller.
#include "deploy/appspec.h"

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace kiln::deploy {
namespace {

using common::yaml::Describe;
using common::yaml::Entry;
using common::yaml::Ref;
using ::absl::StrCat;

// ---- Ruby YAML 1.1 (Psych) typing of scalars ----

enum class Kind { kNull, kBool, kInt, kFloat, kString };

struct Typed {
  Kind kind = Kind::kNull;
  std::string text;  // the scalar as written
  long long int_value = 0;
  bool bool_value = false;
  double float_value = 0;
  bool plain = false;  // unquoted

  // Ruby's `to_s` of the value (floats: as written).
  std::string ToS() const {
    switch (kind) {
      case Kind::kNull:
        return "";
      case Kind::kBool:
        return bool_value ? "true" : "false";
      case Kind::kInt:
        return std::to_string(int_value);
      default:
        return text;
    }
  }
  // Ruby truthiness.
  bool Truthy() const { return !(kind == Kind::kNull || (kind == Kind::kBool && !bool_value)); }
};

long long ParseInt(std::string digits, int base, bool negative) {
  digits = absl::StrReplaceAll(digits, {{"_", ""}, {",", ""}});
  if (digits.empty()) return 0;
  errno = 0;
  unsigned long long v = std::strtoull(digits.c_str(), nullptr, base);
  if (errno == ERANGE || v > static_cast<unsigned long long>(LLONG_MAX)) v = LLONG_MAX;
  long long s = static_cast<long long>(v);
  return negative ? -s : s;
}

// Psych's typing of a plain scalar: null, bool (yes/no/true/false/on/off, any case), integer
// (decimal, 0-octal, 0x hex, 0b binary, with _ or , separators), float (needs a '.'), else string.
Typed Resolve(const YAML::Node& n) {
  Typed t;
  if (!n.IsDefined() || n.IsNull()) return t;
  t.text = n.Scalar();
  t.kind = Kind::kString;
  t.plain = n.Tag() == "?";
  if (!t.plain) return t;
  std::string lower = absl::AsciiStrToLower(t.text);
  if (lower == "yes" || lower == "true" || lower == "on") {
    t.kind = Kind::kBool;
    t.bool_value = true;
    return t;
  }
  if (lower == "no" || lower == "false" || lower == "off") {
    t.kind = Kind::kBool;
    return t;
  }
  static const LazyRE2 kBin = {R"(([-+]?)0b([0-1_,]+))"};
  static const LazyRE2 kOct = {R"(([-+]?)0([0-7_,]+))"};
  static const LazyRE2 kDec = {R"(([-+]?)(0|[1-9](?:[0-9]|,[0-9]|_[0-9])*))"};
  static const LazyRE2 kHex = {R"(([-+]?)0x([0-9a-fA-F_,]+))"};
  static const LazyRE2 kFloat = {R"([-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?)"};
  std::string sign, digits;
  int base = 0;
  if (RE2::FullMatch(t.text, *kBin, &sign, &digits)) {
    base = 2;
  } else if (RE2::FullMatch(t.text, *kOct, &sign, &digits)) {
    base = 8;
  } else if (RE2::FullMatch(t.text, *kDec, &sign, &digits)) {
    base = 10;
  } else if (RE2::FullMatch(t.text, *kHex, &sign, &digits)) {
    base = 16;
  }
  if (base != 0) {
    t.kind = Kind::kInt;
    t.int_value = ParseInt(digits, base, sign == "-");
    return t;
  }
  if (RE2::FullMatch(t.text, *kFloat) && t.text != "." && t.text != "-." && t.text != "+.") {
    t.kind = Kind::kFloat;
    t.float_value = std::strtod(absl::StrReplaceAll(t.text, {{"_", ""}, {",", ""}}).c_str(),
                                nullptr);
  }
  return t;
}

// Ruby String#to_i: leading blanks, a sign, then digits (single '_' between digits); else 0.
long long RubyToI(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && absl::ascii_isspace(s[i])) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  std::string digits;
  while (i < s.size()) {
    if (absl::ascii_isdigit(s[i])) {
      digits += s[i++];
    } else if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && absl::ascii_isdigit(s[i + 1])) {
      ++i;
    } else {
      break;
    }
  }
  return ParseInt(digits, 10, negative);
}

constexpr char kInvalidTimeout[] =
    "The deployment failed because an invalid timeout value was provided for a script in the "
    "application specification file. Make corrections in the hooks section of the AppSpec file, "
    "and then try again.";
constexpr char kNoLocation[] =
    "The deployment failed because the application specification file specifies a script with no "
    "location value. Specify the location in the hooks section of the AppSpec file, and then try "
    "again.";
constexpr char kNoObject[] =
    "The deployment failed because a permission listed in the application specification file has "
    "no object value. Update the permissions section of the AppSpec file, and then try again.";

class Parser : public common::yaml::ErrorReporter {
 public:
  Parser(std::string_view file, const AppSpecParseOptions& options)
      : ErrorReporter(file), options_(options) {}

  absl::StatusOr<AppSpec> Run(const YAML::Node& root);

 private:
  absl::StatusOr<std::vector<Entry>> Map(const Ref& r, std::string_view expected) const;
  absl::StatusOr<std::vector<Ref>> Seq(const Ref& r, std::string_view expected) const;
  absl::StatusOr<std::string> Text(const Ref& r, std::string_view expected) const;
  // `r` if `key` is in `entries`, else a null Ref at `parent` (the agent's `hash[key]` → nil).
  static Ref Get(const std::vector<Entry>& entries, const Ref& parent, std::string_view key);

  absl::Status ParseVersion(const Ref& r);
  absl::Status ParseOs(const Ref& r);
  absl::Status ParseHooks(const Ref& r);
  absl::StatusOr<AppSpecScript> ParseScript(const Ref& r) const;
  absl::Status ParseFiles(const Ref& r);
  absl::Status ParsePermissions(const Ref& r);
  absl::StatusOr<AppSpecPermission> ParsePermission(const Ref& r);
  absl::StatusOr<std::string> ParseMode(const Ref& r);
  absl::Status ParseFileExistsBehavior(const Ref& r);
  absl::Status CheckLifecycleEvents(const Ref& hooks) const;

  const AppSpecParseOptions& options_;
  AppSpec out_;
};

absl::StatusOr<std::vector<Entry>> Parser::Map(const Ref& r, std::string_view expected) const {
  if (!r.node.IsMap()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Entry> entries;
  for (auto it = r.node.begin(); it != r.node.end(); ++it) {
    YAML::Node k = it->first;
    YAML::Node v = it->second;
    if (!k.IsScalar()) {
      return Error(k.Mark(), r.path, StrCat("expected a key name, got ", Describe(k)));
    }
    std::string path = r.path.empty() ? k.Scalar() : StrCat(r.path, ".", k.Scalar());
    for (const Entry& e : entries) {
      if (e.key == k.Scalar()) {
        return Error(k.Mark(), path,
                     StrCat("duplicate key '", e.key, "' (first on line ", e.key_mark.line + 1,
                            "); YAML would silently keep only the last one, so merge them"));
      }
    }
    entries.push_back(Entry{k.Scalar(), k.Mark(), Ref{v, v.IsNull() ? k.Mark() : v.Mark(), path}});
  }
  return entries;
}

absl::StatusOr<std::vector<Ref>> Parser::Seq(const Ref& r, std::string_view expected) const {
  if (!r.node.IsSequence()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  std::vector<Ref> items;
  int i = 0;
  for (const YAML::Node& item : r.node) {
    items.push_back(Ref{item, item.IsNull() ? r.mark : item.Mark(), StrCat(r.path, "[", i++, "]")});
  }
  return items;
}

absl::StatusOr<std::string> Parser::Text(const Ref& r, std::string_view expected) const {
  if (r.node.IsMap() || r.node.IsSequence()) {
    return Error(r, StrCat("expected ", std::string(expected), ", got ", Describe(r.node)));
  }
  return Resolve(r.node).ToS();
}

Ref Parser::Get(const std::vector<Entry>& entries, const Ref& parent, std::string_view key) {
  for (const Entry& e : entries) {
    if (e.key == key) return e.value;
  }
  return Ref{YAML::Node(YAML::NodeType::Null), parent.mark,
             parent.path.empty() ? std::string(key) : StrCat(parent.path, ".", std::string(key))};
}

absl::StatusOr<AppSpec> Parser::Run(const YAML::Node& root) {
  Ref top{root, root.Mark(), ""};
  if (!root.IsMap()) {
    return Error(root.Mark(), "(top level)",
                 StrCat("expected a map with version, os, files, permissions and hooks, got ",
                        Describe(root)));
  }
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> entries, Map(top, "a map"));
  KILN_RETURN_IF_ERROR(ParseVersion(Get(entries, top, "version")));
  KILN_RETURN_IF_ERROR(ParseOs(Get(entries, top, "os")));
  Ref hooks = Get(entries, top, "hooks");
  KILN_RETURN_IF_ERROR(ParseHooks(hooks));
  KILN_RETURN_IF_ERROR(ParseFiles(Get(entries, top, "files")));
  KILN_RETURN_IF_ERROR(ParsePermissions(Get(entries, top, "permissions")));
  KILN_RETURN_IF_ERROR(ParseFileExistsBehavior(Get(entries, top, "file_exists_behavior")));
  // The agent checks event names after parsing the whole file (command_executor.rb).
  KILN_RETURN_IF_ERROR(CheckLifecycleEvents(hooks));
  return std::move(out_);
}

absl::Status Parser::ParseVersion(const Ref& r) {
  Typed v;
  if (r.node.IsScalar() || r.node.IsNull()) v = Resolve(r.node);
  bool zero = (v.kind == Kind::kFloat && v.float_value == 0.0) ||
              (v.kind == Kind::kInt && v.int_value == 0);
  if (zero) return absl::OkStatus();
  std::string shown = r.node.IsScalar() || r.node.IsNull() ? v.ToS() : Describe(r.node);
  std::string hint;
  if (v.kind == Kind::kString && !v.plain && v.text == "0.0") {
    hint = " (Kiln: the quoted \"0.0\" is a string, not the number 0.0; write version: 0.0 "
           "without quotes, §4.1)";
  }
  return Error(r, StrCat("The deployment failed because an invalid version value (", shown,
                         ") was entered in the application specification file. Make sure your "
                         "AppSpec file specifies \"0.0\" as the version, and then try again.",
                         hint));
}

absl::Status Parser::ParseOs(const Ref& r) {
  Typed v;
  if (r.node.IsScalar() || r.node.IsNull()) v = Resolve(r.node);
  if (v.kind == Kind::kString && v.text == options_.platform_os) {
    out_.os = v.text;
    return absl::OkStatus();
  }
  std::string hint;
  if (v.kind == Kind::kString && (v.text == "linux" || v.text == "windows")) {
    hint = StrCat(" (this agent runs ", options_.platform_os, ")");
  }
  return Error(r, StrCat("The deployment failed because the application specification file "
                         "specifies an unsupported operating system (",
                         r.node.IsMap() || r.node.IsSequence() ? Describe(r.node) : v.ToS(),
                         "). Specify either \"linux\" or \"windows\" in the os section of the "
                         "AppSpec file, and then try again.",
                         hint));
}

absl::Status Parser::ParseHooks(const Ref& r) {
  if (r.node.IsNull()) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> events,
                        Map(r, "a map of lifecycle event name to a list of scripts"));
  for (const Entry& e : events) {
    // A hook whose value is null or an empty list is ignored (§4.4).
    if (e.value.node.IsNull() || (e.value.node.IsSequence() && e.value.node.size() == 0)) continue;
    if (IsReservedEvent(e.key)) {
      return Error(e.key_mark, e.value.path,
                   StrCat("lifecycle event ", e.key,
                          " is run by the agent itself and cannot have scripts; use "
                          "ApplicationStop, BeforeInstall, AfterInstall, ApplicationStart or "
                          "ValidateService (§4.4)"));
    }
    KILN_ASSIGN_OR_RETURN(std::vector<Ref> items,
                          Seq(e.value, "a list of scripts (- location: path)"));
    std::vector<AppSpecScript> scripts;
    for (const Ref& item : items) {
      KILN_ASSIGN_OR_RETURN(AppSpecScript s, ParseScript(item));
      scripts.push_back(std::move(s));
    }
    out_.hooks[e.key] = std::move(scripts);
  }
  return absl::OkStatus();
}

absl::StatusOr<AppSpecScript> Parser::ParseScript(const Ref& r) const {
  if (r.node.IsNull()) return Error(r, kNoLocation);
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> keys, Map(r, "a script (location, timeout, runas)"));
  AppSpecScript s;
  Ref location = Get(keys, r, "location");
  if (location.node.IsNull()) return Error(location, kNoLocation);
  KILN_ASSIGN_OR_RETURN(std::string loc, Text(location, "a script path"));
  s.location = std::string(absl::StripAsciiWhitespace(loc));
  if (s.location.empty()) return Error(location, kNoLocation);

  Ref runas = Get(keys, r, "runas");
  if (!runas.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(std::string user, Text(runas, "a user name"));
    user = std::string(absl::StripAsciiWhitespace(user));
    if (!user.empty()) s.runas = user;
  }
  Ref sudo = Get(keys, r, "sudo");
  if (!sudo.node.IsNull()) s.sudo = sudo.node.IsScalar() ? Resolve(sudo.node).Truthy() : true;

  Ref timeout = Get(keys, r, "timeout");
  if (timeout.node.IsMap() || timeout.node.IsSequence()) return Error(timeout, kInvalidTimeout);
  Typed t = Resolve(timeout.node);
  long long seconds = 3600;  // `opts[:timeout] || 3600`: absent, null and false give the default
  switch (t.kind) {
    case Kind::kNull:
      break;
    case Kind::kBool:
      if (t.bool_value) return Error(timeout, kInvalidTimeout);  // true.to_i is a NoMethodError
      break;
    case Kind::kInt:
      seconds = t.int_value;
      break;
    case Kind::kFloat:
      seconds = t.float_value >= 1e18 ? LLONG_MAX : static_cast<long long>(t.float_value);
      break;
    case Kind::kString:
      seconds = RubyToI(t.text);
      break;
  }
  if (seconds <= 0) return Error(timeout, kInvalidTimeout);
  if (seconds > 3600) {
    return Error(timeout, StrCat("timeout ", seconds,
                                 " s is over the 3600-second limit of a lifecycle event (§4.4); "
                                 "use at most 3600"));
  }
  s.timeout_seconds = static_cast<int>(seconds);
  return s;
}

absl::Status Parser::ParseFiles(const Ref& r) {
  if (r.node.IsNull()) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> items,
                        Seq(r, "a list of {source, destination} entries"));
  for (const Ref& item : items) {
    std::vector<Entry> keys;
    if (!item.node.IsNull()) {
      KILN_ASSIGN_OR_RETURN(keys, Map(item, "a map with source and destination"));
    }
    Ref source = Get(keys, item, "source");
    Ref destination = Get(keys, item, "destination");
    if (source.node.IsNull()) {
      return Error(source,
                   "The deployment failed because the application specification file specifies "
                   "a destination file, but no source file. Update the files section of the "
                   "AppSpec file, and then try again.");
    }
    AppSpecFile f;
    KILN_ASSIGN_OR_RETURN(f.source, Text(source, "a path in the revision"));
    if (destination.node.IsNull()) {
      return Error(destination,
                   StrCat("The deployment failed because the application specification file "
                          "specifies only a source file (",
                          f.source,
                          "). Add the name of the destination file to the files section of the "
                          "AppSpec file, and then try again."));
    }
    KILN_ASSIGN_OR_RETURN(f.destination, Text(destination, "an absolute path"));
    if (f.destination.empty() || f.destination[0] != '/') {
      return Error(destination, StrCat("destination '", f.destination,
                                       "' must be an absolute path on the instance (§4.2)"));
    }
    out_.files.push_back(std::move(f));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParsePermissions(const Ref& r) {
  if (r.node.IsNull()) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(std::vector<Ref> items, Seq(r, "a list of permission entries"));
  for (const Ref& item : items) {
    KILN_ASSIGN_OR_RETURN(AppSpecPermission p, ParsePermission(item));
    out_.permissions.push_back(std::move(p));
  }
  return absl::OkStatus();
}

absl::StatusOr<AppSpecPermission> Parser::ParsePermission(const Ref& r) {
  if (r.node.IsNull()) return Error(r, kNoObject);
  KILN_ASSIGN_OR_RETURN(std::vector<Entry> keys, Map(r, "a permission entry (object, mode, ...)"));
  AppSpecPermission p;
  Ref object = Get(keys, r, "object");
  if (object.node.IsNull()) return Error(object, kNoObject);
  KILN_ASSIGN_OR_RETURN(p.object, Text(object, "a path"));
  p.object = std::string(absl::StripAsciiWhitespace(p.object));
  if (p.object.empty()) return Error(object, kNoObject);

  Ref pattern = Get(keys, r, "pattern");
  if (!pattern.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(p.pattern, Text(pattern, "a pattern"));
  }
  Ref except = Get(keys, r, "except");
  if (!except.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(std::vector<Ref> globs, Seq(except, "a list of patterns"));
    for (const Ref& g : globs) {
      KILN_ASSIGN_OR_RETURN(std::string s, Text(g, "a pattern"));
      p.except.push_back(std::move(s));
    }
  }
  Ref type = Get(keys, r, "type");
  if (!type.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(std::vector<Ref> types, Seq(type, "a list of file and/or directory"));
    p.files = p.directories = false;
    for (const Ref& t : types) {
      KILN_ASSIGN_OR_RETURN(std::string s, Text(t, "file or directory"));
      if (s == "file") {
        p.files = true;
      } else if (s == "directory") {
        p.directories = true;
      } else {
        return Error(t, StrCat("The deployment failed because the application specification file "
                               "specifies a permission for an object type not supported for "
                               "permissions (",
                               s,
                               "). Update the permissions section of the AppSpec file, and then "
                               "try again."));
      }
    }
  }
  for (const char* key : {"owner", "group"}) {
    Ref v = Get(keys, r, key);
    if (v.node.IsNull()) continue;
    KILN_ASSIGN_OR_RETURN(std::string name, Text(v, "a name"));
    (std::string_view(key) == "owner" ? p.owner : p.group) = name;
  }
  Ref mode = Get(keys, r, "mode");
  if (!mode.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(p.mode, ParseMode(mode));
  }
  Ref acls = Get(keys, r, "acls");
  if (!acls.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(std::vector<Ref> entries, Seq(acls, "a list of setfacl entries"));
    p.acls.emplace();
    for (const Ref& a : entries) {
      KILN_ASSIGN_OR_RETURN(std::string s, Text(a, "a setfacl entry (u:user:rwx)"));
      if (s.empty()) return Error(a, "empty acl entry");
      p.acls->push_back(std::move(s));
    }
  }
  Ref context = Get(keys, r, "context");
  if (!context.node.IsNull()) {
    KILN_ASSIGN_OR_RETURN(std::vector<Entry> ckeys, Map(context, "a map with name, type, range"));
    AppSpecContext c;
    Ref ctype = Get(ckeys, context, "type");
    if (ctype.node.IsNull()) return Error(ctype, "an SELinux context needs a type (§4.3)");
    KILN_ASSIGN_OR_RETURN(c.type, Text(ctype, "an SELinux type"));
    for (const char* key : {"name", "user"}) {
      Ref u = Get(ckeys, context, key);
      if (!u.node.IsNull()) {
        KILN_ASSIGN_OR_RETURN(c.user, Text(u, "an SELinux user"));
      }
    }
    Ref range = Get(ckeys, context, "range");
    if (!range.node.IsNull()) {
      KILN_ASSIGN_OR_RETURN(c.range, Text(range, "an SELinux range"));
    }
    p.context = std::move(c);
  }
  return p;
}

absl::StatusOr<std::string> Parser::ParseMode(const Ref& r) {
  if (r.node.IsMap() || r.node.IsSequence()) {
    return Error(r, StrCat("expected a mode such as 644, got ", Describe(r.node)));
  }
  Typed t = Resolve(r.node);
  std::string mode = t.ToS();
  while (mode.size() < 3) mode = "0" + mode;
  bool octal_literal = t.kind == Kind::kInt && t.text.size() > 1 && t.text[0] == '0' &&
                       absl::ascii_isdigit(t.text[1]);
  std::string hint =
      octal_literal ? StrCat(" (Kiln: YAML read the unquoted ", t.text, " as the octal number ",
                             t.int_value, "; quote the mode or drop the leading zero, §4.1)")
                    : "";
  if (mode.size() > 4) {
    return Error(r, StrCat("The deployment failed because the length of a permissions mode (", mode,
                           ") in the application specification file is invalid. Permissions "
                           "modes must be between one and four characters long. Update the "
                           "permissions section of the AppSpec file, and then try again.",
                           hint));
  }
  for (char c : mode) {
    if (c < '0' || c > '7') {
      return Error(r, StrCat("The deployment failed because the permissions mode (", mode,
                             ") in the application specification file contains an invalid "
                             "character (",
                             std::string(1, c),
                             "). Update the permissions section of the AppSpec file, and then "
                             "try again.",
                             hint));
    }
  }
  if (octal_literal) {
    out_.warnings.push_back(StrCat(Where(r.mark), ": ", r.path, ": mode ", t.text,
                                   " was read as the octal number ", t.int_value,
                                   " and is applied as mode ", mode,
                                   ", as the CodeDeploy agent does; quote it to mean ",
                                   t.text.substr(1)));
  }
  return mode;
}

absl::Status Parser::ParseFileExistsBehavior(const Ref& r) {
  if (r.node.IsNull()) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(std::string v, Text(r, "DISALLOW, OVERWRITE or RETAIN"));
  if (v != "DISALLOW" && v != "OVERWRITE" && v != "RETAIN") {
    return Error(r, StrCat("The deployment failed because an invalid option was specified for "
                           "fileExistsBehavior: ",
                           v, ". Valid options include OVERWRITE, RETAIN, and DISALLOW."));
  }
  out_.file_exists_behavior = v;
  return absl::OkStatus();
}

absl::Status Parser::CheckLifecycleEvents(const Ref& hooks) const {
  if (options_.lifecycle_events.empty() || !hooks.node.IsMap()) return absl::OkStatus();
  std::vector<std::string> unknown;
  YAML::Mark first;
  for (auto it = hooks.node.begin(); it != hooks.node.end(); ++it) {
    const std::string& name = it->first.Scalar();
    if (!out_.hooks.count(name)) continue;  // ignored (null or empty) hooks are not checked
    if (std::find(options_.lifecycle_events.begin(), options_.lifecycle_events.end(), name) ==
        options_.lifecycle_events.end()) {
      if (unknown.empty()) first = it->first.Mark();
      unknown.push_back(StrCat("\"", name, "\""));
    }
  }
  if (unknown.empty()) return absl::OkStatus();
  return Error(first, hooks.path,
               StrCat("appspec.yml file contains unknown lifecycle events: [",
                      absl::StrJoin(unknown, ", "), "] (this deployment's events are ",
                      absl::StrJoin(options_.lifecycle_events, ", "), ")"));
}

}  // namespace

bool IsScriptableEvent(std::string_view event) {
  static const auto* kEvents = new std::vector<std::string_view>{
      "ApplicationStop",    "BeforeInstall",     "AfterInstall",       "ApplicationStart",
      "ValidateService",    "BeforeBlockTraffic", "AfterBlockTraffic", "BeforeAllowTraffic",
      "AfterAllowTraffic"};
  return std::find(kEvents->begin(), kEvents->end(), event) != kEvents->end();
}

bool IsReservedEvent(std::string_view event) {
  static const auto* kEvents = new std::vector<std::string_view>{
      "DownloadBundle", "Install", "BlockTraffic", "AllowTraffic", "Start", "End"};
  return std::find(kEvents->begin(), kEvents->end(), event) != kEvents->end();
}

absl::StatusOr<AppSpec> ParseAppSpec(std::string_view text, std::string_view file,
                                     const AppSpecParseOptions& options) {
  Parser parser(file, options);
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return parser.Run(root);
  } catch (const YAML::Exception& e) {
    return parser.Error(e.mark, "(syntax)", e.msg);
  }
}

}  // namespace kiln::deploy
