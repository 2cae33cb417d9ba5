// The CodeBuild buildspec model and its parser (reference/aws-semantics.md §1; CodeBuild
// build-spec-ref "Buildspec syntax"). Pure functions; thread-safe.
#ifndef KILN_COMMON_BUILDSPEC_H_
#define KILN_COMMON_BUILDSPEC_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::common {

// One of phases.install / pre_build / build / post_build.
struct BuildspecPhase {
  std::vector<std::string> commands;
  std::vector<std::string> finally;
  // Empty: inherit the top-level run-as (empty = the agent's user).
  std::string run_as;
  // Empty (default transitions), "ABORT", "CONTINUE", "RETRY", "RETRY-<n>", "RETRY-<regex>",
  // "RETRY-<n>-<regex>" as written (validated, case-insensitive keyword).
  std::string on_failure;
  // install only: runtime -> version, in file order.
  std::vector<std::pair<std::string, std::string>> runtime_versions;
  // 1-based line of the phase key in the file (for messages).
  int line = 0;
};

// `artifacts` or one `secondary-artifacts` entry (reference §1.10).
struct BuildspecArtifacts {
  // "" for the primary artifact; the identifier of a secondary one.
  std::string identifier;
  // Glob patterns relative to CODEBUILD_SRC_DIR (or to base-directory): `*` within one path
  // component, `**` across directories. At least one.
  std::vector<std::string> files;
  // Shell-evaluated by the build's shell at upload time; empty = default name.
  std::string name;
  bool discard_paths = false;
  // Empty = CODEBUILD_SRC_DIR itself; may be a glob over top-level directories.
  std::string base_directory;
  std::vector<std::string> exclude_paths;
  bool enable_symlinks = false;
  std::string s3_prefix;  // accepted, unused (no S3)
  int line = 0;           // 1-based line of the key
};

// One `reports` group (reference §1.9).
struct BuildspecReportGroup {
  std::string name;  // the group key as written
  std::vector<std::string> files;
  std::string base_directory;
  bool discard_paths = false;
  std::string file_format = "JUNITXML";  // upper-cased
  int line = 0;
};

// `cache` (reference §1.11).
struct BuildspecCache {
  std::string key;                         // empty: one cache per project
  std::vector<std::string> fallback_keys;  // at most 5, prefix-matched
  std::string action;                      // "" (restore and save), "restore" or "save"
  std::vector<std::string> paths;          // globs; relative to CODEBUILD_SRC_DIR or absolute
  int line = 0;
};

struct Buildspec {
  // "0.1" or "0.2". In 0.1 every command runs in a fresh shell.
  std::string version;
  // Top-level run-as; empty = agent's user.
  std::string run_as;
  // env.shell: "" (default /bin/sh per CodeBuild; Kiln runs bash unless "/bin/sh" is given),
  // "bash",
  // "/bin/sh".
  std::string shell;
  // env.variables in file order; values are literal (never expanded).
  std::vector<std::pair<std::string, std::string>> variables;
  // env.parameter-store: variable NAME -> parameter name, in file order.
  std::vector<std::pair<std::string, std::string>> parameter_store;
  // env.secrets-manager: NAME -> "secret-id[:json-key[:version-stage[:version-id]]]".
  std::vector<std::pair<std::string, std::string>> secrets_manager;
  std::vector<std::string> exported_variables;
  bool git_credential_helper = false;
  // Phases present in the file. An absent phase does nothing and succeeds.
  std::optional<BuildspecPhase> install, pre_build, build, post_build;
  // `artifacts` (primary) and its secondary-artifacts, in file order. Absent: nothing uploaded.
  std::optional<BuildspecArtifacts> artifacts;
  std::vector<BuildspecArtifacts> secondary_artifacts;
  std::vector<BuildspecReportGroup> reports;
  std::optional<BuildspecCache> cache;
  // Keys that were parsed and validated but that Kiln does not honour yet (`artifacts`, `cache`,
  // `reports`, `batch`, `proxy`, `env.secrets-manager`, `env.git-credential-helper: yes`), each as
  // a ready-to-log sentence naming file, line and key, e.g. "buildspec.yml:20:1: artifacts:
  // accepted but not yet supported by Kiln; no artifacts will be uploaded". Everything else in this
  // struct is for the executor to act on (run-as, on-failure including RETRY forms, finally,
  // runtime-versions).
  std::vector<std::string> warnings;
};

// Parses and validates buildspec YAML. `file_name` is used in messages only (for example
// "buildspec.yml"). Errors: INVALID_ARGUMENT with a message of the form
//   "<file>:<line>:<col>: <key path>: <what is wrong and how to fix it>"
// e.g. "buildspec.yml:7:5: phases.biuld: unknown phase 'biuld'; allowed phases are install,
// pre_build, build, post_build", or a YAML syntax error with its position (and the hint to quote
// commands that contain ': ').
absl::StatusOr<Buildspec> ParseBuildspec(std::string_view yaml_text, std::string_view file_name);

// True if `name` can be an environment variable a user defines (buildspec env.*, project
// environment): a shell name [A-Za-z_][A-Za-z0-9_]* that does not start with the reserved
// "CODEBUILD_" prefix (reference §1.4, §1.12).
bool IsValidEnvironmentVariableName(std::string_view name);

// True if `name` is a valid parameter-store name (modelled on SSM Parameter Store): 1..2048
// characters of [A-Za-z0-9_.-/]; a name containing '/' must start with '/', with no empty, "." or
// ".." component and no trailing '/'. Examples: "db-password",
// "/flask-app/docker-credentials/username".
bool IsValidParameterName(std::string_view name);

}  // namespace kiln::common

#endif  // KILN_COMMON_BUILDSPEC_H_
