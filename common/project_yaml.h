// project.yaml (the `kiln project apply -f` format) ↔ kiln.v1.Project, and project validation shared by
// the CLI and the coordinator. Pure functions; thread-safe.
//
//   name: flask-app
//   source:
//     type: git
//     location: /srv/git/flask-app.git
//     branch: main                     # default main
//     buildspec: buildspec.yml         # default buildspec.yml
//     poll_interval_seconds: 0         # 0 = no polling (default), else 10..86400: `git ls-remote`
//     credentials_parameter: /ci/git   # parameter holding "user:password" for an HTTPS location
//   concurrent_build_limit: 1          # 0 or absent = no limit
//   on_limit: queue                    # queue (default) | reject
//   timeout_minutes: 60                # 5..2160, default 60
//   queued_timeout_minutes: 480        # 5..480, default 480
//   agent_labels: {docker: "true"}
//   environment:
//     image: python:3.11-slim          # Docker image the phases run in; absent = on the agent host
//     privileged: true                 # mount the host's Docker socket (docker-in-docker builds)
//     variables: {APP_ENV: ci}
//     parameter_store: {DB_PASSWORD: /flask-app/db-password}
//   webhook:
//     secret_parameter: /kiln/webhooks/flask-app
//     # Reference §2.1: groups OR-ed, filters in a group AND-ed; each group has exactly one EVENT
//     # filter. type is a WebhookFilter.Type name (case-sensitive); other patterns are RE2 searched.
//     # Absent: a push to source.branch builds.
//     filter_groups:
//       - - {type: EVENT, pattern: "PUSH, PULL_REQUEST_CREATED, PULL_REQUEST_UPDATED"}
//         - {type: HEAD_REF, pattern: "^refs/heads/main$", exclude_matched_pattern: false}
//       - - {type: EVENT, pattern: PUSH}
//         - {type: FILE_PATH, pattern: "^docs/", exclude_matched_pattern: true}
#ifndef KILN_COMMON_PROJECT_YAML_H_
#define KILN_COMMON_PROJECT_YAML_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kiln/v1/build.pb.h"

namespace kiln::common {

// Parses project YAML. Unknown keys and wrong types are rejected. Errors: INVALID_ARGUMENT
// "<file>:<line>:<col>: <key path>: <problem>". Defaults are filled in (branch "main", buildspec
// "buildspec.yml", timeout 60, queued timeout 480). The result passes ValidateProject.
absl::StatusOr<kiln::v1::Project> ParseProjectYaml(std::string_view yaml_text,
                                                   std::string_view file_name);

// The EVENT filter names Kiln evaluates (reference §2.1): PUSH, PULL_REQUEST_CREATED,
// PULL_REQUEST_UPDATED, PULL_REQUEST_REOPENED, PULL_REQUEST_MERGED, PULL_REQUEST_CLOSED.
const std::vector<std::string>& WebhookEventTypes();

// The event names of an EVENT filter pattern: split at commas, surrounding spaces trimmed, empty
// parts dropped ("PUSH, PULL_REQUEST_CREATED" -> {PUSH, PULL_REQUEST_CREATED}).
std::vector<std::string> SplitEventPattern(std::string_view pattern);

// Checks a project as received over the API (field names in messages are the proto field names).
// Errors: INVALID_ARGUMENT naming the field, e.g. "project.timeout_in_minutes: 3 is outside 5..2160".
absl::Status ValidateProject(const kiln::v1::Project& project);

}  // namespace kiln::common

#endif  // KILN_COMMON_PROJECT_YAML_H_
