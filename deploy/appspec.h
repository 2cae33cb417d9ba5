// appspec.yml parser and validator for CodeDeploy-style in-place deployments
// (reference/aws-semantics.md §4.1-§4.4). Pure functions; thread-safe (no shared state).
//
// Checks run in the CodeDeploy agent's order, version → os → hooks → files → permissions →
// file_exists_behavior (§4.1), and the first error wins. Errors are INVALID_ARGUMENT with the text
// "<file>:<line>:<col>: <key path>: <message>"; <message> is the agent's own wording where the
// agent has one ("The deployment failed because ..."), Kiln's otherwise.
//
// The agent parses with Ruby's YAML 1.1 (Psych); we reproduce how it types plain (unquoted)
// scalars, because several checks depend on it (§4.1):
//  * version: accepted only as a plain number equal to 0 (`0.0`; also `0` and `0.00`, since Ruby's
//    `[0.0].include?(0)` is true). The quoted string "0.0" is rejected, as by the agent.
//  * mode: the agent checks `mode.to_s`. A plain `0755` is the YAML 1.1 octal integer 493 and is
//    rejected for the character 9; a plain `0644` is 420 and is ACCEPTED as mode "420" (r---w----),
//    exactly as the agent does (quote modes with a leading zero). `644` and "0644" are taken as
//    written; 1-2 digit modes are left-padded to 3 ("7" → "007"). YAML 1.1 hex/binary integers
//    (`0x1ED`) are converted the same way. A plain float is checked as written (Ruby's Float#to_s
//    may print it differently; either way it is rejected for its '.'). Sexagesimal integers
//    (`1:20`) are not reproduced: they are checked as the text written.
//  * timeout: Ruby `to_i` semantics: integers as typed (YAML 1.1), floats truncated, strings by
//    their leading digits ("30" → 30, "30s" → 30, "foo" → 0 → error). Absent, null or false → 3600.
//    Kiln extension (issue 4): a timeout above 3600 s is an error.
//  * sudo: Ruby truthiness: anything but null/false (YAML 1.1: no/off/false) is true.
//  * Unknown keys are ignored (e.g. `overwrite: yes` in a files entry). Duplicate keys, which Ruby
//    silently collapses, are an error here.
// Kiln additions beyond the agent: a files destination must be absolute (§4.2); a hook under a
// reserved event (DownloadBundle, Install, BlockTraffic, AllowTraffic, Start, End) is an error
// (§4.4); values of the wrong YAML shape (a map where a list belongs, ...) get a clear error where
// the agent would crash with a Ruby NoMethodError.
// acls and context (§4.3) are parsed and lightly checked only; an install that applies them fails
// with "not supported by Kiln" (instructions.h).
#ifndef KILN_DEPLOY_APPSPEC_H_
#define KILN_DEPLOY_APPSPEC_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::deploy {

// The in-place lifecycle events in run order without a load balancer (§4.5).
inline const std::vector<std::string>& DefaultLifecycleEvents() {
  static const auto* events = new std::vector<std::string>{
      "ApplicationStop", "DownloadBundle",   "BeforeInstall",  "Install",
      "AfterInstall",    "ApplicationStart", "ValidateService"};
  return *events;
}

// Events that can carry scripts (§4.4), and events reserved to the agent.
bool IsScriptableEvent(std::string_view event);
bool IsReservedEvent(std::string_view event);

// One `files` entry (§4.2). `source` is relative to the revision root (a leading '/' is still
// relative); `destination` is an absolute path.
struct AppSpecFile {
  std::string source;
  std::string destination;
};

struct AppSpecContext {  // SELinux context (§4.3); parsed, not supported by Kiln.
  std::optional<std::string> user;
  std::string type;
  std::optional<std::string> range;
};

// One `permissions` entry (§4.3).
struct AppSpecPermission {
  std::string object;
  std::string pattern = "**";
  std::vector<std::string> except;
  bool files = true;        // `type` includes file (default: both)
  bool directories = true;  // `type` includes directory
  std::optional<std::string> owner;
  std::optional<std::string> group;
  std::optional<std::string> mode;  // 3 or 4 octal digits, as validated ("644", "4755")
  std::optional<std::vector<std::string>> acls;
  std::optional<AppSpecContext> context;
};

// One script of a hook (§4.4).
struct AppSpecScript {
  std::string location;  // relative to the revision root
  int timeout_seconds = 3600;
  std::optional<std::string> runas;
  bool sudo = false;
};

struct AppSpec {
  std::string os;  // "linux"
  std::vector<AppSpecFile> files;
  // The appspec's own value (DISALLOW, OVERWRITE or RETAIN), if given.
  std::optional<std::string> file_exists_behavior;
  std::vector<AppSpecPermission> permissions;
  // Event name → its scripts in order. Events whose value is null or an empty list are absent.
  std::map<std::string, std::vector<AppSpecScript>> hooks;
  // "<file>:<line>:<col>: <path>: ..." notes on values accepted the agent's surprising way
  // (an unquoted mode 0644 applied as 420).
  std::vector<std::string> warnings;
};

struct AppSpecParseOptions {
  // The agent's platform: only this `os` is accepted (§4.1).
  std::string platform_os = "linux";
  // All possible lifecycle events of the deployment. When non-empty, a hook under any other name
  // is rejected (§4.4); when empty, any name is accepted.
  std::vector<std::string> lifecycle_events;
};

// Parses and validates appspec text. `file` names the file in messages ("appspec.yml").
// Returns INVALID_ARGUMENT "<file>:<line>:<col>: <path>: <message>" for a YAML syntax error or the
// first failed check.
absl::StatusOr<AppSpec> ParseAppSpec(std::string_view text, std::string_view file,
                                     const AppSpecParseOptions& options = {});

}  // namespace kiln::deploy

#endif  // KILN_DEPLOY_APPSPEC_H_
